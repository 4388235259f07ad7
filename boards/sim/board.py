"""The simulated meter board: every bus, pin, clock tick and flash block is served by the simulator
over one TCP link (METER_SIM=host:port). Frame numbers match host_tools/sim/esp32/link.py.

RAM: every class costs a type object and a dict on the heap (~220 bytes on the 64-bit unix port, plus
~120 per method), so the board uses four: the clock owns the link, one class serves both UARTs,
one each pin, and the board object itself is the SPI bus, flash, watchdog, keypad, display and RNG
(`b.flash is b`); their method names do not clash and the attributes of the interface are unchanged."""
import json
import os
import random
import socket
import struct
import sys

from micropython import const

_HELLO = const(1)
_ADVANCE = const(2)
_SPI = const(3)
_UART_W = const(4)
_UART_R = const(5)
_GPIO_W = const(6)
_GPIO_R = const(7)
_FLASH_R = const(8)
_FLASH_W = const(9)
_FLASH_E = const(10)
_WDT = const(11)
_RESET = const(12)
_DISPLAY = const(13)
_KEY_R = const(14)
_TIME_SET = const(16)
_METER_UART = const(17)
_DISPLAY_PLAN = const(18)

_IN_SERVICE = const(1)
_IN_KEY = const(2)
_IN_MODEM = const(8)

_CHUNK = const(512)
_PLAN_TX = const(1200)      # a minute of planned display frames (12 of 92 bytes) in one link frame
_TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)


class SimClock:
    """Virtual time owned by the simulator (ticks wrap at 2**30 like MicroPython's), and the link to it:
    blocking request/response frames, buffers made once."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        s = socket.socket()
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (constants absent in MicroPython)
        self.s = s
        # Small buffers: flash and UART traffic is chunked to fit, so no large contiguous block is
        # needed on a fragmented heap.
        self.tx = bytearray(_CHUNK + 16)
        self.rx = bytearray(_CHUNK + 16)
        self.rxv = memoryview(self.rx)
        self.call(_HELLO, b"sim-board")
        self.now_ms, self._epoch, valid = struct.unpack_from("<QIB", self.rx, 3)
        self.time_valid = bool(valid)
        self.flags = 0
        self.levels = -1     # GPIO 0-23 as of the last ADVANCE reply; -1 after a GPIO write (link.py)
        self._adv = bytearray(12)
        self._adv[0] = _ADVANCE
        self._adv[1] = 9

    # -- the link ----------------------------------------------------------------------------------
    def send(self, ftype, payload=b""):
        n = len(payload)
        tx = self.tx
        struct.pack_into("<BH", tx, 0, ftype, n)
        tx[3:3 + n] = payload
        self.s.write(memoryview(tx)[:3 + n])

    def recv(self):
        """Read one reply frame into self.rx; return its payload length (payload starts at rx[3])."""
        rx = self.rx
        n = 3
        off = 0
        while True:
            got = 0
            while got < n:
                r = self.s.readinto(self.rxv[off + got:off + n])
                if not r:
                    sys.exit(0)  # the simulator went away: the meter has no power
                got += r
            if off:
                return n
            n = rx[1] | (rx[2] << 8)
            if not n:
                return 0
            off = 3

    def call(self, ftype, payload=b""):
        self.send(ftype, payload)
        return self.recv()

    # -- the clock ---------------------------------------------------------------------------------
    def ticks_ms(self):
        return self.now_ms & _TICKS_MASK

    def ticks_add(self, t, delta):
        return (t + delta) & _TICKS_MASK

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def time(self):
        return self._epoch + self.now_ms // 1000

    def set_time(self, unix_s):
        self._epoch = unix_s - self.now_ms // 1000
        self.time_valid = True
        self.send(_TIME_SET, struct.pack("<I", unix_s))

    def _advance(self, until_ms, wake=1):
        adv = self._adv
        struct.pack_into("<QB", adv, 3, until_ms, wake)
        self.s.write(adv)
        n = self.recv()
        rx = self.rx
        self.now_ms, self.flags = struct.unpack_from("<QB", rx, 3)
        self.levels = rx[12] | (rx[13] << 8) | (rx[14] << 16) if n >= 13 else -1

    def sleep_until(self, ticks):
        """Sleep until `ticks`; True if it returned because input is waiting."""
        d = self.ticks_diff(ticks, self.now_ms & _TICKS_MASK)
        self._advance(self.now_ms + (d if d > 0 else 0))
        return self.flags != 0

    def sleep_ms(self, ms):
        until = self.now_ms + ms
        while self.now_ms < until:
            self._advance(until, 0)  # a delay inside a driver: input does not cut it short


class SimStream:
    """A UART (service port or modem) bridged by the simulator; reads only when the last wake said so.
    The modem's also has `set_power(on)` and `reset()` through its two pins."""

    def __init__(self, link, port, flag, power_pin=None, reset_pin=None):
        self._link = link
        self._port = port
        self._flag = flag
        self._req = struct.pack("<BH", port, _CHUNK)
        self._pre = bytes((port,))
        self._power = power_pin
        self._reset = reset_pin

    def read(self):
        link = self._link
        if not (link.flags & self._flag):
            return None
        link.flags &= ~self._flag
        n = link.call(_UART_R, self._req)
        if not n:
            return None
        return bytes(link.rxv[3:3 + n])

    def write(self, data):
        link = self._link
        for i in range(0, len(data), _CHUNK - 1):
            link.send(_UART_W, self._pre + data[i:i + _CHUNK - 1])

    def set_power(self, on):
        self._power.value(1 if on else 0)

    def reset(self):
        self._reset.value(1)
        self._link.sleep_ms(100)
        self._reset.value(0)


