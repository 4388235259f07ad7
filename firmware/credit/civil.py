"""UTC civil time from Unix seconds and back, with integers only (no `time` module).

Tariffs, friendly-credit windows and month-to-date blocks need the calendar date, the hour and the
weekday of an instant. Mauritania keeps UTC all year, so no time zone or daylight saving is applied.
The day <-> date conversions follow Howard Hinnant's `days_from_civil` / `civil_from_days`
(proleptic Gregorian calendar, eras of 400 years), valid for any year a meter will see.

Interface (all arguments and results are ints; `t` is Unix seconds UTC):
    civil(t)            -> (year, month 1-12, day 1-31, hour, minute, second, weekday Mon=0)
    unix(y, m, d, hh=0, mm=0, ss=0) -> Unix seconds of that UTC date and time
    days_from_civil(y, m, d) / civil_from_days(days) -> days since 1970-01-01 and back
    is_leap(y), days_in_month(y, m), weekday(t), day_number(t)
    start_of_day(t), start_of_month(t), start_of_next_month(t), month_id(t) (= year*12 + month-1)
"""

from micropython import const

_DAY_S = const(86400)
_DAYS_PER_ERA = const(146097)  # 400 Gregorian years
_EPOCH_SHIFT = const(719468)  # days from 0000-03-01 to 1970-01-01
_MDAYS = b"\x1f\x1c\x1f\x1e\x1f\x1e\x1f\x1f\x1e\x1f\x1e\x1f"


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(y, m):
    if m == 2 and is_leap(y):
        return 29
    return _MDAYS[m - 1]


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d."""
    # Counting years from March puts the leap day last, so month lengths follow a fixed pattern.
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * _DAYS_PER_ERA + doe - _EPOCH_SHIFT


def civil_from_days(z):
    """(year, month, day) of the date `z` days after 1970-01-01 (z may be negative)."""
    z += _EPOCH_SHIFT
    era = z // _DAYS_PER_ERA
    doe = z - era * _DAYS_PER_ERA
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400
    if m <= 2:
        y += 1
    return y, m, d


def day_number(t):
    """Days since 1970-01-01 of the instant t (floor, so instants before 1970 work too)."""
    return t // _DAY_S


def weekday(t):
    # 1970-01-01 was a Thursday (Mon=0 -> Thursday=3).
    return (t // _DAY_S + 3) % 7


def civil(t):
    """(year, month, day, hour, minute, second, weekday Mon=0) of Unix seconds t, UTC."""
    days = t // _DAY_S
    sod = t - days * _DAY_S
    y, m, d = civil_from_days(days)
    return y, m, d, sod // 3600, (sod // 60) % 60, sod % 60, (days + 3) % 7


def unix(y, m, d, hh=0, mm=0, ss=0):
    """Unix seconds of the UTC date and time given."""
    return days_from_civil(y, m, d) * _DAY_S + hh * 3600 + mm * 60 + ss


def start_of_day(t):
    return t - t % _DAY_S


def start_of_month(t):
    y, m, _ = civil_from_days(t // _DAY_S)
    return days_from_civil(y, m, 1) * _DAY_S


def start_of_next_month(t):
    y, m, _ = civil_from_days(t // _DAY_S)
    if m == 12:
        return days_from_civil(y + 1, 1, 1) * _DAY_S
    return days_from_civil(y, m + 1, 1) * _DAY_S


def month_id(t):
    """A small int naming the calendar month of t (year*12 + month-1): equal ids, same month."""
    y, m, _ = civil_from_days(t // _DAY_S)
    return y * 12 + m - 1


def parse_date(s):
    """Days since 1970-01-01 of an ISO date string 'YYYY-MM-DD'; ValueError if malformed."""
    if not isinstance(s, str) or len(s) != 10 or s[4] != "-" or s[7] != "-":
        raise ValueError("date %r must be 'YYYY-MM-DD'" % (s,))
    y, m, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
    if not 1 <= m <= 12 or not 1 <= d <= days_in_month(y, m):
        raise ValueError("date %r is not a calendar date" % (s,))
    return days_from_civil(y, m, d)
