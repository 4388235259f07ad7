"""The ESP32-WROOM-32 meter boards (a metering chip on SPI or on a UART, latching relay, SIM7600 modem,
I2C keypad and LCD): builds every bus, pin, clock and store the firmware uses from `machine` and
`esp32`, as board.json beside this file describes. Only this file and board.json know GPIO numbers (see
README.md). `esp32_atm90e26` (ATM90E26 on SPI) owns this file; `esp32_bl0942` (BL0942 on a UART) links it."""
import json
import os
import select
import sys
import time

import esp32
import machine
import micropython
from micropython import const

from ui.hd44780_i2c import Hd44780I2c
from ui.pcf8574_keypad import Pcf8574Keypad

try:
    import vfs as _vfs  # MicroPython >= 1.23: mount(), its mount table, VfsLfs2
except ImportError:
    _vfs = os

_ADDR_GAP_US = const(4)  # ATM90E26: data is valid about 4 us after the address byte
# FreeRTOS runs at 100 Hz in MicroPython's ESP32 builds: time.sleep_ms(n) blocks for n // 10 whole
# ticks (the CPU idles: the idle task runs, and light sleep can) and busy-waits the rest, n % 10 ms, at
# full power. sleep_until therefore sleeps only whole ticks, checking for input after each one; a
# deadline is met up to one tick late, which the superloop's 1-second jobs never notice.
_TICK_MS = const(10)
_RF_SETTLE_MS = const(20)  # two ticks with the radio on before random bytes are drawn
_SERVICE_CHUNK = const(256)  # most bytes one service read() returns
_UNIX_AT_2000 = const(946684800)  # 2000-01-01T00:00:00Z in Unix seconds
_MODEM_RXBUF = const(2048)  # room for a burst of URCs and an MQTT frame while the app is busy
_MODEM_RESET_MS = const(250)  # RESET_N low 100..450 ms (unverified for SIM7600: see README)
_IOCTL_BLOCK_COUNT = const(4)
_UART_REPLY_MS = const(20)  # a UART metering chip answers within a few ms; frames 20 ms apart (BL0942)

# How each logical pin is set up. Outputs start at 0: relay coils de-energised, modem off, LED off.
_OUTPUTS = ("relay_set", "relay_reset", "modem_power", "modem_reset", "status_led")
_PULLED_UP = ("relay_feedback", "keypad_int", "cover")  # open-drain / contact-to-ground sources
# Everything else (power_fail, meter_irq, meter_warn, meter_cf) is a plain input: they sit on the
# input-only GPIOs 34..39, which have no internal pulls, and are driven push-pull by their sources.


def _board_json_path():
    # on the device board.py and board.json sit together at the flash root; frozen code has no folder
    f = globals().get("__file__", "")
    if "/" not in f or f.startswith(".frozen"):
        return "/board.json"
    return f.rsplit("/", 1)[0] + "/board.json"


def epoch_offset(year):
    """Seconds from 1970-01-01 to January 1 of `year`: what to add to the port's time() for Unix time."""
    days = 0
    for y in range(1970, year):
        days += 366 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 365
    return days * 86400


def _no_feed():
    pass


class Clock:
    """Ticks, Unix time and sleeps from the port's `time` and the RTC. There is no RTC battery on this
    board, so the time is not valid after power-up until set from a trusted source."""

    def __init__(self, tm, rtc, wake, feed=None):
        self._tm = tm
        self._rtc = rtc
        self._wake = wake  # callable: True when input is waiting
        # The watchdog is fed while the superloop sleeps (a hang in a job is still caught): a quiet
        # meter may sleep a whole metering period, longer than the watchdog's timeout.
        self._feed = feed or _no_feed
        self._offset = epoch_offset(tm.gmtime(0)[0])  # 2000 on the ESP32 port, 1970 on unix
        self.time_valid = False
        self.ticks_ms = tm.ticks_ms
        self.ticks_add = tm.ticks_add
        self.ticks_diff = tm.ticks_diff
        self.sleep_ms = tm.sleep_ms

    def time(self):
        return int(self._tm.time()) + self._offset

    def set_time(self, unix_s):
        if unix_s < _UNIX_AT_2000:
            raise ValueError("time before 2000 cannot come from a trusted source")
        t = self._tm.gmtime(unix_s - self._offset)
        # RTC order: year, month, day, weekday, hours, minutes, seconds, subseconds
        self._rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        self.time_valid = True

    def sleep_until(self, ticks):
        """Sleep until `ticks` in whole RTOS ticks (never a busy-waited remainder, see _TICK_MS); True as
        soon as input is waiting (checked every tick)."""
        tm = self._tm
        feed = self._feed
        while True:
            if self._wake():
                return True
            if tm.ticks_diff(ticks, tm.ticks_ms()) <= 0:
                return False
            feed()
            tm.sleep_ms(_TICK_MS)