class SimPin:
    def __init__(self, link, num):
        self._link = link
        self._num = num
        self._w = bytearray(2)
        self._w[0] = num

    def value(self, v=None):
        link = self._link
        if v is None:
            num = self._num
            if link.levels >= 0 and num < 24:
                return (link.levels >> num) & 1
            link.call(_GPIO_R, bytes((num,)))
            return link.rx[3]
        link.levels = -1     # a write may move an input (a relay pulse): read the next level afresh
        self._w[1] = 1 if v else 0
        link.send(_GPIO_W, self._w)


def _board_json_path():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/board.json"


class Board:
    """The sim board. Reads board.json beside this file; connects to the simulator named by METER_SIM.
    It is also its own meter_bus, flash, watchdog, keypad, display and random (see the module docstring)."""

    def __init__(self, info_path=None):
        with open(info_path or os.getenv("METER_BOARD_JSON") or _board_json_path()) as f:
            self.info = json.load(f)
        addr = os.getenv("METER_SIM")
        if not addr:
            raise OSError("METER_SIM is not set: the sim board runs only inside `meterkit sim`")
        self.clock = self._link = link = SimClock(addr)
        met = self.info["metering"]
        bus = met.get(met.get("bus", "spi")) or {}
        self._bus = bus.get("id", 0)
        self._baud = bus.get("baudrate", 4800)
        self._pins = {}
        self.service = SimStream(link, 0, _IN_SERVICE)
        self.modem = SimStream(link, 1, _IN_MODEM, self.pin("modem_power"), self.pin("modem_reset"))
        fl = self.info["flash"]
        self.block_size = fl["block_size"]
        # the file system's size: board.json's, or what the simulated chip laid to the end of its flash
        self.block_count = int(os.getenv("METER_VFS_SIZE") or fl["vfs_size"]) // self.block_size
        self._req = bytearray(8)
        # Flash reads come straight from the image file (the simulator flushes every write before it
        # answers); writes go through the simulator, which may cut the power in the middle of one.
        img = os.getenv("METER_FLASH")
        self._flash_file = open(img, "rb") if img else None
        self._flash_off = int(os.getenv("METER_FLASH_OFFSET") or "0")
        random.seed(int(os.getenv("METER_SEED") or "1"))
        self._last = None
        self._plan_tx = None
        self.meter_bus = self.flash = self.watchdog = self.keypad = self.display = self.random = self
        self.console_locked = False
        if os.getenv("METER_LCD_PLAYS") == "0":
            self.play = None     # an LCD without its own timer: the meter wakes to draw each frame
        # Made once: littlefs calls the block device with the heap locked, so a failure raised from
        # there must not allocate (a new exception there ends in MemoryError, and worse).
        self._eio = OSError(5)

    def pin(self, name):
        p = self._pins.get(name)
        if p is None:
            p = self._pins[name] = SimPin(self._link, self.info["pins"][name])
        return p

    def mount(self, path="/flash"):
        # mtime=False as on the ESP32 boards: no host clock reaches the flash (a file's mtime came
        # from the machine running the simulation, so two runs of one seed wrote different bytes)
        vfs = os.VfsLfs2(self.flash, mtime=False)
        os.mount(vfs, path)
        return path

    def reset(self):
        try:
            self._link.send(_RESET)
        except OSError:
            pass            # the simulator is gone already: the meter has no power anyway
        sys.exit(0)

    def lock_console(self):
        """No keyboard interrupt from the console (as on the chip, where it is the service UART)."""
        import micropython
        micropython.kbd_intr(-1)
        self.console_locked = True

    def reset_cause(self):
        """Why this boot happened, as the simulator says: "power", "reset" or "watchdog"."""
        return os.getenv("METER_RESET_CAUSE") or "power"

    # -- meter_bus: a chip-select-framed SPI bus, one simulator round trip for a batch of frames ----
    def transfer(self, buf, frame_len):
        link = self._link
        n = len(buf)
        tx = link.tx
        struct.pack_into("<BHBB", tx, 0, _SPI, n + 2, self._bus, frame_len)
        tx[5:5 + n] = buf
        link.s.write(memoryview(tx)[:5 + n])
        link.recv()
        buf[:] = link.rxv[3:3 + n]

    # -- meter_bus for a UART metering chip: the bytes sent, then what came back within the reply
    # window; the bus time passes on the board clock as at the chip's baud rate (10 bits a byte).
    def exchange(self, tx, rx):
        link = self._link
        n = len(tx)
        t = link.tx
        struct.pack_into("<BHBH", t, 0, _METER_UART, n + 3, self._bus, len(rx))
        t[6:6 + n] = tx
        link.s.write(memoryview(t)[:6 + n])
        got = link.recv()
        rx[:got] = link.rxv[3:3 + got]
        link.sleep_ms((n + len(rx)) * 10000 // self._baud + 1)
        return got

    # -- flash: the `vfs` partition as a littlefs block device; every write goes through the
    # simulator so it can cut the power in the middle of one.
    def readblocks(self, n, buf, off=0):
        pos = n * self.block_size + off
        f = self._flash_file
        if f is not None:
            f.seek(self._flash_off + pos)
            f.readinto(buf)
            return
        link = self._link
        done = 0
        total = len(buf)
        mv = memoryview(buf)
        while done < total:
            chunk = min(_CHUNK, total - done)
            struct.pack_into("<II", self._req, 0, pos + done, chunk)
            got = link.call(_FLASH_R, self._req)
            mv[done:done + got] = link.rxv[3:3 + got]
            done += chunk

    def writeblocks(self, n, buf, off=None):
        if off is None:
            for i in range(len(buf) // self.block_size):
                self.ioctl(6, n + i)
            off = 0
        pos = n * self.block_size + off
        # One frame per call: littlefs's program buffer (its cache, 128 bytes here) is copied behind the
        # header in one socket write; a larger one goes straight from littlefs's buffer (no big buffer).
        link = self._link
        tx = link.tx
        size = len(buf)
        struct.pack_into("<BHI", tx, 0, _FLASH_W, size + 4, pos)
        if size <= _CHUNK:
            tx[7:7 + size] = buf
            link.s.write(memoryview(tx)[:7 + size])
        else:
            link.s.write(memoryview(tx)[:7])
            link.s.write(buf)
        link.recv()
        if link.rx[3]:
            raise self._eio      # EIO: the flash reported a program failure

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            struct.pack_into("<II", self._req, 0, arg * self.block_size, self.block_size)
            self._link.call(_FLASH_E, self._req)
            if self._link.rx[3]:
                raise self._eio
        return 0

    # -- random: seeded by the simulator's seed (METER_SEED), so a run is reproducible --------------
    def getrandbits(self, k):
        if k <= 30:
            return random.getrandbits(k)
        v = 0
        while k > 0:
            step = 30 if k > 30 else k
            v = (v << step) | random.getrandbits(step)
            k -= step
        return v

    def bytes(self, n):
        return bytes(random.getrandbits(8) for _ in range(n))

    # -- watchdog ----------------------------------------------------------------------------------
    def start(self, timeout_ms):
        self._link.send(_WDT, struct.pack("<I", timeout_ms))

    def feed(self):
        # Nothing to tell: the simulator catches a hung firmware by the link's wall-clock timeout,
        # and only the start (the timeout a REPL-bound board resets after) matters to it.
        pass

    # -- keypad ------------------------------------------------------------------------------------
    def read_key(self):
        link = self._link
        if not (link.flags & _IN_KEY):
            return None
        link.flags &= ~_IN_KEY
        n = link.call(_KEY_R)
        if not n:
            return None
        return str(bytes(link.rxv[3:3 + n]), "utf-8")

    # -- display -----------------------------------------------------------------------------------
    def play(self, frames):
        """Show each (ticks, frame) of `frames` at its time while the meter sleeps, as the LCD
        controller's timer would (None: stop playing; what is shown stays). A frame is 80 bytes: the
        four rows of 20 LCD codes (printable ASCII). Frames go in as few link
        frames as fit the buffer: flags u8 (1 = a new plan), then per frame at_ms u64 (virtual), len u8,
        the lines joined by newlines."""
        link = self._link
        self._last = None
        tx = self._plan_tx
        if tx is None:
            tx = self._plan_tx = bytearray(_PLAN_TX)
        tx[0] = _DISPLAY_PLAN
        tx[3] = 1
        n = 4
        now = link.now_ms
        tnow = now & _TICKS_MASK
        for t, f in frames or ():
            text = b"\n".join((f[0:20], f[20:40], f[40:60], f[60:80]))
            if n + 9 + len(text) > _PLAN_TX:
                struct.pack_into("<H", tx, 1, n - 3)
                link.s.write(memoryview(tx)[:n])
                tx[3] = 0
                n = 4
            struct.pack_into("<QB", tx, n, now + link.ticks_diff(t, tnow), len(text))
            tx[n + 9:n + 9 + len(text)] = text
            n += 9 + len(text)
        struct.pack_into("<H", tx, 1, n - 3)
        link.s.write(memoryview(tx)[:n])

    def show(self, lines):
        text = "\n".join(lines)
        if text != self._last:
            self._last = text
            self._link.send(_DISPLAY, text.encode())
