"""The keypad state machine: token digit entry, the emergency-credit confirm step, reconnect and
screen cycling. It never blocks: `poll()` drains the keys waiting now, `tick()` runs the timeouts.

States: IDLE, ENTRY (digits being typed), CONFIRM (emergency credit asked, waiting for ENTER).
- IDLE: a digit starts ENTRY; NEXT shows the next screen; BACK returns to the main screen; EMERG
  goes to CONFIRM; RECONNECT calls on_reconnect(); ENTER does nothing.
- ENTRY: digits append (at most 20: an STS token; extra digits are ignored); BACK deletes the last
  digit, and a quick run of `back_clear_run` BACKs (each within `back_run_ms` of the previous, as a
  held key repeats) clears them all; deleting the last digit leaves ENTRY. ENTER hands the digits to
  on_token(digits) and shows its result. NEXT and EMERG are ignored so a slip does not lose a
  half-typed token; RECONNECT still works.
- CONFIRM: ENTER calls on_emergency() and shows its result; any other key cancels (a digit also
  starts an entry, RECONNECT also reconnects).
ENTRY and CONFIRM end after `entry_timeout_s` with no key (board clock ticks, wrap-safe), clearing
the digits. Any key first dismisses a result message; NEXT and BACK are spent doing only that.

Callbacks return a result for the display (see ui/display.py `message`): on_token(digits str) ->
(name, detail), on_emergency() -> (name, detail), on_reconnect() -> bool or (name, detail). If a
callback raises, the display says "ERREUR" and the exception goes on to the scheduler, which logs it.

Interface:
    k = Keypad(keys, clock, display, on_token, on_emergency=None, on_reconnect=None, cfg=None)
    k.poll()  k.tick()  k.press(key)   k.state (IDLE/ENTRY/CONFIRM), k.n (digits typed)
Config keys: entry_timeout_s (5..600, default 60), back_clear_run (2..20, default 4),
back_run_ms (100..2000, default 500).
"""
from micropython import const

from util import need_int

IDLE = const(0)
ENTRY = const(1)
CONFIRM = const(2)

_MAX_DIGITS = const(20)
_MAX_KEYS_PER_POLL = const(32)  # a babbling keypad must not hold the superloop


def _none():
    return None


class Keypad:
    def __init__(self, keys, clock, display, on_token, on_emergency=None, on_reconnect=None,
                 cfg=None):
        cfg = cfg or {}
        self._keys = keys
        self._clock = clock
        self._display = display
        self._on_token = on_token
        self._on_emergency = on_emergency or _none
        self._on_reconnect = on_reconnect or _none
        self._timeout_ms = need_int(cfg, "entry_timeout_s", 5, 600, 60) * 1000
        self._back_clear = need_int(cfg, "back_clear_run", 2, 20, 4)
        self._back_gap_ms = need_int(cfg, "back_run_ms", 100, 2000, 500)
        self.digits = bytearray(_MAX_DIGITS)
        self.n = 0
        self.state = IDLE
        self._last = clock.ticks_ms()  # ticks of the last key
        self._back_run = 0

    def poll(self):
        """Handle every key waiting now (at most 32 per call). Returns how many were handled."""
        read = self._keys.read_key
        i = 0
        while i < _MAX_KEYS_PER_POLL:
            k = read()
            if k is None:
                break
            self.press(k)
            i += 1
        return i

    def tick(self):
        """Abandon an entry or a confirm step after entry_timeout_s with no key."""
        if self.state != IDLE:
            c = self._clock
            if c.ticks_diff(c.ticks_ms(), self._last) >= self._timeout_ms:
                self._to_idle()
                self._display.refresh()

    def press(self, key):
        """Act on one key; the display is redrawn once, after the key's whole effect."""
        try:
            self._press(key)
        finally:
            self._display.refresh()

    def _press(self, key):
        c = self._clock
        now = c.ticks_ms()
        quick = c.ticks_diff(now, self._last) <= self._back_gap_ms
        self._last = now
        if key == "BACK":
            self._back_run = self._back_run + 1 if quick and self._back_run else 1
        else:
            self._back_run = 0
        if self._display.touch() and (key == "NEXT" or key == "BACK"):
            return
        st = self.state
        if st == CONFIRM:
            if key == "ENTER":
                self._to_idle()
                self._call(self._on_emergency)
                return
            self._to_idle()
            if key == "RECONNECT" or (len(key) == 1 and "0" <= key <= "9"):
                self._press(key)
            return
        if len(key) == 1 and "0" <= key <= "9":
            if self.n < _MAX_DIGITS:
                self.digits[self.n] = ord(key)
                self.n += 1
                self.state = ENTRY
                self._display.entry(self.digits, self.n)
        elif key == "BACK":
            if st == ENTRY:
                self.n = 0 if self._back_run >= self._back_clear else self.n - 1
                if self.n == 0:
                    self._to_idle()
                else:
                    self._display.entry(self.digits, self.n)
            else:
                self._display.home()
        elif key == "ENTER":
            if st == ENTRY:
                digits = str(memoryview(self.digits)[:self.n], "ascii")
                self._to_idle()
                self._call(self._on_token, digits)
        elif key == "RECONNECT":
            self._call(self._on_reconnect)
        elif st == IDLE:
            if key == "NEXT":
                self._display.next()
            elif key == "EMERG":
                self.state = CONFIRM
                self._display.confirm(True)

    def _to_idle(self):
        if self.state == ENTRY:
            self.n = 0
            self._display.entry(self.digits, 0)
        elif self.state == CONFIRM:
            self._display.confirm(False)
        self.n = 0
        self.state = IDLE
        self._back_run = 0

    def _call(self, fn, arg=None):
        try:
            r = fn() if arg is None else fn(arg)
        except Exception:
            self._display.message("error")
            raise
        self._display.message(r)
