"""The simulated meter board: every bus, pin, clock tick and flash block is served by the simulator
over one TCP link (METER_SIM=host:port). Frame numbers match host_tools/sim/link.py."""
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

IN_SERVICE = const(1)
IN_KEY = const(2)
IN_POWER_FAIL = const(4)
IN_MODEM = const(8)
IN_GPIO = const(16)

_CHUNK = const(512)
_TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)


class _Link:
    """Blocking request/response frames to the simulator; buffers made once."""

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

    def send(self, ftype, payload=b""):
        n = len(payload)
        tx = self.tx
        struct.pack_into("<BH", tx, 0, ftype, n)
        tx[3:3 + n] = payload
        self.s.write(memoryview(tx)[:3 + n])

    def recv(self):
        """Read one reply frame into self.rx; return its payload length (payload starts at rx[3])."""
        self._read_exact(0, 3)
        n = self.rx[1] | (self.rx[2] << 8)
        if n:
            self._read_exact(3, n)
        return n

    def _read_exact(self, off, n):
        got = 0
        while got < n:
            r = self.s.readinto(self.rxv[off + got:off + n])
            if not r:
                sys.exit(0)  # the simulator went away: the meter has no power
            got += r

    def call(self, ftype, payload=b""):
        self.send(ftype, payload)
        return self.recv()


class SimClock:
    """Virtual time owned by the simulator: ticks wrap at 2**30 like MicroPython's."""

    def __init__(self, link, now_ms, epoch_s, valid):
        self._link = link
        self.now_ms = now_ms
        self._epoch = epoch_s
        self.time_valid = bool(valid)
        self.flags = 0
        self._adv = bytearray(12)
        self._adv[0] = _ADVANCE
        self._adv[1] = 9

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
        self._link.send(_TIME_SET, struct.pack("<I", unix_s))

    def _advance(self, until_ms, wake=1):
        adv = self._adv
        struct.pack_into("<QB", adv, 3, until_ms, wake)
        link = self._link
        link.s.write(adv)
        link.recv()
        self.now_ms, self.flags = struct.unpack_from("<QB", link.rx, 3)

    def sleep_until(self, ticks):
        """Sleep until `ticks`; True if it returned because input is waiting."""
        d = self.ticks_diff(ticks, self.now_ms & _TICKS_MASK)
        self._advance(self.now_ms + (d if d > 0 else 0))
        return self.flags != 0

    def sleep_ms(self, ms):
        until = self.now_ms + ms
        while self.now_ms < until:
            self._advance(until, 0)  # a delay inside a driver: input does not cut it short


class SimSPI:
    """A chip-select-framed SPI bus: one simulator round trip for a whole batch of frames."""

    def __init__(self, link, bus_id):
        self._link = link
        self._bus = bus_id
        self._hdr = bytearray(2)

    def transfer(self, buf, frame_len):
        link = self._link
        n = len(buf)
        tx = link.tx
        struct.pack_into("<BHBB", tx, 0, _SPI, n + 2, self._bus, frame_len)
        tx[5:5 + n] = buf
        link.s.write(memoryview(tx)[:5 + n])
        link.recv()
        buf[:] = link.rxv[3:3 + n]


class SimStream:
    """A UART (service port or modem) bridged by the simulator; reads only when the last wake said so."""

    def __init__(self, link, clock, port, flag):
        self._link = link
        self._clock = clock
        self._port = port
        self._flag = flag
        self._req = struct.pack("<BH", port, _CHUNK)
        self._pre = bytes((port,))

    def read(self):
        if not (self._clock.flags & self._flag):
            return None
        self._clock.flags &= ~self._flag
        n = self._link.call(_UART_R, self._req)
        if not n:
            return None
        return bytes(self._link.rxv[3:3 + n])

    def write(self, data):
        link = self._link
        for i in range(0, len(data), _CHUNK - 1):
            link.send(_UART_W, self._pre + data[i:i + _CHUNK - 1])


class SimModem(SimStream):
    def __init__(self, link, clock, port, flag, power_pin, reset_pin):
        super().__init__(link, clock, port, flag)
        self._power = power_pin
        self._reset = reset_pin

    def set_power(self, on):
        self._power.value(1 if on else 0)

    def reset(self):
        self._reset.value(1)
        self._clock.sleep_ms(100)
        self._reset.value(0)


