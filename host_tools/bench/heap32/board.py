"""An in-process meter board for memory measurements (MicroPython; no sockets, no simulator): the
interpreter that runs the firmware also plays the hardware. Virtual clock; an ATM90E26 register file
on the metering bus (the firmware's real driver talks to it); a scripted SIM7600 that registers,
opens transparent TCP and answers MQTT as a broker would; a service port, keypad, display, pins,
watchdog and random in RAM; the flash is a directory (`root`). Runs on the 32-bit WebAssembly port
(`heap32_bench`) and on the unix port, so both word sizes measure the same run."""
import json
import os

from micropython import const

_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)


class Clock:
    def __init__(self, board, epoch=1767571200):
        self.board = board
        self.now_ms = 0
        self.epoch = epoch
        self.time_valid = True

    def ticks_ms(self):
        return self.now_ms & _MASK

    def ticks_add(self, t, d):
        return (t + d) & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def time(self):
        return self.epoch + self.now_ms // 1000

    def set_time(self, unix_s):
        self.epoch = unix_s - self.now_ms // 1000
        self.time_valid = True

    def _to(self, t):
        if t > self.now_ms:
            self.board.chip_bus.advance(t - self.now_ms)
            self.now_ms = t

    def sleep_ms(self, ms):
        self._to(self.now_ms + ms)

    def sleep_until(self, ticks):
        """Advance to `ticks` (or less if input is waiting); True when input is waiting."""
        if self.board.waiting():
            return True
        d = self.ticks_diff(ticks, self.now_ms & _MASK)
        self._to(self.now_ms + (d if d > 0 else 0))
        return self.board.waiting()


class ChipBus:
    """ATM90E26 registers behind framed SPI: writes are kept, LastData follows the last word moved,
    energy accrues at a constant load and clears on read."""

    def __init__(self):
        self.regs = {0x02: 0x000C, 0x20: 0x6886, 0x30: 0x6886}
        self.last = 0
        self.acc_ms = 0

    def advance(self, ms):
        self.acc_ms += ms

    def _read(self, reg):
        if reg == 0x06:
            return self.last
        if reg == 0x40:                   # APenergy: 0.1 CF pulses; ~1.2 kW at 3200 imp/kWh
            v = self.acc_ms // 94
            self.acc_ms -= v * 94
            v &= 0xFFFF
        elif reg in (0x01, 0x41, 0x46, 0x4B, 0x4E):
            v = 0
        elif reg == 0x49:
            v = 23000
        elif reg in (0x48, 0x68):
            v = 5217
        elif reg in (0x4A, 0x4F):
            v = 1200
        elif reg == 0x4D:
            v = 1000
        elif reg == 0x4C:
            v = 5000
        else:
            v = self.regs.get(reg, 0)
        self.last = v
        return v

    def transfer(self, buf, frame_len):
        for i in range(0, len(buf), frame_len):
            a = buf[i]
            if a & 0x80:
                v = self._read(a & 0x7F)
            else:
                v = (buf[i + 1] << 8) | buf[i + 2]
                if a == 0x00 and v == 0x789A:          # soft reset
                    self.regs = {0x02: 0x000C, 0x20: 0x6886, 0x30: 0x6886}
                else:
                    self.regs[a] = v
                self.last = v
            buf[i + 1] = v >> 8
            buf[i + 2] = v & 0xFF