class Wake:
    """What makes sleep_until return early: service bytes waiting; modem bytes waiting (the link reads
    them at once: an AT answer or a head-end message does not wait for the next link tick); the
    keypad's INT low or a falling edge on it (the PCF8574 holds INT low until its port is read, so
    the level means an unread change); a key down but not yet reported; the supply monitor's
    power-fail rising edge. Power-fail wakes on the edge (and at start if already high), not the
    level: a level would turn every sleep of the hold-up time into a spin, and the app reads the pin
    to know the state.
    The IRQ handlers only set a flag; sleep_until consumes the flags."""

    def __init__(self, service, keypad, keypad_int, power_fail, modem_uart=None):
        self._service = service
        self._modem = modem_uart
        self._keypad = keypad
        self._kint = keypad_int
        self.key = keypad_int.value() == 0
        # power may already be failing as we boot: that counts as news too
        self.power = power_fail.value() == 1
        keypad_int.irq(handler=self._on_key, trigger=machine.Pin.IRQ_FALLING)
        power_fail.irq(handler=self._on_power, trigger=machine.Pin.IRQ_RISING)

    def _on_key(self, pin):
        self.key = True

    def _on_power(self, pin):
        self.power = True

    def __call__(self):
        if self.key or self.power:
            self.key = False
            self.power = False
            return True
        return (self._kint.value() == 0 or self._keypad.pending or self._service.waiting()
                or (self._modem is not None and self._modem.any() > 0))


class Keypad:
    """The keypad as the firmware sees it. Scanning switches the expander's rows, which can pull its
    INT line by itself: those edges are the scan's own, not news, so they are dropped after a scan."""

    def __init__(self, driver, wake):
        self._driver = driver
        self._wake = wake

    @property
    def fault(self):
        return self._driver.fault

    def read_key(self):
        key = self._driver.read_key()
        self._wake.key = False
        return key


class SpiFrames:
    """The metering chip's SPI bus: each frame is one chip-select assertion; after the frame's first
    (address) byte the clock pauses so the chip can fetch the register, as the ATM90E26 needs."""

    def __init__(self, spi, cs, sleep_us):
        self._spi = spi
        self._cs = cs
        self._sleep_us = sleep_us
        self._head = bytearray(1)
        self._body = bytearray(2)

    def transfer(self, buf, frame_len):
        if frame_len < 2 or len(buf) % frame_len:
            raise ValueError("buffer is not whole frames")
        if len(self._body) != frame_len - 1:
            self._body = bytearray(frame_len - 1)
        head = self._head
        body = self._body
        spi = self._spi
        cs = self._cs
        n = frame_len - 1
        i = 0
        while i < len(buf):
            head[0] = buf[i]
            for k in range(n):
                body[k] = buf[i + 1 + k]
            cs.value(0)
            try:
                spi.write_readinto(head, head)
                self._sleep_us(_ADDR_GAP_US)
                spi.write_readinto(body, body)
            finally:
                cs.value(1)
            buf[i] = head[0]
            for k in range(n):
                buf[i + 1 + k] = body[k]
            i += frame_len
        return buf


