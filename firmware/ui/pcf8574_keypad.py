"""A 4x4 matrix keypad on a PCF8574 I2C expander: scan, debounce, and name the key.

Wiring: P0..P3 drive the rows, P4..P7 read the columns (quasi-bidirectional ports, so writing 1 makes
a line an input with a weak pull-up). Between scans all rows are held low, so any press changes an
input and the PCF8574 pulls its INT line low: the board wakes on that and the firmware calls read_key().
"""
from micropython import const

_IDLE = const(0xF0)  # rows low, columns released: a press shows as a column going low
_NONE = const(-1)
_MANY = const(-2)
_CONFIRM_READS = const(3)
_CONFIRM_GAP_MS = const(5)

# Row-major, row 0 first: the legend printed on the meter's keypad.
DEFAULT_KEYMAP = (
    "1", "2", "3", "BACK",
    "4", "5", "6", "NEXT",
    "7", "8", "9", "EMERG",
    "RECONNECT", "0", "ENTER", None,
)


class Pcf8574Keypad:
    def __init__(self, i2c, addr, sleep_ms, keymap=DEFAULT_KEYMAP):
        self._i2c = i2c
        self._addr = addr
        self._sleep_ms = sleep_ms
        self._keymap = keymap
        self._b = bytearray(1)
        self._held = _NONE
        self._down = False
        self.pending = False  # a key is down that has not been reported yet
        self.fault = False  # True while the expander does not answer
        self._ready = False
        try:
            self._idle()
        except OSError:
            self.fault = True

    def _write(self, v):
        self._b[0] = v
        self._i2c.writeto(self._addr, self._b)

    def _read(self):
        self._i2c.readfrom_into(self._addr, self._b)
        return self._b[0]

    def _idle(self):
        self._write(_IDLE)
        self._ready = True

    def _scan(self):
        """The one key down now (0..15), _NONE, or _MANY (two keys can ghost a third: ignore them)."""
        if not self._ready:
            self._idle()
        v = self._read()
        if v & 0x0F:
            # rows read high: the expander lost its latch (a reset or brown-out), so presses
            # would raise no INT; drive the rows low again
            self._idle()
            v = self._read()
        if (v & 0xF0) == 0xF0:
            self._down = False
            return _NONE  # fast path: nothing pulled any column low
        found = _NONE
        try:
            for row in range(4):
                self._write(0xFF & ~(1 << row))
                cols = (0xFF ^ self._read()) >> 4  # a pressed key pulls its column low
                for col in range(4):
                    if cols & (1 << col):
                        if found != _NONE:
                            return _MANY
                        found = row * 4 + col
        finally:
            # back to all rows low so the next press raises INT; the read clears the INT our own
            # row switching may have raised, and says whether a key is still down
            self._write(_IDLE)
            self._down = (self._read() & 0xF0) != 0xF0
        return found

    def _decide(self):
        code = self._scan()
        if code == self._held:
            return None
        if code >= 0:
            for _ in range(_CONFIRM_READS):
                self._sleep_ms(_CONFIRM_GAP_MS)
                if self._scan() != code:
                    return None  # still bouncing: decide on a later call
        self._held = code
        return None if code < 0 else self._keymap[code]

    def read_key(self):
        """A newly pressed key's name, or None. A key is reported once per press, after it has read
        the same for a few milliseconds (contact bounce lasts less); holding it does not repeat.
        Afterwards `pending` is True when a key is down but not yet reported: call again soon."""
        try:
            key = self._decide()
            self.fault = False
        except OSError:
            self.fault = True
            self._ready = False
            self._down = False
            key = None
        self.pending = self._down and self._held == _NONE
        return key
