"""Scripted I2C devices for board tests, attached to a fake machine.I2C by address:
a PCF8574 wired to a 4x4 key matrix, and an HD44780 character LCD behind a PCF8574 backpack that
decodes the byte stream exactly as the controller would (E falling edge latches, 8-bit then 4-bit mode).
Runs under CPython and MicroPython.
"""

_RS = 0x01
_E = 0x04
_BL = 0x08


class Pcf8574Matrix:
    """P0..P3 drive the rows, P4..P7 read the columns; a held key joins its row and column.
    INT (active low) asserts whenever the column inputs differ from what was last read, including
    changes caused by the host's own row writes, and is released by a read, as on the real part."""

    def __init__(self, int_pin=None):
        self.latch = 0xFF  # power-on state: all lines weakly high
        self.held = []  # (row, col) of keys held down
        self.int_pin = int_pin
        self.seen = 0xF0  # columns at the last read
        self.writes = []

    def press(self, row, col):
        self.held.append((row, col))
        self._update_int()

    def release(self, row, col):
        self.held.remove((row, col))
        self._update_int()

    def release_all(self):
        self.held = []
        self._update_int()

    def _update_int(self):
        if self.int_pin is not None and (self.port() & 0xF0) != self.seen:
            self.int_pin.drive(0)

    def port(self):
        v = self.latch
        for r, c in self.held:
            row_low = not (self.latch >> r) & 1
            if row_low:
                v &= ~(1 << (4 + c))
        return v & 0xFF

    def write(self, data):
        for b in data:
            self.latch = b
            self.writes.append(b)
            self._update_int()

    def read(self, n):
        v = self.port()
        self.seen = v & 0xF0
        if self.int_pin is not None:
            self.int_pin.drive(1)
        return bytes([v]) * n


class Hd44780Backpack:
    """P0=RS, P1=RW, P2=E, P3=backlight, P4..P7=D4..D7, as on the common PCF8574 LCD backpacks."""

    def __init__(self, cols=20, rows=4):
        self.cols = cols
        self.rows = rows
        self.eight_bit = True
        self.half = None  # high nibble waiting for its low half in 4-bit mode
        self.ops = []  # ('init8', nibble) in 8-bit mode, then ('cmd', byte) / ('data', byte)
        self.ddram = bytearray(b" " * 128)
        self.addr = 0
        self.last = 0
        self.display_on = False
        self.backlight = False
        self.lines2 = False

    def write(self, data):
        for b in data:
            if (self.last & _E) and not (b & _E):
                self._latch(self.last)  # the controller latches on E's falling edge
            self.last = b
            self.backlight = bool(b & _BL)

    def read(self, n):
        return bytes([self.last]) * n

    def _latch(self, b):
        nib = b >> 4
        rs = b & _RS
        if self.eight_bit:
            self.ops.append(("init8", nib))
            if not rs and nib == 0x2:
                self.eight_bit = False  # function set with DL=0: from now on two nibbles per byte
            return
        if self.half is None:
            self.half = nib
            return
        byte = (self.half << 4) | nib
        self.half = None
        if rs:
            self.ops.append(("data", byte))
            self.ddram[self.addr] = byte
            self._next_addr()
        else:
            self.ops.append(("cmd", byte))
            self._command(byte)

    def _next_addr(self):
        a = self.addr + 1
        if self.lines2:
            if a == 0x28:
                a = 0x40
            elif a == 0x68:
                a = 0x00
        self.addr = a & 0x7F

    def _command(self, c):
        if c & 0x80:
            self.addr = c & 0x7F
        elif c & 0x20:
            self.lines2 = bool(c & 0x08)
            if not c & 0x10:
                self.eight_bit = False
        elif c & 0x08:
            self.display_on = bool(c & 0x04)
        elif c == 0x01:
            for i in range(128):
                self.ddram[i] = 0x20
            self.addr = 0

    def text(self):
        """What a person sees: the rows of a 20x4 module (DDRAM rows start at 0x00, 0x40, 0x14, 0x54)."""
        starts = (0x00, 0x40, 0x14, 0x54)
        return [bytes(self.ddram[s:s + self.cols]).decode() for s in starts[:self.rows]]
