"""Integer values as LCD text: money, kWh, power, clock time, dates, and the ASCII fold for the LCD.

The one place the UI turns integers into human units. Everything is integer arithmetic (no float
drift): 1234567 minor units at 100 per major is "12345.67 MRU". Values are TRUNCATED toward zero
when the display has fewer decimals than the register (a credit of 49 Wh shows "0.04 kWh"): the
display never shows more than is there, and the register itself is untouched.

The LCD is an HD44780 with character ROM A00: ASCII 0x20..0x7D except 0x5C (drawn as a yen sign);
no accented letters. `code(ch)` folds Latin-1 letters to their plain letter (e -> e for e-acute) and
draws anything else as "?", so any text given to the display is safe.
"""
from micropython import const

from credit import civil

_POW10 = (1, 10, 100, 1000, 10000)
_MAX_DEC = const(4)
_Q = const(0x3F)  # "?"
# Latin-1 0xC0..0xFF folded to ASCII (Agrave..ydiaeresis): French accents become the plain letter.
_LATIN1 = b"AAAAAAACEEEEIIIIDNOOOOOxOUUUUYPsaaaaaaaceeeeiiiidnooooo/ouuuuypy"


def code(ch):
    """The A00 ROM code for one character: printable ASCII as is, Latin-1 letters folded, else '?'."""
    c = ord(ch)
    if 0x20 <= c <= 0x7D and c != 0x5C:
        return c
    if 0xC0 <= c <= 0xFF:
        return _LATIN1[c - 0xC0]
    if c == 0x2019:  # typographic apostrophe, common in French text pasted from elsewhere
        return 0x27
    return _Q


def fixed(v, d):
    """Integer v scaled by 10**-d as text, truncated toward zero: fixed(-1205, 2) -> '-12.05'."""
    sign = ""
    if v < 0:
        sign = "-"
        v = -v
    if d == 0:
        return sign + str(v)
    p = _POW10[d]
    return "%s%d.%s" % (sign, v // p, str(p + v % p)[1:])


def money_scale(per_major):
    """(decimals, multiplier) that write minor units exactly as decimals of the major unit.

    100 -> (2, 1); 5 (khoums) -> (1, 2) since 1 khoum = 0.2 MRU; 1 -> (0, 1). A minor unit that is
    no decimal fraction (3 per major) has no exact form: (2, None) means show 2 decimals, truncated.
    """
    for d in range(_MAX_DEC + 1):
        if _POW10[d] % per_major == 0:
            return d, _POW10[d] // per_major
    return 2, None


def money(minor, per_major, currency):
    """'12345.67 MRU' for 1234567 minor units at 100 per major."""
    d, mul = money_scale(per_major)
    if mul is None:
        v = minor * 100 // per_major if minor >= 0 else -(-minor * 100 // per_major)
    else:
        v = minor * mul
    return fixed(v, d) + " " + currency


def kwh(wh, d=2):
    """'12.34 kWh' for 12345 Wh (d decimals of kWh, truncated)."""
    return fixed(wh // _POW10[3 - d] if wh >= 0 else -(-wh // _POW10[3 - d]), d) + " kWh"


def kwh_short(wh):
    """A token or top-up amount with no useless zeros: 12300 -> '12.3 kWh', 12345 -> '12.345 kWh'."""
    d = 3
    while d > 1 and wh % _POW10[4 - d] == 0:
        d -= 1
    return kwh(wh, d)


def watts(w):
    """'1234 W' up to 99999 W, then '123.4 kW' (truncated)."""
    if -100000 < w < 100000:
        return "%d W" % w
    return fixed(w // 100 if w >= 0 else -(-w // 100), 1) + " kW"


def hhmm(minute):
    """'14:05' for a count of minutes since 1970 (UTC: Mauritania keeps no daylight saving)."""
    m = minute % 1440
    return "%02d:%02d" % (m // 60, m % 60)


def date(minute):
    """'25/11/2026' (French day/month/year order) for a count of minutes since 1970."""
    y, m, d = civil.civil_from_days(minute // 1440)
    return "%02d/%02d/%d" % (d, m, y)


def seconds(s):
    """A wait as the customer reads it: '40 s' below two minutes, else whole minutes rounded up."""
    if s < 120:
        return "%d s" % s
    return "%d min" % ((s + 59) // 60)
