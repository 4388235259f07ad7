"""The credit ledger: what the customer holds and owes, debited from metered energy and topped up.

Holds (all ints, in the schedule's credit unit: money minor units, or Wh in kWh mode):
- credit: what can be spent (>= 0); taken emergency credit is added here.
- emergency owed: the emergency credit taken and not yet repaid (repaid IN FULL from the next top-up,
  before anything else, even if part of it is still unspent in `credit`).
- debt: what was used with no credit left (friendly periods, unknown time, the moments before the
  relay opens). Any shortfall becomes debt; whether the supply stays on is the policy's decision.
  Arrears from post-paid billing are loaded as debt too (`load_debt`); `arrears` is the part of the
  debt that came that way and is not yet recovered (0 <= arrears <= debt).
- the carried remainder `fine` (< schedule.den) of the exact price not yet debited, month-to-date Wh
  for the blocks, the time of the last priced debit, and lifetime totals for the conservation check.

Conservation invariant (`check()`):
    opening + topups - debited - cleared == credit - debt - emergency_owed
Taking emergency credit moves the same amount into credit and into what is owed, so it leaves both
sides unchanged. Loading arrears adds the amount to `debt` and to `cleared` (money owed from before
the meter, which no top-up paid for), so both sides fall by it. `debited` counts whole minor units;
the exact price consumed is `debited + fine/den`, with 0 <= fine < den (see tariff.py for the rounding rule).

Interface:
    led = Ledger(cfg, schedule, emit=None, state=None)
    led.debit(wh, now, time_valid) -> whole units debited (energy and standing charge since the
        last call). Call it with each metered delta and at least every few minutes with wh=0 so the
        standing charge accrues. Unknown time: energy is priced at the last known time and no
        standing charge accrues; once time is valid again the standing charge catches up (capped
        at `standing_max_gap_s`).
    led.topup(amount, ref=None) -> {"amount", "emergency", "debt", "credit", "ref"}: the split.
        Order: emergency owed in full; then the debt of use by `debt_share_bp` of the rest; then the
        arrears by the arrears share of what is left. The arrears share is at most 90 %, so a top-up
        always adds credit while only arrears are owed: arrears never keep the supply off.
    led.load_debt(amount, share_bp=None): arrears in RAM (adds to debt, arrears and cleared); the
        share, when given, becomes the arrears share (1..9000 bp; until then debt_share_bp, at most 9000).
    led.take_emergency() -> (granted, reason) reason "" or "disabled" / "already_taken" / "credit_not_low"
    led.emergency_state() -> "disabled" | "taken" | "available" | "unavailable"
    led.clear_credit(forgive=False): credit to 0 (forgive=True also clears debt and emergency owed).
    led.set_schedule(schedule): a new tariff schedule; the carried remainder is rescaled.
    led.check() -> None when the invariant holds, else a text saying what is broken.
    led.state() -> dict (JSON-able); Ledger(cfg, schedule, emit, state) restores it.
Config keys: opening_credit (credit of a new ledger, default 0), emergency_amount (0 = none), emergency_threshold (credit must be below it to take
emergency credit; default emergency_amount), debt_share_bp (share of each top-up, after emergency
repayment, that recovers debt; 10000 = debt first in full; the share is rounded down, in the
customer's favour), standing_max_gap_s.
Events: emergency_taken {amount}, emergency_repaid {amount, ref}, debt_recovered {amount, left, ref,
and while arrears are owed: arrears (the part of amount that was arrears), arrears_left}, credit_cleared
{amount}.
"""

from micropython import const

from util import need_int

_MAX_AMOUNT = const(1000000000)
_FULL_SHARE = const(10000)
_DEFAULT_SHARE = const(2500)
_DEFAULT_GAP_S = const(2678400)  # 31 days
_ARREARS_MAX_SHARE = const(9000)  # arrears never take a whole top-up: no cut-off for arrears

_KEYS = ("opening", "credit", "debt", "em_owed", "fine", "den", "mtd_wh", "month", "last_t",
         "topups", "debited", "cleared", "em_taken", "energy_wh")


def _no_event(kind, data):
    pass


