"""Tariff configuration, loaded on demand while a `credit.tariff.Schedule` is built: checks every key
of the tariff config (ValueError naming the key and its allowed range), builds the block, time-of-use
and standing-charge tables and the schedule's common denominator. Not resident: prices are computed by
credit/tariff.py from the tables made here."""
from micropython import const

from credit.tariff import Tariff
from util import need_int

_SCALE = const(10000)  # basis points
_WH_PER_MWH = const(1000000)
_DAY_S = const(86400)
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


def tariff(cfg, where):
    """One tariff of a schedule: block prices, TOU bands and standing charge as fractions of den."""
    tar = Tariff()
    if not isinstance(cfg, dict):
        raise ValueError("%s must be an object" % where)
    tar.start = need_int(cfg, "start", -(1 << 40), 1 << 40, 0)
    tar.tax_bp = need_int(cfg, "tax_bp", 0, _MAX_TAX, 0)
    tar.standing = need_int(cfg, "standing_per_day", 0, _MAX_STANDING, 0)
    blocks = cfg.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise ValueError("%s.blocks must be a non-empty list" % where)
    tar.limits = []  # cumulative monthly Wh where each block ends; the last is open
    tar.prices = []
    prev = 0
    for i, b in enumerate(blocks):
        bw = "%s.blocks[%d]" % (where, i)
        if not isinstance(b, dict):
            raise ValueError("%s must be an object" % bw)
        tar.prices.append(need_int(b, "price_per_mwh", 0, _MAX_PRICE))
        if i < len(blocks) - 1:
            kwh = need_int(b, "upto_kwh", prev + 1, _MAX_BLOCK_KWH)
            tar.limits.append(kwh * 1000)
            prev = kwh
        elif b.get("upto_kwh") is not None:
            raise ValueError("%s.upto_kwh must be absent: the last block is open" % bw)
    tar.mults = [_SCALE]
    tar.band = bytearray(_HOURS_WEEK)  # hour of week (Mon 00h = 0) -> index into mults
    claimed = bytearray(_HOURS_WEEK)
    tou = cfg.get("tou", [])
    if not isinstance(tou, list):
        raise ValueError("%s.tou must be a list" % where)
    for i, w in enumerate(tou):
        _add_window(tar, w, "%s.tou[%d]" % (where, i), claimed)
    # Hours until the band changes, so an interval is cut without scanning the table.
    tar.run = bytearray(_HOURS_WEEK)
    for h in range(_HOURS_WEEK):
        n = 1
        while n < _HOURS_WEEK and tar.band[(h + n) % _HOURS_WEEK] == tar.band[h]:
            n += 1
        tar.run[h] = n
    return tar


def _add_window(tar, w, where, claimed):
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
    if m not in tar.mults:
        if len(tar.mults) >= 32:
            raise ValueError("%s: at most 32 distinct mult_bp values" % where)
        tar.mults.append(m)
    bi = tar.mults.index(m)
    n = (h1 - h0) % 24 or 24
    for d in days:
        for k in range(n):
            h = (d * 24 + h0 + k) % _HOURS_WEEK
            if not claimed[h]:
                claimed[h] = 1
                tar.band[h] = bi


def fractions(tar):
    """(num, den) pairs of every rate: per Wh for each block x band, then per second standing."""
    out = []
    t = _SCALE + tar.tax_bp
    for p in tar.prices:
        for m in tar.mults:
            out.append((p * m * t, _WH_PER_MWH * _SCALE * _SCALE))
    out.append((tar.standing * t, _DAY_S * _SCALE))
    return out


def scale_to(tar, den):
    """Fix the numerators for the schedule's common denominator."""
    t = _SCALE + tar.tax_bp
    d = _WH_PER_MWH * _SCALE * _SCALE
    tar.num = []  # per block: list per band of the price of one Wh in 1/den minor units
    for p in tar.prices:
        tar.num.append([p * m * t * den // d for m in tar.mults])
    tar.standing_num = tar.standing * t * den // (_DAY_S * _SCALE)


def schedule(s, cfg):
    """Fill Schedule `s` from its config."""
    if not isinstance(cfg, dict):
        raise ValueError("tariff config must be an object")
    s.mode = cfg.get("mode", "money")
    if s.mode not in ("money", "kwh"):
        raise ValueError("mode must be 'money' or 'kwh' (got %r)" % (s.mode,))
    s.minor_per_major = need_int(cfg, "minor_per_major", 1, 10000, 100)
    s.max_split_s = need_int(cfg, "max_split_s", 1, 31 * _DAY_S, _DEFAULT_SPLIT_S)
    s.tariffs = []
    if s.mode == "kwh":
        for key in ("tariffs", "blocks", "tou", "standing_per_day", "tax_bp"):
            if cfg.get(key):
                raise ValueError("%s is not allowed in kwh mode (credit is energy)" % key)
        s.den = 1
        return
    tl = cfg.get("tariffs")
    if not isinstance(tl, list) or not tl or len(tl) > 16:
        raise ValueError("tariffs must be a list of 1..16 tariffs")
    for i, tc in enumerate(tl):
        t = tariff(tc, "tariffs[%d]" % i)
        if s.tariffs and t.start <= s.tariffs[-1].start:
            raise ValueError("tariffs[%d].start must be after tariffs[%d].start" % (i, i - 1))
        s.tariffs.append(t)
    # One denominator for the whole schedule, so a carried remainder means the same under
    # every tariff. Reducing each fraction first keeps it small (often < 2**30) for real prices.
    den = 1
    for t in s.tariffs:
        for n, d in fractions(t):
            d //= gcd(n, d)
            den = den * d // gcd(den, d)
    s.den = den
    for t in s.tariffs:
        scale_to(t, den)