class UartFrames:
    """The metering chip's UART, half duplex (the BL0942): `exchange(tx, rx)` drops stale bytes, sends
    tx, then collects the reply into rx until it is whole or its window has passed (the bytes' time at
    the baud rate plus the chip's answer delay). Returns how many bytes came: 0 from a silent chip."""

    def __init__(self, uart, baudrate, ticks_ms, ticks_diff, sleep_ms):
        self._uart = uart
        self._us_per_byte = 10000000 // baudrate
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._sleep_ms = sleep_ms

    def exchange(self, tx, rx):
        u = self._uart
        while u.any():
            u.read()                      # a late reply to an earlier frame: resynchronise
        u.write(tx)
        n = len(rx)
        window = ((len(tx) + n) * self._us_per_byte) // 1000 + _UART_REPLY_MS
        if not n:
            self._sleep_ms(window)        # a write: the chip's 20 ms frame gap before the next one
            return 0
        got = 0
        mv = memoryview(rx)
        t0 = self._ticks_ms()
        while got < n and self._ticks_diff(self._ticks_ms(), t0) < window:
            k = u.readinto(mv[got:]) if u.any() else 0
            if k:
                got += k
            else:
                self._sleep_ms(1)
        return got


class StdioPort:
    """The service port: the USB serial that mpremote and pyserial reach, i.e. stdin/stdout.
    Reads never block: select.poll says whether a byte is there before each one is taken."""

    def __init__(self, inp, out):
        self._in = inp
        self._out = out
        self._poll = select.poll()
        self._poll.register(inp, select.POLLIN)
        self._ipoll = getattr(self._poll, "ipoll", None)  # MicroPython's allocation-free poll
        self._one = bytearray(1)
        self._buf = bytearray(_SERVICE_CHUNK)
        self._eof = False

    def waiting(self):
        if self._eof:
            return False
        if self._ipoll is not None:
            for _ in self._ipoll(0):
                return True
            return False
        return bool(self._poll.poll(0))

    def read(self):
        """Bytes available now, or None."""
        buf = self._buf
        one = self._one
        n = 0
        while n < _SERVICE_CHUNK and self.waiting():
            if not self._in.readinto(one):
                # end of input (only on the unix port, with stdin from a file): stop polling it
                self._eof = True
                self._poll.unregister(self._in)
                break
            buf[n] = one[0]
            n += 1
        return bytes(buf[:n]) if n else None

    def write(self, data):
        return self._out.write(data)


class ModemPort:
    """The modem's UART plus its power switch and reset line (see README for the circuit assumed)."""

    def __init__(self, uart, power, reset_pin, sleep_ms):
        self._uart = uart
        self._power = power
        self._reset = reset_pin
        self._sleep_ms = sleep_ms

    def read(self):
        if not self._uart.any():
            return None
        return self._uart.read()

    def write(self, data):
        return self._uart.write(data)

    def set_power(self, on):
        self._power.value(1 if on else 0)

    def reset(self):
        self._reset.value(1)  # through an NPN: high pulls RESET_N low
        self._sleep_ms(_MODEM_RESET_MS)
        self._reset.value(0)


class Radio:
    """The Wi-Fi station interface, used only to power the RF subsystem while random bytes are drawn
    (no network is ever joined). `network` is imported on first use: it is not needed otherwise."""

    def __init__(self, settle_ms, sleep_ms):
        self._wlan = None
        self._settle_ms = settle_ms
        self._sleep_ms = sleep_ms

    def on(self):
        """Turn the radio on; True if it was on already. Raises OSError/ImportError without one."""
        if self._wlan is None:
            import network
            self._wlan = network.WLAN(network.STA_IF)
        if self._wlan.active():
            return True
        self._wlan.active(True)
        self._sleep_ms(self._settle_ms)    # RF calibrated and sampling before the first draw
        return False

    def off(self):
        self._wlan.active(False)