class SimPin:
    def __init__(self, link, num):
        self._link = link
        self._num = num
        self._w = bytearray(2)
        self._w[0] = num

    def value(self, v=None):
        if v is None:
            self._link.call(_GPIO_R, bytes((self._num,)))
            return self._link.rx[3]
        self._w[1] = 1 if v else 0
        self._link.send(_GPIO_W, self._w)


class SimFlash:
    """The `vfs` partition as a littlefs block device; every write goes through the simulator so it can
    cut the power in the middle of one."""

    def __init__(self, link, size, block_size):
        self._link = link
        self.block_size = block_size
        self.block_count = size // block_size
        self._req = bytearray(8)

    def readblocks(self, n, buf, off=0):
        link = self._link
        pos = n * self.block_size + off
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
        mv = memoryview(buf)
        hdr = self._req
        tx = self._link.tx
        for i in range(0, len(buf), _CHUNK):
            part = mv[i:i + _CHUNK]
            n = len(part)
            struct.pack_into("<BHI", tx, 0, _FLASH_W, n + 4, pos + i)
            tx[7:7 + n] = part
            self._link.s.write(memoryview(tx)[:7 + n])
            self._link.recv()

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            struct.pack_into("<II", self._req, 0, arg * self.block_size, self.block_size)
            self._link.call(_FLASH_E, self._req)
            return 0
        return 0


class SimRandom:
    def __init__(self, seed):
        random.seed(seed)

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


class SimWatchdog:
    def __init__(self, link):
        self._link = link
        self._feed = struct.pack("<I", 0)

    def start(self, timeout_ms):
        self._link.send(_WDT, struct.pack("<I", timeout_ms))

    def feed(self):
        self._link.send(_WDT, self._feed)


class SimKeypad:
    def __init__(self, link, clock):
        self._link = link
        self._clock = clock

    def read_key(self):
        if not (self._clock.flags & IN_KEY):
            return None
        self._clock.flags &= ~IN_KEY
        n = self._link.call(_KEY_R)
        if not n:
            return None
        return str(bytes(self._link.rxv[3:3 + n]), "utf-8")


class SimDisplay:
    def __init__(self, link):
        self._link = link
        self._last = None

    def show(self, lines):
        text = "\n".join(lines)
        if text != self._last:
            self._last = text
            self._link.send(_DISPLAY, text.encode())


def _board_json_path():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/board.json"


class Board:
    """The sim board. Reads board.json beside this file; connects to the simulator named by METER_SIM."""

    def __init__(self, info_path=None):
        with open(info_path or os.getenv("METER_BOARD_JSON") or _board_json_path()) as f:
            self.info = json.load(f)
        addr = os.getenv("METER_SIM")
        if not addr:
            raise OSError("METER_SIM is not set: the sim board runs only inside `meterkit sim`")
        self._link = link = _Link(addr)
        link.call(_HELLO, b"sim-board")
        now_ms, epoch_s, valid = struct.unpack_from("<QIB", link.rx, 3)
        self.clock = SimClock(link, now_ms, epoch_s, valid)
        self.meter_bus = SimSPI(link, self.info["metering"]["spi"]["id"])
        pins = self.info["pins"]
        self._pins = {}
        self.service = SimStream(link, self.clock, 0, IN_SERVICE)
        self.modem = SimModem(link, self.clock, 1, IN_MODEM, self.pin("modem_power"), self.pin("modem_reset"))
        fl = self.info["flash"]
        self.flash = SimFlash(link, fl["vfs_size"], fl["block_size"])
        self.random = SimRandom(int(os.getenv("METER_SEED") or "1"))
        self.watchdog = SimWatchdog(link)
        self.keypad = SimKeypad(link, self.clock)
        self.display = SimDisplay(link)

    def pin(self, name):
        p = self._pins.get(name)
        if p is None:
            p = self._pins[name] = SimPin(self._link, self.info["pins"][name])
        return p

    def mount(self, path="/flash"):
        vfs = os.VfsLfs2(self.flash)
        os.mount(vfs, path)
        return path


    def reset(self):
        self._link.send(_RESET)
        sys.exit(0)
