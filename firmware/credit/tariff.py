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

_HOUR_S = const(3600)
_HOURS_WEEK = const(168)


class Tariff:
    """One tariff of a schedule (built by credit/tariffcfg.py): `start`, `tax_bp`, `standing`, block
    `limits` (cumulative monthly Wh) and `prices`, TOU `mults`, `band` and `run` by hour of week, and
    `num` / `standing_num` in 1/den minor units. No methods: the parsing code is not resident."""


def _hour_of_week(t):
    # 1970-01-01 00:00 UTC was Thursday 00:00, hour 72 of a Monday-based week.
    return (t // _HOUR_S + 72) % _HOURS_WEEK


class Schedule:
    """The tariff schedule from config; prices energy and standing time for the ledger."""

    def __init__(self, cfg):
        # The config checks and table building are loaded for this call only (see tariffcfg.py).
        from util import once
        once("credit.tariffcfg").schedule(self, cfg)

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