class Modem:
    """A SIM7600 that is always registered, plus the MQTT broker behind its transparent TCP link."""

    def __init__(self, pkt):
        self.pkt = pkt
        self.out = bytearray()
        self.data = False
        self.powered = False
        self.down = []            # downlink PUBLISH payloads to deliver once the session is up
        self.subscribed = False
        self.published = 0

    def set_power(self, on):
        self.powered = on

    def reset(self):
        self.data = False

    def read(self):
        if not self.out:
            if self.subscribed and self.down and self.data:
                topic, payload = self.down.pop(0)
                self.out += self.pkt.publish(topic, payload, 1, 7)
            else:
                return None
        o = bytes(self.out[:256])
        self.out = self.out[256:]
        return o

    def write(self, b):
        if not self.powered:
            return
        if self.data:
            if b == b"+++":
                self.data = False
                self.out += b"\r\nOK\r\n"
                return
            self._mqtt(b)
            return
        cmd = bytes(b).decode().strip()
        if cmd.startswith("AT+CREG") or cmd.startswith("AT+CGREG") or cmd.startswith("AT+CEREG"):
            self.out += ("\r\n%s: 0,1\r\n\r\nOK\r\n" % cmd[2:-1]).encode()
        elif cmd == "AT+CPIN?":
            self.out += b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        elif cmd == "AT+CSQ":
            self.out += b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        elif cmd == "AT+COPS?":
            self.out += b'\r\n+COPS: 0,0,"Mauritel",7\r\n\r\nOK\r\n'
        elif cmd == "AT+CCLK?":
            self.out += b'\r\n+CCLK: "26/01/05,00:00:00+00"\r\n\r\nOK\r\n'
        elif cmd == "AT+NETOPEN":
            self.out += b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
        elif cmd.startswith("AT+CIPOPEN") or cmd == "ATO":
            self.out += b"\r\nCONNECT 115200\r\n"
            self.data = True
        elif cmd.startswith("AT+CMGL"):
            self.out += b"\r\nOK\r\n"
        elif cmd:
            self.out += b"\r\nOK\r\n"

    def _mqtt(self, b):
        pkt = self.pkt
        i = 0
        while i < len(b):
            t = b[i] >> 4
            n = 0
            sh = 0
            j = i + 1
            while True:
                c = b[j]
                n |= (c & 0x7F) << sh
                sh += 7
                j += 1
                if not c & 0x80:
                    break
            body = b[j:j + n]
            if t == 1:
                self.out += pkt.connack(False, 0)
            elif t == 8:
                self.out += pkt.suback((body[0] << 8) | body[1], [1])
                self.subscribed = True
            elif t == 3:
                self.published += 1
                if b[i] & 6:
                    tl = (body[0] << 8) | body[1]
                    self.out += pkt.ack(pkt.PUBACK, (body[2 + tl] << 8) | body[3 + tl])
            elif t == 12:
                self.out += bytes((0xD0, 0))
            i = j + n


class Stream:
    def __init__(self):
        self.rx = bytearray()
        self.lines = []

    def read(self):
        if not self.rx:
            return None
        d = bytes(self.rx)
        self.rx = bytearray()
        return d

    def write(self, data):
        self.lines.append(bytes(data))
        if len(self.lines) > 8:
            self.lines.pop(0)


class Pin:
    def __init__(self, board, name):
        self.board = board
        self.name = name
        self.v = 0

    def value(self, v=None):
        if v is None:
            if self.name == "relay_feedback":
                return 1 if self.board.relay_closed else 0
            return self.v
        self.v = 1 if v else 0
        if self.v and self.name == "relay_set":
            self.board.relay_closed = True
        elif self.v and self.name == "relay_reset":
            self.board.relay_closed = False


class Reset(Exception):
    pass


class Board:
    def __init__(self, info, root, modem_packets=None):
        self.info = info
        self.root = root
        self.relay_closed = False
        self.chip_bus = self.meter_bus = ChipBus()
        self.clock = Clock(self)
        self.service = Stream()
        self.modem = Modem(modem_packets) if modem_packets is not None else None
        self.keys = []
        self.lines = None
        self._pins = {}
        self._x = 12345
        self.random = self.watchdog = self.keypad = self.display = self
        self.console_locked = False

    def waiting(self):
        m = self.modem
        return bool(self.service.rx or self.keys or (m is not None and (m.out or (m.down and m.data))))

    def pin(self, name):
        p = self._pins.get(name)
        if p is None:
            p = self._pins[name] = Pin(self, name)
        return p

    def mount(self, path="/flash"):
        try:
            os.mkdir(self.root)
        except OSError:
            pass
        return self.root

    def reset(self):
        raise Reset()

    def lock_console(self):
        self.console_locked = True

    def reset_cause(self):
        return "power"

    # random: a fixed LCG (measurements, not security)
    def getrandbits(self, k):
        v = 0
        while k > 0:
            self._x = (self._x * 1103515245 + 12345) & 0x7FFFFFFF
            step = k if k < 16 else 16
            v = (v << step) | ((self._x >> 8) & ((1 << step) - 1))
            k -= step
        return v

    def bytes(self, n):
        return bytes(self.getrandbits(8) for _ in range(n))

    # watchdog
    def start(self, timeout_ms):
        pass

    def feed(self):
        pass

    # keypad and display
    def read_key(self):
        return self.keys.pop(0) if self.keys else None

    def show(self, lines):
        self.lines = lines


def load_info(path):
    with open(path) as f:
        return json.load(f)
