"""The display model: what the 20x4 LCD shows, built from the app's snapshot, the keypad's state and
result messages. It decides the text; the board's `display.show(lines)` only draws it.

Screens (cycled by NEXT, rotated automatically): MAIN (credit and supply), CONSUMPTION (today's kWh,
power), SUPPLY (why it is open, in words), WARNINGS, LINK (modem status, date and time), INFO (meter
number, version, mode). Auto-rotation visits MAIN and CONSUMPTION, plus SUPPLY while the supply is
open and WARNINGS while there are any; NEXT visits every screen. A key press holds the rotation for
`hold_s`. Above the screens: digit entry, the emergency confirm step, and a result message overlay
shown for `overlay_s` (any key dismisses it early). Pictures of every screen: docs/ui.md.

Snapshot keys (all optional; `update` copies what it needs, so the app may reuse one dict):
credit (minor units, or Wh when mode is "kwh"), mode "money"|"kwh", currency ("MRU"), minor_per_major
(100), debt, emergency (the ledger's emergency_state(): "disabled"|"available"|"unavailable"|"taken"),
emergency_owed, emergency_amount, today_wh, month_wh, p_w, supply "closed"|"open", reasons (list of
reason names), awaiting_key, warnings (list of names or [name, value]: "low_credit", ["days_left", 3],
"friendly" or ["friendly", "11:00"], "no_time"), link (str), time (Unix s), time_valid, meter_id,
version, language (the LCD is French whatever the language: see ui/fr.py).

RAM: the frame is composed in one preallocated 80-byte buffer and compared with what the LCD shows;
`show()` gets four new strings only when a byte changed, and nothing is composed at all unless the
snapshot, the screen or the overlay changed (`dirty`). Minutes, not seconds, of the time are kept, so
the clock costs one redraw a minute.

Interface:
    d = Display(lcd, clock, cfg=None)   # lcd.show(lines); clock: ticks_ms/ticks_add/ticks_diff
    d.update(snapshot)       d.tick()        d.next()        d.home()     d.goto(screen)
    d.entry(digits, n)       d.confirm(on)   d.message(result)      d.touch() -> overlay dismissed
    d.refresh() -> True if lcd.show was called (update, tick and message refresh by themselves;
        the other inputs only mark the frame, so one key press draws once: the keypad refreshes)
    d.render() -> 4 strings of 20 characters (composes now); d.lines() -> what was last shown
    d.tick(now) at future ticks with d.divert(recorder), d.state()/d.restore(st), d.keep_states(on):
        how ui/wiring.py plans the quiet minutes ahead for a board that plays them by itself
    d.screen -> index into SCREENS
Config keys: rotate_s (0 = no rotation, default 6), hold_s (default 30), overlay_s (default 5).
Results for `message`: a name, or (name, detail) with detail None, a str, or an int (accepted /
granted: credit units added; locked_out: seconds); True/False mean reconnected/reconnect_refused.
"""
from micropython import const

from util import need_int
from ui import fmt
from ui import fr

MAIN = const(0)
CONSUMPTION = const(1)
SUPPLY = const(2)
WARNINGS = const(3)
LINK = const(4)
INFO = const(5)
SCREENS = ("main", "consumption", "supply", "warnings", "link", "info")
_N_SCREENS = const(6)

_COLS = const(20)
_ROWS = const(4)
_SIZE = const(80)
_SPACE = const(0x20)

# snapshot keys copied by update(); "time" is kept as whole minutes (see _minute)
_KEYS = ("credit", "mode", "currency", "minor_per_major", "debt", "emergency", "emergency_owed",
         "emergency_amount", "today_wh", "month_wh", "p_w", "supply", "reasons", "awaiting_key",
         "warnings", "link", "time_valid", "meter_id", "version")
_MISSING = object()


_BLANKS = b"                    "    # one row of spaces


def _put(b, p, end, text):
    """Write `text` into b[p:end] as LCD codes (see fmt.code), cut at `end`."""
    e = text.encode()
    n = len(e)
    if n == len(text) and n and min(e) >= 0x20 and max(e) <= 0x7D and 0x5C not in e:
        # plain ASCII the LCD shows as is (the usual case): one copy, not a call per character
        if n > end - p:
            n = end - p
        b[p:p + n] = e[:n] if n < len(e) else e
        return
    for ch in text:
        if p >= end:
            break
        b[p] = fmt.code(ch)
        p += 1