class Ledger:
    def __init__(self, cfg, schedule, emit=None, state=None):
        if not isinstance(cfg, dict):
            raise ValueError("ledger config must be an object")
        self.em_amount = need_int(cfg, "emergency_amount", 0, _MAX_AMOUNT, 0)
        self.em_threshold = need_int(cfg, "emergency_threshold", 0, _MAX_AMOUNT, self.em_amount)
        self.debt_share_bp = need_int(cfg, "debt_share_bp", 0, _FULL_SHARE, _DEFAULT_SHARE)
        self.max_gap_s = need_int(cfg, "standing_max_gap_s", 0, 366 * 86400, _DEFAULT_GAP_S)
        self.schedule = schedule
        self.emit = emit or _no_event
        self.opening = self.credit = need_int(cfg, "opening_credit", 0, _MAX_AMOUNT, 0)
        self.debt = self.em_owed = 0
        self.fine = 0
        self.den = schedule.den
        self.mtd_wh = 0
        self.month = -1
        self.last_t = None
        self.topups = self.debited = self.cleared = self.em_taken = self.energy_wh = 0
        self.arrears = 0
        self.arr_bp = 0     # the arrears share set by load_debt; 0: debt_share_bp (at most 90 %)
        if state:
            self.restore(state)

    def restore(self, st):
        for k in _KEYS:
            if k not in st:
                raise ValueError("ledger state lacks %s" % k)
            v = st[k]
            if k == "last_t" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError("ledger state %s must be an int (got %r)" % (k, v))
            setattr(self, k, v)
        # Arrears came later: a record written before them has none (and keeps the default share).
        a = st.get("arrears", 0)
        bp = st.get("arr_bp", 0)
        for v in (a, bp):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError("ledger state arrears must be ints >= 0 (got %r)" % (v,))
        self.arrears = a
        self.arr_bp = bp
        if self.den != self.schedule.den:
            self._rescale(self.schedule.den)

    def state(self):
        st = {k: getattr(self, k) for k in _KEYS}
        st["arrears"] = self.arrears
        st["arr_bp"] = self.arr_bp
        return st

    def _rescale(self, den):
        # The pending fraction of a minor unit moves to the new denominator, rounded down: the
        # customer may gain less than 1/den of a minor unit once per schedule change.
        self.fine = self.fine * den // self.den
        self.den = den

    def set_schedule(self, schedule):
        self.schedule = schedule
        if schedule.den != self.den:
            self._rescale(schedule.den)

    def debit(self, wh, now, time_valid):
        if wh < 0:
            raise ValueError("wh must be >= 0 (got %d)" % wh)
        s = self.schedule
        num = 0
        if time_valid:
            t0 = self.last_t
            if t0 is not None and now > t0:
                gap = now - t0
                # A standing charge for a power cut is due, but a clock jump must not bill years.
                num = s.standing_cost(now - (gap if gap < self.max_gap_s else self.max_gap_s), now)
            else:
                t0 = None  # first valid time, or the clock went back: price this delta at `now`
            e, self.mtd_wh, self.month = s.energy_cost(wh, t0, now, self.mtd_wh, self.month)
            self.last_t = now
        else:
            t = self.last_t if self.last_t is not None else s.tariffs[0].start if s.tariffs else 0
            e, self.mtd_wh, self.month = s.energy_cost(wh, None, t, self.mtd_wh, self.month)
        num += e + self.fine
        whole = num // self.den
        self.fine = num - whole * self.den
        if whole:
            if self.credit >= whole:
                self.credit -= whole
            else:
                self.debt += whole - self.credit
                self.credit = 0
            self.debited += whole
        self.energy_wh += wh
        return whole

    def topup(self, amount, ref=None):
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError("top-up amount must be a positive int (got %r)" % (amount,))
        e = amount if amount < self.em_owed else self.em_owed
        self.em_owed -= e
        rest = amount - e
        if self.debt_share_bp >= _FULL_SHARE:
            d = rest
        else:
            d = rest * self.debt_share_bp // _FULL_SHARE
        use = self.debt - self.arrears          # the debt of use, recovered before the arrears
        if d > use:
            d = use
        bp = self.arr_bp or self.debt_share_bp
        a = (rest - d) * (bp if bp < _ARREARS_MAX_SHARE else _ARREARS_MAX_SHARE) // _FULL_SHARE
        if a > self.arrears:
            a = self.arrears
        self.arrears -= a
        d += a
        self.debt -= d
        self.credit += rest - d
        self.topups += amount
        if e:
            self.emit("emergency_repaid", {"amount": e, "ref": ref})
        if d:
            ev = {"amount": d, "left": self.debt, "ref": ref}
            if a or self.arrears:
                ev["arrears"] = a
                ev["arrears_left"] = self.arrears
            self.emit("debt_recovered", ev)
        return {"amount": amount, "emergency": e, "debt": d, "credit": rest - d, "ref": ref}

    def load_debt(self, amount, share_bp=None):
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError("debt amount must be a positive int (got %r)" % (amount,))
        if self.debt + amount > _MAX_AMOUNT:
            raise ValueError("debt would pass %d" % _MAX_AMOUNT)
        if share_bp is not None:
            if isinstance(share_bp, bool) or not isinstance(share_bp, int) or not 0 < share_bp <= _ARREARS_MAX_SHARE:
                raise ValueError("arrears share must be 1..%d bp (got %r)" % (_ARREARS_MAX_SHARE, share_bp))
            self.arr_bp = share_bp
        self.debt += amount
        self.arrears += amount
        self.cleared += amount

    def emergency_state(self):
        if not self.em_amount:
            return "disabled"
        if self.em_owed:
            return "taken"
        return "available" if self.credit < self.em_threshold else "unavailable"

    def take_emergency(self):
        st = self.emergency_state()
        if st == "disabled":
            return 0, "disabled"
        if st == "taken":
            return 0, "already_taken"
        if st == "unavailable":
            return 0, "credit_not_low"
        a = self.em_amount
        self.credit += a
        self.em_owed = a
        self.em_taken += a
        self.emit("emergency_taken", {"amount": a})
        return a, ""

    def clear_credit(self, forgive=False):
        amount = self.credit
        self.cleared += self.credit
        self.credit = 0
        if forgive:
            self.cleared -= self.debt + self.em_owed
            self.debt = self.em_owed = self.arrears = 0
        self.emit("credit_cleared", {"amount": amount})

    def check(self):
        lhs = self.opening + self.topups - self.debited - self.cleared
        rhs = self.credit - self.debt - self.em_owed
        if lhs != rhs:
            return "conservation: opening+topups-debited-cleared=%d but credit-debt-owed=%d" % (lhs, rhs)
        if self.credit < 0 or self.debt < 0 or self.em_owed < 0:
            return "negative register: credit=%d debt=%d owed=%d" % (self.credit, self.debt, self.em_owed)
        if not 0 <= self.arrears <= self.debt:
            return "arrears %d outside 0..debt %d" % (self.arrears, self.debt)
        if not 0 <= self.fine < self.den:
            return "remainder %d outside 0..%d" % (self.fine, self.den - 1)
        if self.mtd_wh < 0:
            return "month-to-date energy %d < 0" % self.mtd_wh
        return None