class HwRandom:
    """Random numbers from the ESP32's hardware RNG (os.urandom). Espressif: it is a true RNG only while
    the RF subsystem (Wi-Fi or Bluetooth) is on, else a pseudo-random sequence. So `bytes(n)` (nonces,
    and any key made on the meter) is drawn with the radio on: it is switched on for the draw (a few
    tens of ms, about 100 mA) and off again unless it was on. `getrandbits(k)` (back-off jitter, where
    predictability costs nothing) takes the RNG as it is. `true_random` says whether the last
    `bytes()` came with the radio on (False on a build without `network`: then it is the PRNG)."""

    def __init__(self, urandom, radio=None):
        self._urandom = urandom
        self._radio = radio
        self.true_random = False

    def bytes(self, n):
        radio = self._radio
        if radio is None:
            self.true_random = False
            return self._urandom(n)
        try:
            was_on = radio.on()
        except (OSError, ImportError):
            self.true_random = False
            return self._urandom(n)
        try:
            out = self._urandom(n)
            self.true_random = True
            return out
        finally:
            if not was_on:
                radio.off()

    def getrandbits(self, k):
        if k <= 0:
            return 0
        n = (k + 7) // 8
        return int.from_bytes(self._urandom(n), "big") >> (n * 8 - k)


class PlayingDisplay:
    """The LCD, plus `play(frames)`: show each (ticks, frame of 80 bytes: four rows of 20 LCD codes) at
    its time from a one-shot timer while the application sleeps (the display's rotation needs no
    wake-up of the superloop). The timer's
    callback is soft (scheduled between bytecodes), so it may use the I2C bus; `show` from the app
    stops the plan first, so the two never draw over each other."""

    def __init__(self, lcd, timer, tm):
        self._lcd = lcd
        self._timer = timer
        self._tm = tm
        self._frames = None
        self._i = 0
        self._cb = self._next       # one bound method, made once (a callback must not allocate it)

    def show(self, lines):
        self.play(None)
        return self._lcd.show(lines)

    def play(self, frames):
        self._timer.deinit()
        self._frames = frames or None
        self._i = 0
        if self._frames:
            self._arm()

    def _arm(self):
        t = self._frames[self._i][0]
        d = self._tm.ticks_diff(t, self._tm.ticks_ms())
        self._timer.init(mode=machine.Timer.ONE_SHOT, period=d if d > 1 else 1, callback=self._cb)

    def _next(self, _timer):
        frames = self._frames
        if not frames:
            return
        f = frames[self._i][1]
        self._lcd.show((str(f[0:20], "ascii"), str(f[20:40], "ascii"), str(f[40:60], "ascii"),
                        str(f[60:80], "ascii")))
        self._i += 1
        if self._i < len(frames):
            self._arm()
        else:
            self._frames = None


class Watchdog:
    """The hardware task watchdog. Once started it cannot be stopped (an ESP32 port rule)."""

    def __init__(self):
        self._wdt = None

    def start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()


