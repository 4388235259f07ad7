"""A fake `machine` module for testing board code on CPython and on the MicroPython unix port.

Every peripheral appends what was done to it to one shared, chronological `log`, so a test can check
the order of chip-select edges, SPI bytes and delays. Inputs are scripted: an SPI MISO responder,
I2C devices attached by address, bytes fed into a UART, pin levels driven from outside (firing IRQs).
Written for both interpreters: no CPython-only features.
"""

log = []  # (kind, ...) tuples from every fake peripheral, oldest first
_pins = {}  # GPIO number -> the last Pin built on it
_on = [True]


def logging(on):
    """Turn the log on or off: long runs under a 96 KB MicroPython heap cannot keep every entry."""
    _on[0] = on


def record(entry):
    if _on[0]:
        log.append(entry)


def clear_log():
    del log[:]


def reset_fakes():
    """Forget every pin and log entry: call between tests."""
    del log[:]
    _pins.clear()
    _on[0] = True


def pin(gpio):
    """The fake Pin the code under test built on `gpio` (KeyError if none)."""
    return _pins[gpio]


class Reset(Exception):
    """Raised by reset(): the real call never returns."""


def reset():
    record(("reset",))
    raise Reset()


# reset_cause() values as the ESP32 port names them; `cause` is what the next call returns.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
cause = [PWRON_RESET]


def reset_cause():
    return cause[0]


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self.level = 1 if value else 0
        self.handler = None
        self.trigger = 0
        _pins[id] = self
        record(("pin_init", id, mode, pull, value))

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        record(("pin", self.id, self.level))

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        self.handler = handler
        self.trigger = trigger
        record(("pin_irq", self.id, trigger))

    def drive(self, v):
        """Test side: the outside world sets this input's level; fires a matching IRQ handler."""
        v = 1 if v else 0
        old = self.level
        self.level = v
        if self.handler is not None and old != v:
            edge = Pin.IRQ_RISING if v else Pin.IRQ_FALLING
            if self.trigger & edge:
                self.handler(self)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.bits = bits
        self.firstbit = firstbit
        self.pins = (sck, mosi, miso)
        # responder(sent_bytes) -> bytes of the same length clocked back on MISO; default all ones
        self.responder = None
        record(("spi_init", id, baudrate, polarity, phase, bits, firstbit))

    def _clock(self, out):
        if self.responder is None:
            back = b"\xff" * len(out)
        else:
            back = self.responder(out)
        record(("spi", self.id, out, bytes(back)))
        return back

    def write_readinto(self, wbuf, rbuf):
        back = self._clock(bytes(wbuf))
        for i in range(len(rbuf)):
            rbuf[i] = back[i]

    def write(self, buf):
        self._clock(bytes(buf))

    def readinto(self, buf, write=0):
        back = self._clock(bytes([write]) * len(buf))
        for i in range(len(buf)):
            buf[i] = back[i]

    def read(self, n, write=0):
        return bytes(self._clock(bytes([write]) * n))

    def deinit(self):
        record(("spi_deinit", self.id))


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None, **kw):
        self.id = id
        self.baudrate = baudrate
        self.pins = (tx, rx)
        self.options = kw
        self.rx = bytearray()
        self.tx = bytearray()
        record(("uart_init", id, baudrate))

    def feed(self, data):
        """Test side: bytes arriving from the far end."""
        self.rx.extend(data)

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None  # what a real UART with timeout=0 returns when nothing is waiting
        if n < 0 or n > len(self.rx):
            n = len(self.rx)
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, buf):
        self.tx.extend(buf)
        record(("uart_w", self.id, bytes(buf)))
        if getattr(self, "responder", None) is not None:
            self.rx.extend(self.responder(bytes(buf)))   # a device on the far end answering
        return len(buf)


class I2C:
    def __init__(self, id, scl=None, sda=None, freq=400000):
        self.id = id
        self.freq = freq
        self.pins = (scl, sda)
        self.devices = {}  # addr -> object with write(bytes) and read(n) -> bytes
        record(("i2c_init", id, freq))

    def attach(self, addr, device):
        self.devices[addr] = device

    def _dev(self, addr):
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(19)  # ENODEV: no ACK, as the ESP32 port reports it
        return dev

    def scan(self):
        return sorted(self.devices)

    def writeto(self, addr, buf, stop=True):
        dev = self._dev(addr)
        data = bytes(buf)
        record(("i2c_w", addr, data))
        dev.write(data)
        return len(data)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).read(len(buf))
        record(("i2c_r", addr, bytes(data)))
        for i in range(len(buf)):
            buf[i] = data[i]

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        record(("wdt_start", timeout))

    def feed(self):
        record(("wdt_feed",))


class Timer:
    """A hardware timer. One-shot and periodic callbacks run when the board test's virtual time
    (tests/fake_machine/vtime.py, which sets `Timer.clock`) passes their instant."""
    ONE_SHOT = 0
    PERIODIC = 1
    clock = None

    def __init__(self, id=0):
        self.id = id
        self._gen = 0

    def init(self, mode=ONE_SHOT, period=1000, callback=None):
        self._gen += 1
        gen = self._gen
        record(("timer_init", self.id, mode, period))
        clock = Timer.clock
        if clock is None or callback is None:
            return

        def fire():
            if gen == self._gen:
                if mode == Timer.PERIODIC:
                    clock.at(clock.ms + period, fire)
                else:
                    self._gen += 1
                callback(self)
        clock.at(clock.ms + period, fire)

    def deinit(self):
        self._gen += 1


class RTC:
    # One shared value, like the chip's single RTC; `on_set` lets a fake time follow it.
    _dt = (2000, 1, 1, 5, 0, 0, 0, 0)
    on_set = None

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            return RTC._dt
        RTC._dt = tuple(dt)
        record(("rtc_set", RTC._dt))
        if RTC.on_set is not None:
            RTC.on_set(RTC._dt)

    def init(self, dt):
        self.datetime(dt)