class Display:
    def __init__(self, lcd, clock, cfg=None):
        cfg = cfg or {}
        self._lcd = lcd
        self._clock = clock
        self._rotate_ms = need_int(cfg, "rotate_s", 0, 3600, 6) * 1000
        self._hold_ms = need_int(cfg, "hold_s", 0, 3600, 30) * 1000
        self._overlay_ms = need_int(cfg, "overlay_s", 1, 60, 5) * 1000
        self._buf = bytearray(_SIZE)  # the frame being composed
        self._shown = bytearray(_SIZE)  # what the LCD was last given
        self._mv = memoryview(self._shown)
        self._drawn = False
        self._dirty = True
        self._s = {"mode": "money", "currency": "MRU", "minor_per_major": 100, "credit": 0}
        self._minute = None
        self.screen = MAIN
        self._digits = None
        self._n = 0
        self._confirm = False
        self._ov = None  # (name, detail) of the message shown, or None
        self._ov_until = 0
        self._rotate_at = clock.ticks_add(clock.ticks_ms(), self._rotate_ms)
        self._keep = False
        self._screens = {}   # screen -> its composed frame, for the snapshot and minute it was made from

    # -- inputs ----------------------------------------------------------------------------------
    def update(self, snap):
        """Take the app's snapshot; redraw if anything the screens use changed."""
        s = self._s
        changed = False
        for k in _KEYS:
            v = snap.get(k, _MISSING)
            if v is _MISSING:
                continue
            if s.get(k, _MISSING) != v:
                if self._keep and s is self._s:
                    s = self._s = dict(s)
                s[k] = list(v) if isinstance(v, list) else v
                changed = True
        t = snap.get("time", _MISSING)
        if t is _MISSING:  # a partial snapshot keeps the time it does not mention
            m = self._minute if s.get("time_valid") else None
        else:
            m = t // 60 if t is not None and s.get("time_valid") else None
        if m != self._minute:
            self._minute = m
            changed = True
        if changed:
            self._screens = {}
            self._dirty = True
            self.refresh()

    def touch(self):
        """A key was pressed: hold the rotation; dismiss an overlay (True if one was dismissed)."""
        c = self._clock
        self._rotate_at = c.ticks_add(c.ticks_ms(), self._hold_ms)
        if self._ov is not None:
            self._ov = None
            self._dirty = True
            return True
        return False

    def next(self):
        self.screen = (self.screen + 1) % _N_SCREENS
        self._dirty = True

    def home(self):
        self.goto(MAIN)

    def goto(self, screen):
        if self.screen != screen:
            self.screen = screen
            self._dirty = True

    def entry(self, digits, n):
        """Show digit entry: the first n bytes of `digits` (ASCII digits); n == 0 leaves entry."""
        self._digits = digits if n else None
        self._n = n
        self._dirty = True

    def confirm(self, on):
        self._confirm = bool(on)
        self._dirty = True

    def message(self, result):
        """Show a result over everything for overlay_s (None shows nothing)."""
        if result is None:
            return
        if result is True:
            result = "reconnected"
        elif result is False:
            result = "reconnect_refused"
        if isinstance(result, str):
            result = (result, None)
        c = self._clock
        now = c.ticks_ms()
        self._ov = (result[0], result[1] if len(result) > 1 else None)
        self._ov_until = c.ticks_add(now, self._overlay_ms)
        self._rotate_at = c.ticks_add(now, self._hold_ms)
        self._dirty = True
        self.refresh()

    def tick(self, now=None):
        """Expire the overlay and rotate screens (board clock ticks); redraw if needed. `now`: the
        ticks to act at (a plan of future ticks, see `state`); the clock's by default."""
        c = self._clock
        if now is None:
            now = c.ticks_ms()
        if self._ov is not None and c.ticks_diff(now, self._ov_until) >= 0:
            self._ov = None
            self._dirty = True
            self._rotate_at = c.ticks_add(now, self._rotate_ms)
        if (self._rotate_ms and self._ov is None and self._digits is None and not self._confirm
                and c.ticks_diff(now, self._rotate_at) >= 0):
            self._rotate_at = c.ticks_add(now, self._rotate_ms)
            nxt = self._auto_next()
            if nxt != self.screen:
                self.screen = nxt
                self._dirty = True
        self.refresh()

    def _auto_next(self):
        i = self.screen
        for _ in range(_N_SCREENS):
            i = (i + 1) % _N_SCREENS
            if i == MAIN or i == CONSUMPTION:
                return i
            if i == SUPPLY and self._s.get("supply") == "open":
                return i
            if i == WARNINGS and self._s.get("warnings"):
                return i
        return MAIN

    # -- planning ahead --------------------------------------------------------------------------
    def state(self):
        """Everything that decides what is shown next, to come back to (see `restore`). The snapshot
        dict is shared, not copied: `update` replaces it rather than changing it in place while a
        state taken from it is kept (`keep_states`)."""
        return (self.screen, self._ov, self._ov_until, self._rotate_at, self._minute, self._dirty,
                self._drawn, bytes(self._shown), self._s)

    def restore(self, st):
        (self.screen, self._ov, self._ov_until, self._rotate_at, self._minute, self._dirty,
         self._drawn, shown, self._s) = st
        self._shown[:] = shown
        self._screens = {}

    def keep_states(self, on):
        """While on, `update` gives the display a new snapshot dict instead of changing the one a
        kept state refers to."""
        self._keep = on

    def divert(self, lcd):
        """Send what would be shown to `lcd` instead of the board's LCD; returns the previous one."""
        old = self._lcd
        self._lcd = lcd
        return old

    # -- output ----------------------------------------------------------------------------------
    def refresh(self):
        """Compose if something changed; call lcd.show only if the text differs. True if shown."""
        if not self._dirty:
            return False
        self._dirty = False
        self._compose()
        if self._drawn and self._buf == self._shown:
            return False
        self._shown[:] = self._buf
        self._drawn = True
        frame = getattr(self._lcd, "frame", None)
        if frame is not None:      # a recorder of planned frames takes the 80 bytes as they are
            frame(self._shown)
        else:
            self._lcd.show(self.lines())
        return True

    def lines(self):
        mv = self._mv
        return [str(mv[0:20], "ascii"), str(mv[20:40], "ascii"), str(mv[40:60], "ascii"),
                str(mv[60:80], "ascii")]

    def render(self):
        """Compose the current view now and return it (for tests and the service port)."""
        self._compose()
        b = memoryview(self._buf)
        return [str(b[i:i + _COLS], "ascii") for i in range(0, _SIZE, _COLS)]

    # -- composing -------------------------------------------------------------------------------
    def _row(self, r, left, right=None):
        """Row r = `left` from column 0 and `right` ending at column 20 (right wins an overlap)."""
        b = self._buf
        p = r * _COLS
        end = p + _COLS
        b[p:end] = _BLANKS
        if left:
            _put(b, p, end, left)
        if right:
            n = len(right)
            _put(b, end - n if n < _COLS else p, end, right)

    def _amount(self, v):
        s = self._s
        if s.get("mode") == "kwh":
            return fmt.kwh(v)
        return fmt.money(v, s.get("minor_per_major") or 100, s.get("currency") or "")

    def _added(self, v):
        s = self._s
        if s.get("mode") == "kwh":
            return "+" + fmt.kwh_short(v)
        return "+" + self._amount(v)

    def _clock_text(self):
        return fr.UNKNOWN_TIME if self._minute is None else fmt.hhmm(self._minute)

    def _compose(self):
        if self._ov is not None:
            self._overlay()
        elif self._confirm:
            self._confirm_view()
        elif self._digits is not None:
            self._entry_view()
        else:
            # The rotation comes back to the same few screens many times before anything they show
            # changes: each is composed once per snapshot (update() forgets them all).
            f = self._screens.get(self.screen)
            if f is not None:
                self._buf[:] = f
                return
            self._screen()
            self._screens[self.screen] = bytes(self._buf)

    def _screen(self):
        if self.screen == MAIN:
            self._main()
        elif self.screen == CONSUMPTION:
            self._consumption()
        elif self.screen == SUPPLY:
            self._supply()
        elif self.screen == WARNINGS:
            self._warnings()
        elif self.screen == LINK:
            self._link()
        else:
            self._info()

    def _main(self):
        s = self._s
        self._row(0, fr.BALANCE, self._clock_text())
        self._row(1, None, self._amount(s.get("credit") or 0))
        closed = s.get("supply") != "open"
        self._row(2, fr.SUPPLY_ON if closed else fr.SUPPLY_OFF)
        self._row(3, self._main_note(closed))

    def _main_note(self, closed):
        """The one thing the customer most needs to know, for the main screen's last line."""
        s = self._s
        if not closed:
            reasons = s.get("reasons")
            if reasons:
                return _reason_text(reasons[0])
            return fr.PRESS_RECONNECT
        if self._has_warning("friendly"):
            return fr.WARNINGS[1][1]
        em = s.get("emergency")
        if em == "taken":
            owed = s.get("emergency_owed")
            return fr.EMERGENCY_OWED + self._amount(owed) if owed else fr.WARNINGS[3][1]
        if s.get("debt"):
            return fr.DEBT + self._amount(s["debt"])
        if em == "available":
            return fr.EMERGENCY_AVAILABLE
        for w in s.get("warnings") or ():
            if _wname(w) in ("low_credit", "days_left"):
                return self._warning_text(w)
        return None

    def _has_warning(self, name):
        for w in self._s.get("warnings") or ():
            if _wname(w) == name:
                return True
        return False

    def _consumption(self):
        s = self._s
        self._row(0, fr.CONSUMPTION, self._clock_text())
        self._row(1, fr.TODAY, fmt.kwh(s.get("today_wh") or 0))
        self._row(2, fr.POWER, fmt.watts(s.get("p_w") or 0))
        m = s.get("month_wh")
        self._row(3, fr.MONTH if m is not None else None, fmt.kwh(m) if m is not None else None)

    def _supply(self):
        s = self._s
        self._row(0, fr.SUPPLY)
        if s.get("supply") != "open":
            self._row(1, fr.SUPPLY_ON)
            self._row(2, None)
            self._row(3, None)
            return
        self._row(1, fr.SUPPLY_OFF)
        reasons = s.get("reasons") or ()
        if not reasons:
            self._row(2, fr.PRESS_RECONNECT)
            self._row(3, fr.TO_RESTORE)
            return
        self._row(2, _reason_text(reasons[0]))
        if len(reasons) == 1:
            self._row(3, fr.PRESS_RECONNECT if s.get("awaiting_key") else None)
        elif len(reasons) == 2:
            self._row(3, _reason_text(reasons[1]))
        else:
            self._row(3, _reason_text(reasons[1]), " +%d" % (len(reasons) - 2))

    def _warning_text(self, w):
        name = _wname(w)
        val = w[1] if isinstance(w, (list, tuple)) and len(w) > 1 else None
        if name == "days_left":
            if val is None or val < 1:
                return fr.LESS_THAN_A_DAY
            return fr.DAY_LEFT if val == 1 else fr.DAYS_LEFT % val
        if name == "friendly" and val:
            return fr.GRACE_UNTIL + str(val)
        row = fr.lookup(fr.WARNINGS, name)
        return row[1] if row else str(name)

    def _warnings(self):
        ws = self._s.get("warnings") or ()
        self._row(0, fr.WARNINGS_TITLE)
        for r in range(1, _ROWS):
            if r - 1 < len(ws):
                self._row(r, self._warning_text(ws[r - 1]))
            else:
                self._row(r, fr.NONE if r == 1 else None)

    def _link(self):
        s = self._s
        self._row(0, fr.LINK)
        self._row(1, s.get("link") or fr.NO_LINK)
        if self._minute is None:
            self._row(2, fr.NO_TIME)
        else:
            self._row(2, fmt.date(self._minute) + " " + fmt.hhmm(self._minute))
        self._row(3, None)

    def _info(self):
        s = self._s
        self._row(0, fr.INFO)
        mid = s.get("meter_id")
        self._row(1, fr.NUMBER + str(mid) if mid else None)
        v = s.get("version")
        self._row(2, fr.VERSION + str(v) if v else None)
        if s.get("mode") == "kwh":
            self._row(3, fr.MODE_KWH)
        else:
            self._row(3, fr.MODE_MONEY + (s.get("currency") or ""))

    def _entry_view(self):
        n = self._n
        self._row(0, fr.ENTRY_TITLE, str(n))
        self._row(1, None)
        self._row(2, None)
        self._row(3, fr.ENTRY_HINT)
        # grouped as typed: threes up to 12 digits (OpenPAYGO 9 / 12), fours beyond (STS 20):
        # 16 digits fill row 1 ("1234 5678 9012 3456"), the rest go to row 2
        g = 3 if n <= 12 else 4
        b = self._buf
        d = self._digits
        p = _COLS
        for i in range(n):
            if i == 16:
                p = 2 * _COLS
            elif i and i % g == 0:
                p += 1
            b[p] = d[i]
            p += 1

    def _confirm_view(self):
        s = self._s
        self._row(0, fr.CONFIRM_TITLE)
        a = s.get("emergency_amount")
        if a:
            t = fr.CONFIRM_AMOUNT % self._amount(a)
            if len(t) > _COLS:
                t = "+" + self._amount(a) + " ?"
        else:
            t = fr.CONFIRM_ANY
        self._row(1, t)
        self._row(2, fr.CONFIRM_YES)
        self._row(3, fr.CONFIRM_NO)

    def _overlay(self):
        name, detail = self._ov
        row = fr.lookup(fr.RESULTS, name)
        head = row[1] if row else str(name).upper()
        text = row[2] if row else None
        balance = False
        if isinstance(detail, bool):
            detail = None
        if isinstance(detail, int):
            if name == "locked_out":
                text = fr.WAIT + fmt.seconds(detail)
            else:
                text = self._added(detail)
                balance = name in ("accepted", "granted")
        elif isinstance(detail, str):
            reason = fr.lookup(fr.REASONS, detail)
            text = reason[1] if reason else detail
        self._row(0, head)
        self._row(1, text)
        self._row(2, None)
        self._row(3, fr.NEW_BALANCE + self._amount(self._s.get("credit") or 0) if balance else None)


def _wname(w):
    return w[0] if isinstance(w, (list, tuple)) else w


def _reason_text(name):
    row = fr.lookup(fr.REASONS, name)
    return row[1] if row else str(name)
