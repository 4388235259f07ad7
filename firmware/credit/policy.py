"""Credit policy: when running out of credit may cut the supply, and when to warn the customer.

Friendly credit: inside a friendly period the supply is never cut for lack of credit; what is used
with no credit becomes debt in the ledger (the ledger turns every shortfall into debt) and is
recovered from later top-ups. Periods are weekly windows (start day + "HH:MM" start and end; an end at
or before the start wraps past midnight, equal start and end means the whole day) and holiday dates
(whole UTC days). Example, one UK supplier's hours: {"days": [0,1,2,3,4,5], "start": "18:00",
"end": "11:00"} (Mon-Sat evenings to the next morning) plus {"days": [5,6], "start": "00:00",
"end": "00:00"} (weekends).

Unknown time: when the clock has not been set from a trusted source (`time_valid` False) the meter
cannot know whether a friendly period holds, so it NEVER disconnects for lack of credit - never cut
on a guess. Usage then becomes debt like in a friendly period.

The rule is evaluated continuously (`cut_for_credit`), so a friendly period starting while the supply
is off for no credit restores it (through the supply's reconnect mode: at once, or on the key).

Low-credit warnings, each emitted once per crossing and re-armed only when the value climbs back
above threshold + hysteresis (so a value hovering at the threshold does not repeat the warning):
- by amount: credit < `low_credit` (credit units);
- by days: estimated days left < `low_days`, where days left = credit / average daily use over the
  last `history_days` complete days (a ring of daily totals of debited credit). Days with no recorded
  use count as zero use. No estimate (None) until one full day is recorded or while use is zero.

Interface:
    p = Policy(cfg, emit=None, state=None)
    p.friendly(now, time_valid) -> bool;  p.may_disconnect(now, time_valid) -> bool
    p.cut_for_credit(credit, now, time_valid) -> bool   (credit <= 0 and may_disconnect)
    p.record(debited, now, time_valid)   # feed each ledger debit (whole units) for the daily ring
    p.days_left(credit) -> int or None;  p.check_warnings(credit) -> emits "low_credit"
    p.state() -> dict; Policy(cfg, emit, state) restores it
Config keys: friendly (list of windows), holidays (list of "YYYY-MM-DD"), low_credit,
low_credit_hysteresis, low_days, low_days_hysteresis (default 1), history_days (1..31, default 7).
Event: low_credit {"by": "amount"|"days", "credit": c, "days": d or -1}.
"""

from micropython import const

from util import need_int

_DAY_S = const(86400)
_WEEK_MIN = const(10080)
_DAY_MIN = const(1440)
_MAX_AMOUNT = const(1000000000)


def _no_event(kind, data):
    pass


class Policy:
    def __init__(self, cfg, emit=None, state=None):
        if not isinstance(cfg, dict):
            raise ValueError("policy config must be an object")
        self.emit = emit or _no_event
        # The friendly windows and holidays are checked and built by code loaded for this call only.
        from util import once
        self.windows, self.holidays = once("credit.policycfg").friendly(cfg)
        self.low_credit = need_int(cfg, "low_credit", 0, _MAX_AMOUNT, 0)
        self.low_credit_hyst = need_int(cfg, "low_credit_hysteresis", 0, _MAX_AMOUNT, 0)
        self.low_days = need_int(cfg, "low_days", 0, 365, 0)
        self.low_days_hyst = need_int(cfg, "low_days_hysteresis", 0, 365, 1)
        n = need_int(cfg, "history_days", 1, 31, 7)
        self.ring = [0] * n  # complete days' debited totals, oldest overwritten first
        self.head = 0
        self.count = 0
        self.day = -1  # day number of `today`, -1 before the first valid time
        self.today = 0
        self.armed_credit = True
        self.armed_days = True
        if state:
            self._restore(state)

    def state(self):
        return {"ring": list(self.ring), "head": self.head, "count": self.count, "day": self.day,
                "today": self.today, "armed_credit": int(self.armed_credit),
                "armed_days": int(self.armed_days)}

    def _restore(self, st):
        ring = st.get("ring")
        if not isinstance(ring, list):
            raise ValueError("policy state ring must be a list")
        n = len(self.ring)
        if len(ring) == n:
            self.ring[:] = ring
            self.head = st["head"]
            self.count = st["count"]
        else:
            # history_days changed: keep the newest days that fit, oldest first.
            old = [ring[(st["head"] - st["count"] + k) % len(ring)] for k in range(st["count"])]
            old = old[-n:]
            for k, v in enumerate(old):
                self.ring[k] = v
            self.count = len(old)
            self.head = self.count % n
        self.day = st["day"]
        self.today = st["today"]
        self.armed_credit = bool(st["armed_credit"])
        self.armed_days = bool(st["armed_days"])

    def friendly(self, now, time_valid):
        if not time_valid:
            return False
        if now // _DAY_S in self.holidays:
            return True
        mow = ((now // _DAY_S + 3) % 7) * _DAY_MIN + (now % _DAY_S) // 60
        for start, n in self.windows:
            if (mow - start) % _WEEK_MIN < n:
                return True
        return False

    def may_disconnect(self, now, time_valid):
        # Never cut on a guess: unknown time could be a friendly period.
        return time_valid and not self.friendly(now, time_valid)

    def cut_for_credit(self, credit, now, time_valid):
        return credit <= 0 and self.may_disconnect(now, time_valid)

    def record(self, debited, now, time_valid):
        if time_valid:
            d = now // _DAY_S
            if self.day < 0:
                self.day = d
            elif d > self.day:
                self._push(self.today)
                # Days the meter saw nothing (off, or no debit) count as zero use.
                gap = d - self.day - 1
                for _ in range(gap if gap < len(self.ring) else len(self.ring)):
                    self._push(0)
                self.day = d
                self.today = 0
            # d < self.day: the clock went back; keep adding to the current day.
        self.today += debited

    def _push(self, v):
        self.ring[self.head] = v
        self.head = (self.head + 1) % len(self.ring)
        if self.count < len(self.ring):
            self.count += 1

    def days_left(self, credit):
        if not self.count:
            return None
        total = 0
        for k in range(self.count):
            total += self.ring[(self.head - 1 - k) % len(self.ring)]
        if total <= 0:
            return None
        c = credit if credit > 0 else 0
        return c * self.count // total

    def check_warnings(self, credit):
        if self.low_credit:
            if self.armed_credit and credit < self.low_credit:
                self.armed_credit = False
                self.emit("low_credit", {"by": "amount", "credit": credit, "days": self._days(credit)})
            elif not self.armed_credit and credit >= self.low_credit + self.low_credit_hyst:
                self.armed_credit = True
        if self.low_days:
            d = self.days_left(credit)
            if d is None:
                return
            if self.armed_days and d < self.low_days:
                self.armed_days = False
                self.emit("low_credit", {"by": "days", "credit": credit, "days": d})
            elif not self.armed_days and d >= self.low_days + self.low_days_hyst:
                self.armed_days = True

    def _days(self, credit):
        d = self.days_left(credit)
        return -1 if d is None else d
