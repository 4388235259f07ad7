"""Tariff schedule: what energy and standing time cost, in exact fractions of a minor unit.

A schedule is a list of tariffs, each applying from its `start` (Unix s UTC) until the next one
starts; before the first start the first tariff applies (so a meter that never knew the time
still has a price). A change never touches what was already debited: only energy and standing time
after the change's start are priced with it.

Units (all ints):
- money: minor units (MRU: `minor_per_major`, default 100; 5 for khoums). Prices are MINOR UNITS PER
  MWh (= per 1000 kWh), so 2.375 MRU/kWh at 100 minor/major is `price_per_mwh` 237500.
- energy: Wh; block limits in the configuration are whole kWh (`upto_kwh`), cumulative for the
  calendar month (first block = lifeline).
- time-of-use: a weekly table by hour; a window {days, from_hour, to_hour, mult_bp} multiplies the
  block price by mult_bp/10000 (to_hour <= from_hour wraps past midnight). First matching window wins;
  hours in no window use 10000 (x1).
- standing charge: `standing_per_day` minor units, accrued PRO-RATA PER SECOND (with the remainder
  carried, so a day costs exactly the daily charge however it is sliced, and a partial day costs its
  share - no cliff at midnight, no incentive to game the debit time).
- tax/fees: `tax_bp` basis points on every charge (energy and standing), 1600 = 16 %.

Rounding rule (also in docs/credit.md): every charge is an exact fraction num/den of a minor unit,
where den (`self.den`) is the least common denominator of all rates in the schedule. The ledger adds
each charge's numerator to a carried remainder and debits only the whole minor units it contains,
keeping the rest (< den) for the next debit. So at any instant the total debited is at most the exact
price of everything consumed so far and less than one minor unit below it: nothing is rounded away,
nothing is rounded up, and neither party gains over any period.

Splitting: a debit covers the interval (t0, t1]. Its energy is shared between the pieces of the
interval cut by time-of-use band changes, month starts and tariff starts, in proportion to each piece's
duration (integer Wh, the last piece takes what is left, so the sum is exact); within a piece it is
split again at block limits. Intervals longer than `max_split_s` (a power cut, a clock jump) and
debits with unknown time are priced as one piece, at the second before t1.

Interface:
    s = Schedule(config)                 # ValueError naming the bad key and its allowed range
    s.mode ("money"|"kwh"), s.den, s.minor_per_major
    s.energy_cost(wh, t0, t1, mtd_wh, month) -> (num, mtd_wh, month)   # num / s.den minor units
    s.standing_cost(t0, t1) -> num
    s.index_at(t) -> index of the tariff applying at t
In kWh mode credit is Wh: den is 1, energy costs its Wh, and blocks, TOU, standing and tax are refused.
"""

from micropython import const

from credit import civil

_SCALE = const(10000)  # basis points
_WH_PER_MWH = const(1000000)
_DAY_S = const(86400)
_HOUR_S = const(3600)
_HOURS_WEEK = const(168)
_MAX_PRICE = const(100000000)  # minor units per MWh (100 000 minor units per kWh)
_MAX_MULT = const(100000)  # x10
_MAX_TAX = const(10000)  # 100 %
_MAX_STANDING = const(10000000)
_MAX_BLOCK_KWH = const(1000000)
_DEFAULT_SPLIT_S = const(3600)


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def need_int(cfg, key, lo, hi, default=None):
    """cfg[key] as an int in [lo, hi]; ValueError naming the key and the range otherwise."""
    v = cfg.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("%s must be an int in %d..%d (got %r)" % (key, lo, hi, v))
    return v