class Board:
    """The board object the firmware gets everything from (docs/board-interface.md)."""

    def __init__(self, info_path=None):
        with open(info_path or _board_json_path()) as f:
            self.info = info = json.load(f)
        Pin = machine.Pin
        self._pins = {}
        for name, gpio in info["pins"].items():
            if name in _OUTPUTS:
                p = Pin(gpio, Pin.OUT, value=0)
            elif name in _PULLED_UP:
                p = Pin(gpio, Pin.IN, Pin.PULL_UP)
            else:
                p = Pin(gpio, Pin.IN)
            self._pins[name] = p

        met = info["metering"]
        if met.get("bus", "spi") == "uart":
            u = met["uart"]
            self.meter_uart = machine.UART(u["id"], baudrate=u["baudrate"], bits=8, parity=None, stop=1,
                                           tx=u["tx"], rx=u["rx"], timeout=0)
            self.meter_bus = UartFrames(self.meter_uart, u["baudrate"], time.ticks_ms, time.ticks_diff,
                                        time.sleep_ms)
        else:
            s = met["spi"]
            cs = Pin(s["cs"], Pin.OUT, value=1)  # deselected before the bus exists
            self.spi = machine.SPI(s["id"], baudrate=s["baudrate"], polarity=s["polarity"], phase=s["phase"],
                                   bits=8, firstbit=machine.SPI.MSB,
                                   sck=Pin(s["sck"]), mosi=Pin(s["mosi"]), miso=Pin(s["miso"]))
            self.meter_bus = SpiFrames(self.spi, cs, time.sleep_us)

        m = info["modem"]
        uart = machine.UART(m["uart"], baudrate=m["baudrate"], tx=m["tx"], rx=m["rx"],
                            rxbuf=_MODEM_RXBUF, timeout=0)
        self.modem = ModemPort(uart, self.pin("modem_power"), self.pin("modem_reset"), time.sleep_ms)

        c = info["i2c"]
        self.i2c = machine.I2C(c["id"], scl=Pin(c["scl"]), sda=Pin(c["sda"]), freq=c["freq"])
        keys = Pcf8574Keypad(self.i2c, c["keypad_addr"], time.sleep_ms)
        # initialised on first show(); plays planned frames from hardware timer 0
        self.display = PlayingDisplay(Hd44780I2c(self.i2c, c["lcd_addr"], time.sleep_ms), machine.Timer(0), time)

        self.service = StdioPort(sys.stdin.buffer, sys.stdout.buffer)
        wake = Wake(self.service, keys, self.pin("keypad_int"), self.pin("power_fail"), uart)
        self.keypad = Keypad(keys, wake)
        self.watchdog = Watchdog()
        self.clock = Clock(time, machine.RTC(), wake, self.watchdog.feed)

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
        self.flash = found[0] if found else None
        self.random = HwRandom(os.urandom, Radio(_RF_SETTLE_MS, time.sleep_ms))
        self.console_locked = False
        self._mounted_at = None

    def pin(self, name):
        p = self._pins.get(name)
        if p is None:
            raise ValueError("no pin named %r in board.json" % name)
        return p

    def mount(self, path="/flash"):
        """Mount the littlefs file system on the vfs partition; return where it is mounted.
        The stock ESP32 boot script already mounts that partition at "/": a second littlefs instance
        on the same blocks would corrupt it, so then "/" is returned instead of mounting again."""
        if self._mounted_at is not None:
            return self._mounted_at
        fl = self.info["flash"]
        if self.flash is None:
            raise OSError("no 'vfs' partition in the partition table")
        blocks = self.flash.ioctl(_IOCTL_BLOCK_COUNT, 0)
        if blocks * fl["block_size"] != fl["vfs_size"]:
            raise OSError("vfs partition is %d blocks, board.json expects %d"
                          % (blocks, fl["vfs_size"] // fl["block_size"]))
        lfs = _vfs.VfsLfs2
        try:
            table = _vfs.mount()  # no arguments: the mount table
        except TypeError:
            table = ()  # a port without the listing: assume nothing of ours is mounted
        for fs, where in table:
            if isinstance(fs, lfs) and where in (path, "/"):
                # The only littlefs on this board is the vfs partition. The stock boot script mounts
                # it with file times on: mounted again here without them, before any file is open
                # (main.py is parsed whole before it runs), so each file commit carries no clock.
                _vfs.umount(where)
                _vfs.mount(lfs(self.flash, mtime=False), where)
                self._mounted_at = where
                return where
        fs = lfs(self.flash, mtime=False)  # OSError (ENODEV) when the partition holds no file system
        _vfs.mount(fs, path)
        self._mounted_at = path
        return path

    def reset(self):
        machine.reset()

    def lock_console(self):
        """UART0 is the REPL's: with keyboard interrupt off, a Ctrl-C byte from the cable is only a byte
        to the service port and cannot stop the app (and so cannot reach the prompt)."""
        micropython.kbd_intr(-1)
        self.console_locked = True

    def reset_cause(self):
        """Why this boot happened: "power" (power-on or brown-out), "watchdog" or "reset" (a reset the
        firmware asked for, a panic, deep sleep). Only resets count towards the crash loop."""
        c = machine.reset_cause()
        if c == machine.PWRON_RESET or c == machine.HARD_RESET:
            return "power"
        if c == machine.WDT_RESET:
            return "watchdog"
        return "reset"
