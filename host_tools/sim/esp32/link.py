"""The simulator's end of the firmware link: frame types and a server that dispatches them to the world.

Frames are `<BH` (type, payload length) + payload, little-endian, over one TCP connection from the
sim board (`boards/sim/board.py`, which holds the same numbers). Types marked "reply" get exactly one
reply frame of the same type; the others are fire-and-forget and take effect in order.

| type | name | request payload | reply payload |
|---|---|---|---|
| 1 | HELLO | firmware build string | `<QIB` now_ms, epoch_s at ms 0, time_valid (reply) |
| 2 | ADVANCE | `<QB` until_ms, wake_on_input | `<QBI` now_ms, input flags, levels of GPIO 0-23 (reply) |
| 3 | SPI | `<BB` bus, frame_len + frames | the frames as MISO carried them (reply) |
| 4 | UART_W | `<B` port + bytes | - |
| 5 | UART_R | `<BH` port, max | bytes available now (reply) |
| 6 | GPIO_W | `<BB` pin, level | - |
| 7 | GPIO_R | `<B` pin | `<B` level (reply) |
| 8 | FLASH_R | `<II` offset, length | bytes (reply) |
| 9 | FLASH_W | `<I` offset + bytes | `<B` 0 ok (reply) |
| 10 | FLASH_E | `<II` offset, length | `<B` 0 ok (reply) |
| 11 | WDT | `<I` timeout_ms (0 = feed) | - |
| 12 | RESET | - | - (the simulator restarts the firmware) |
| 13 | DISPLAY | UTF-8 lines joined by "\\n" | - |
| 14 | KEY_R | - | key name, empty if none (reply) |
| 15 | STATS | `<II` heap_used_peak, heap_total | - |
| 16 | TIME_SET | `<I` unix seconds | - |
| 17 | METER_UART | `<BH` bus, reply bytes wanted + the bytes sent | what the metering chip sent back (reply) |
| 18 | DISPLAY_PLAN | `<B` flags (1 = a new plan), then per frame `<QB` at_ms, length, UTF-8 lines joined by "\\n" | - |

Input flags in ADVANCE replies: 1 service bytes waiting, 2 key waiting, 4 power failing,
8 modem bytes waiting, 16 a GPIO input changed. ADVANCE returns early (now < until) when input
arrives in realtime mode; in lockstep it returns early only at instants the world scheduled.

GPIO levels in ADVANCE replies: bit n is what GPIO_R of pin n (n < 24) would answer at that instant.
A level changes only as time passes (an ADVANCE) or through a GPIO_W (a relay pulse, a modem's power
pin), so the board answers reads from the last reply until it writes a pin, saving a round trip per
read of the cover switch or the power-fail input.
"""
import socket
import struct

HELLO, ADVANCE, SPI, UART_W, UART_R, GPIO_W, GPIO_R = 1, 2, 3, 4, 5, 6, 7
FLASH_R, FLASH_W, FLASH_E, WDT, RESET, DISPLAY, KEY_R, STATS, TIME_SET = 8, 9, 10, 11, 12, 13, 14, 15, 16
METER_UART = 17
DISPLAY_PLAN = 18

IN_SERVICE, IN_KEY, IN_POWER_FAIL, IN_MODEM, IN_GPIO = 1, 2, 4, 8, 16

PORT_SERVICE, PORT_MODEM = 0, 1

_HDR = struct.Struct("<BH")
_Q = struct.Struct("<Q")
_QB = struct.Struct("<QB")
_QBI = struct.Struct("<QBI")


class LinkClosed(Exception):
    """The firmware process closed its end (it exited, crashed or was cut off)."""


class Link:
    """One firmware connection. `serve(handler)` reads frames and calls handler methods until the
    firmware disconnects or the handler asks to stop."""

    def __init__(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self.buf = bytearray(1 << 17)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.frames = 0

    def _fill(self, need):
        """Make at least `need` bytes available from self.start."""
        if self.start + need > len(self.buf):
            n = self.end - self.start
            self.buf[0:n] = self.buf[self.start:self.end]
            self.start, self.end = 0, n
        while self.end - self.start < need:
            got = self.conn.recv_into(self.view[self.end:], len(self.buf) - self.end)
            if not got:
                raise LinkClosed()
            self.end += got

    def next_frame(self):
        """Return (type, payload bytes) of the next frame."""
        self._fill(3)
        ftype, length = _HDR.unpack_from(self.buf, self.start)
        self._fill(3 + length)
        payload = bytes(self.view[self.start + 3:self.start + 3 + length])
        self.start += 3 + length
        self.frames += 1
        return ftype, payload

    def reply(self, ftype, payload=b""):
        self.conn.sendall(_HDR.pack(ftype, len(payload)) + payload)

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


def listen(host="127.0.0.1", port=0):
    """A listening socket for one firmware connection; returns (socket, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(1)
    return s, s.getsockname()[1]


def pack_advance_reply(now_ms, flags, levels=0):
    return _QBI.pack(now_ms, flags, levels & 0xFFFFFF)


def unpack_u64(payload):
    return _Q.unpack_from(payload)[0]