class Tariff:
    """One tariff of a schedule: block prices, TOU bands and standing charge as fractions of den."""

    def __init__(self, cfg, where):
        if not isinstance(cfg, dict):
            raise ValueError("%s must be an object" % where)
        self.start = need_int(cfg, "start", -(1 << 40), 1 << 40, 0)
        self.tax_bp = need_int(cfg, "tax_bp", 0, _MAX_TAX, 0)
        self.standing = need_int(cfg, "standing_per_day", 0, _MAX_STANDING, 0)
        blocks = cfg.get("blocks")
        if not isinstance(blocks, list) or not blocks:
            raise ValueError("%s.blocks must be a non-empty list" % where)
        self.limits = []  # cumulative monthly Wh where each block ends; the last is open
        self.prices = []
        prev = 0
        for i, b in enumerate(blocks):
            bw = "%s.blocks[%d]" % (where, i)
            if not isinstance(b, dict):
                raise ValueError("%s must be an object" % bw)
            self.prices.append(need_int(b, "price_per_mwh", 0, _MAX_PRICE))
            if i < len(blocks) - 1:
                kwh = need_int(b, "upto_kwh", prev + 1, _MAX_BLOCK_KWH)
                self.limits.append(kwh * 1000)
                prev = kwh
            elif b.get("upto_kwh") is not None:
                raise ValueError("%s.upto_kwh must be absent: the last block is open" % bw)
        self.mults = [_SCALE]
        self.band = bytearray(_HOURS_WEEK)  # hour of week (Mon 00h = 0) -> index into mults
        claimed = bytearray(_HOURS_WEEK)
        tou = cfg.get("tou", [])
        if not isinstance(tou, list):
            raise ValueError("%s.tou must be a list" % where)
        for i, w in enumerate(tou):
            self._add_window(w, "%s.tou[%d]" % (where, i), claimed)
        # Hours until the band changes, so an interval is cut without scanning the table.
        self.run = bytearray(_HOURS_WEEK)
        for h in range(_HOURS_WEEK):
            n = 1
            while n < _HOURS_WEEK and self.band[(h + n) % _HOURS_WEEK] == self.band[h]:
                n += 1
            self.run[h] = n

    def _add_window(self, w, where, claimed):
        if not isinstance(w, dict):
            raise ValueError("%s must be an object" % where)
        days = w.get("days")
        if not isinstance(days, list) or not days:
            raise ValueError("%s.days must be a non-empty list of weekdays 0..6 (Mon=0)" % where)
        for d in days:
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
                raise ValueError("%s.days must hold weekdays 0..6 (Mon=0), got %r" % (where, d))
        h0 = need_int(w, "from_hour", 0, 23)
        h1 = need_int(w, "to_hour", 0, 24)
        m = need_int(w, "mult_bp", 0, _MAX_MULT)
        if m not in self.mults:
            if len(self.mults) >= 32:
                raise ValueError("%s: at most 32 distinct mult_bp values" % where)
            self.mults.append(m)
        bi = self.mults.index(m)
        n = (h1 - h0) % 24 or 24
        for d in days:
            for k in range(n):
                h = (d * 24 + h0 + k) % _HOURS_WEEK
                if not claimed[h]:
                    claimed[h] = 1
                    self.band[h] = bi

    def fractions(self):
        """(num, den) pairs of every rate: per Wh for each block x band, then per second standing."""
        out = []
        t = _SCALE + self.tax_bp
        for p in self.prices:
            for m in self.mults:
                out.append((p * m * t, _WH_PER_MWH * _SCALE * _SCALE))
        out.append((self.standing * t, _DAY_S * _SCALE))
        return out

    def scale_to(self, den):
        """Fix the numerators for the schedule's common denominator."""
        t = _SCALE + self.tax_bp
        d = _WH_PER_MWH * _SCALE * _SCALE
        self.num = []  # per block: list per band of the price of one Wh in 1/den minor units
        for p in self.prices:
            self.num.append([p * m * t * den // d for m in self.mults])
        self.standing_num = self.standing * t * den // (_DAY_S * _SCALE)


def _hour_of_week(t):
    # 1970-01-01 00:00 UTC was Thursday 00:00, hour 72 of a Monday-based week.
    return (t // _HOUR_S + 72) % _HOURS_WEEK


class Schedule:
    """The tariff schedule from config; prices energy and standing time for the ledger."""

    def __init__(self, cfg):
        if not isinstance(cfg, dict):
            raise ValueError("tariff config must be an object")
        self.mode = cfg.get("mode", "money")
        if self.mode not in ("money", "kwh"):
            raise ValueError("mode must be 'money' or 'kwh' (got %r)" % (self.mode,))
        self.minor_per_major = need_int(cfg, "minor_per_major", 1, 10000, 100)
        self.max_split_s = need_int(cfg, "max_split_s", 1, 31 * _DAY_S, _DEFAULT_SPLIT_S)
        self.tariffs = []
        if self.mode == "kwh":
            for key in ("tariffs", "blocks", "tou", "standing_per_day", "tax_bp"):
                if cfg.get(key):
                    raise ValueError("%s is not allowed in kwh mode (credit is energy)" % key)
            self.den = 1
            return
        tl = cfg.get("tariffs")
        if not isinstance(tl, list) or not tl or len(tl) > 16:
            raise ValueError("tariffs must be a list of 1..16 tariffs")
        for i, tc in enumerate(tl):
            t = Tariff(tc, "tariffs[%d]" % i)
            if self.tariffs and t.start <= self.tariffs[-1].start:
                raise ValueError("tariffs[%d].start must be after tariffs[%d].start" % (i, i - 1))
            self.tariffs.append(t)
        # One denominator for the whole schedule, so a carried remainder means the same under
        # every tariff. Reducing each fraction first keeps it small (often < 2**30) for real prices.
        den = 1
        for t in self.tariffs:
            for n, d in t.fractions():
                d //= gcd(n, d)
                den = den * d // gcd(den, d)
        self.den = den
        for t in self.tariffs:
            t.scale_to(den)

    def index_at(self, t):
        i = len(self.tariffs) - 1
        while i > 0 and self.tariffs[i].start > t:
            i -= 1
        return i

    def _next_cut(self, a, i, t1):
        """The first instant after a (before t1) where the price can change."""
        tar = self.tariffs[i]
        h = _hour_of_week(a)
        b = a - a % _HOUR_S + tar.run[h] * _HOUR_S
        m = civil.start_of_next_month(a)
        if m < b:
            b = m
        if i + 1 < len(self.tariffs) and self.tariffs[i + 1].start < b:
            b = self.tariffs[i + 1].start
        return b if b < t1 else t1

    def energy_cost(self, wh, t0, t1, mtd, month):
        """Price of `wh` Wh used over (t0, t1]: (num in 1/den minor units, month-to-date Wh, month id).

        t0 None (time unknown before) or a span outside 1..max_split_s prices it all at t1 - 1.
        `month` is civil.month_id of the last debit; a new month restarts the blocks.
        """
        if self.mode == "kwh":
            mid = civil.month_id(t1)
            if mid != month:
                mtd = 0
            return wh, mtd + wh, mid
        if t0 is None or t1 - t0 <= 0 or t1 - t0 > self.max_split_s:
            t0 = t1 - 1
        span = t1 - t0
        num = 0
        done = 0
        a = t0
        while a < t1 and done < wh:
            i = self.index_at(a)
            b = self._next_cut(a, i, t1)
            part = wh * (b - t0) // span - done
            done += part
            mid = civil.month_id(a)
            if mid != month:
                month = mid
                mtd = 0
            tar = self.tariffs[i]
            band = tar.band[_hour_of_week(a)]
            k = 0
            limits = tar.limits
            while part > 0:
                while k < len(limits) and mtd >= limits[k]:
                    k += 1
                take = part
                if k < len(limits) and limits[k] - mtd < take:
                    take = limits[k] - mtd
                num += take * tar.num[k][band]
                mtd += take
                part -= take
            a = b
        if wh == 0:  # nothing to price, but a new month still restarts the blocks
            mid = civil.month_id(t1)
            if mid != month:
                month = mid
                mtd = 0
        return num, mtd, month

    def standing_cost(self, t0, t1):
        """Standing charge for the seconds (t0, t1], split at tariff starts, in 1/den minor units."""
        if self.mode == "kwh" or t1 <= t0:
            return 0
        num = 0
        a = t0
        while a < t1:
            i = self.index_at(a)
            b = t1
            if i + 1 < len(self.tariffs) and self.tariffs[i + 1].start < t1:
                b = self.tariffs[i + 1].start
            num += (b - a) * self.tariffs[i].standing_num
            a = b
        return num

    def major_text(self, amount):
        """Human text of a credit amount: '12.34' (money, in major units) or '12.345 kWh' (Wh)."""
        neg = "-" if amount < 0 else ""
        amount = -amount if amount < 0 else amount
        if self.mode == "kwh":
            return "%s%d.%03d kWh" % (neg, amount // 1000, amount % 1000)
        mpm = self.minor_per_major
        if mpm == 1:
            return neg + str(amount)
        digits = len(str(mpm - 1))
        frac = (amount % mpm) * (10 ** digits) // mpm
        return "%s%d.%0*d" % (neg, amount // mpm, digits, frac)
