"""A 20x4 HD44780 character LCD behind a PCF8574 I2C backpack, driven in 4-bit mode.

Backpack wiring (the common PCF8574T modules): P0=RS, P1=RW (kept low: write only), P2=E, P3=backlight,
P4..P7=D4..D7. The driver keeps a copy of what the screen shows and sends only the characters that
changed, each run of them in one I2C transaction, because a full redraw costs about 30 ms at 100 kHz.
"""
from micropython import const

_RS = const(0x01)
_E = const(0x04)
_BL = const(0x08)

_CMD_CLEAR = const(0x01)
_CMD_ENTRY_INC = const(0x06)  # cursor moves right, display does not shift
_CMD_DISPLAY_OFF = const(0x08)
_CMD_DISPLAY_ON = const(0x0C)  # display on, cursor and blink off
_CMD_FUNC_4BIT_2LINE = const(0x28)  # 4-bit bus, "2-line" addressing (a 20x4 is two folded lines), 5x8 dots
_CMD_SET_DDRAM = const(0x80)

_POWER_UP_MS = const(50)  # > 40 ms after VDD reaches 2.7 V
_RESYNC_FIRST_MS = const(5)  # > 4.1 ms after the first 8-bit function set
_RESYNC_MS = const(1)  # > 100 us after the second
_CLEAR_MS = const(2)  # clear display takes 1.52 ms

_ROW_START = b"\x00\x40\x14\x54"  # DDRAM address of each row's first cell on a 20x4 module
_BLANK = const(0x20)
_UNKNOWN = const(0x3F)  # "?" stands for characters the controller's ROM (A00) cannot draw
_FOLD_FROM = "\u00e0\u00e2\u00e4\u00e9\u00e8\u00ea\u00eb\u00ee\u00ef\u00f4\u00f6\u00f9\u00fb\u00fc\u00e7\u00c0\u00c2\u00c9\u00c8\u00ca\u00ce\u00d4\u00d9\u00db\u00c7"
_FOLD_TO = b"aaaeeeeiioouuucAAEEEIOUUC"  # French accents fall back to the plain letter


def lcd_code(ch):
    """The character ROM code for one character: ASCII as is, French accents folded, others '?'."""
    c = ord(ch)
    if 0x20 <= c <= 0x7D and c != 0x5C:  # ROM A00 draws 0x5C as a yen sign and 0x7E/0x7F as arrows
        return c
    i = _FOLD_FROM.find(ch)
    return _FOLD_TO[i] if i >= 0 else _UNKNOWN


class Hd44780I2c:
    def __init__(self, i2c, addr, sleep_ms, cols=20, rows=4):
        self._i2c = i2c
        self._addr = addr
        self._sleep_ms = sleep_ms
        self.cols = cols
        self.rows = rows
        self._shadow = bytearray(cols * rows)  # what the screen shows now
        self._row = bytearray(cols)  # the wanted row, as ROM codes
        # one run: RS setup, address command, RS setup, then up to a full row, 4 bytes per byte sent
        self._out = bytearray(2 + 4 * (cols + 1))
        self._nib = bytearray(2)
        self.ready = False  # False until initialised, and again after an I2C error (forces a redraw)

    def _nibble8(self, n):
        # during the reset-by-instruction sequence the controller still reads one nibble per command
        b = self._nib
        b[0] = (n << 4) | _BL | _E
        b[1] = (n << 4) | _BL
        self._i2c.writeto(self._addr, b)

    def _put(self, i, byte, rs):
        out = self._out
        hi = (byte & 0xF0) | _BL | rs
        lo = ((byte << 4) & 0xF0) | _BL | rs
        out[i] = hi | _E
        out[i + 1] = hi
        out[i + 2] = lo | _E
        out[i + 3] = lo
        return i + 4

    def _command(self, c):
        self._out[0] = _BL  # RS low before E rises
        n = self._put(1, c, 0)
        self._i2c.writeto(self._addr, memoryview(self._out)[:n])

    def init(self):
        """The HD44780 "initialising by instruction" sequence for a 4-bit bus, then a blank screen."""
        sl = self._sleep_ms
        sl(_POWER_UP_MS)
        self._nibble8(0x3)
        sl(_RESYNC_FIRST_MS)
        self._nibble8(0x3)
        sl(_RESYNC_MS)
        self._nibble8(0x3)
        sl(_RESYNC_MS)
        self._nibble8(0x2)  # switch to 4-bit: from here every byte goes as two nibbles
        self._command(_CMD_FUNC_4BIT_2LINE)
        self._command(_CMD_DISPLAY_OFF)
        self._command(_CMD_CLEAR)
        sl(_CLEAR_MS)
        self._command(_CMD_ENTRY_INC)
        self._command(_CMD_DISPLAY_ON)
        sh = self._shadow
        for i in range(len(sh)):
            sh[i] = _BLANK
        self.ready = True

    def show(self, lines):
        """Show up to `rows` strings (cut to `cols`, blank-padded). True if the screen now shows them;
        False if the LCD did not answer (it is re-initialised and redrawn on the next call)."""
        try:
            if not self.ready:
                self.init()
            for r in range(self.rows):
                self._update_row(r, lines[r] if r < len(lines) else "")
            return True
        except OSError:
            self.ready = False
            return False

    def _update_row(self, r, text):
        cols = self.cols
        row = self._row
        i = 0
        for ch in text:
            if i == cols:
                break
            row[i] = lcd_code(ch)
            i += 1
        while i < cols:
            row[i] = _BLANK
            i += 1
        sh = self._shadow
        base = r * cols
        c = 0
        while c < cols:
            if row[c] == sh[base + c]:
                c += 1
                continue
            start = c
            # extend the run over single unchanged cells: resending one costs less than a new address
            while c < cols and (row[c] != sh[base + c] or (c + 1 < cols and row[c + 1] != sh[base + c + 1])):
                c += 1
            self._write_run(r, start, c)
            for k in range(start, c):
                sh[base + k] = row[k]

    def _write_run(self, r, start, end):
        out = self._out
        out[0] = _BL
        n = self._put(1, _CMD_SET_DDRAM | (_ROW_START[r] + start), 0)
        out[n] = _BL | _RS  # RS high before E rises for the data
        n += 1
        row = self._row
        for k in range(start, end):
            n = self._put(n, row[k], _RS)
        self._i2c.writeto(self._addr, memoryview(out)[:n])
