"""Civil time from Unix seconds: checked against CPython's datetime over many dates, and under MicroPython."""
import datetime as dt
import random

import pytest

from credit import civil
from mpyrun import run_micropython

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _sample_times():
    rng = random.Random(20261125)
    times = [rng.randrange(-2_000_000_000, 8_000_000_000) for _ in range(20000)]
    # Edges: around leap days, century years, month and year ends.
    for y in (1900, 1970, 1999, 2000, 2024, 2025, 2100, 2400):
        for m, d in ((1, 1), (2, 28), (3, 1), (12, 31)):
            t = int((dt.datetime(y, m, d, tzinfo=UTC) - EPOCH).total_seconds())
            times += [t - 1, t, t + 86399, t + 86400]
    return times


TIMES = _sample_times()


def test_civil_matches_datetime_over_many_dates():
    for t in TIMES:
        d = EPOCH + dt.timedelta(seconds=t)
        assert civil.civil(t) == (d.year, d.month, d.day, d.hour, d.minute, d.second, d.weekday()), t


def test_unix_of_a_date_round_trips_and_matches_datetime():
    for t in TIMES[:5000]:
        y, mo, d, h, mi, s, _ = civil.civil(t)
        assert civil.unix(y, mo, d, h, mi, s) == t
    assert civil.unix(2026, 11, 25, 10, 16, 37) == int(dt.datetime(2026, 11, 25, 10, 16, 37, tzinfo=UTC).timestamp())


def test_every_day_from_1900_to_2200_converts_both_ways():
    z0 = civil.days_from_civil(1900, 1, 1)
    day = dt.date(1900, 1, 1)
    for z in range(z0, civil.days_from_civil(2200, 1, 1)):
        assert civil.civil_from_days(z) == (day.year, day.month, day.day)
        assert civil.days_from_civil(day.year, day.month, day.day) == z
        day += dt.timedelta(days=1)


@pytest.mark.parametrize("year,leap", [(1900, False), (2000, True), (2024, True), (2025, False), (2100, False), (2400, True)])
def test_leap_years_follow_the_gregorian_rule(year, leap):
    assert civil.is_leap(year) is leap
    assert civil.days_in_month(year, 2) == (29 if leap else 28)


def test_days_in_month_matches_datetime():
    for y in (2023, 2024):
        for m in range(1, 13):
            nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
            assert civil.days_in_month(y, m) == (nxt - dt.date(y, m, 1)).days


def test_start_of_day_month_and_next_month():
    t = civil.unix(2024, 2, 29, 13, 45, 7)
    assert civil.start_of_day(t) == civil.unix(2024, 2, 29)
    assert civil.start_of_month(t) == civil.unix(2024, 2, 1)
    assert civil.start_of_next_month(t) == civil.unix(2024, 3, 1)
    assert civil.start_of_next_month(civil.unix(2025, 12, 31, 23, 59, 59)) == civil.unix(2026, 1, 1)
    assert civil.month_id(civil.unix(2025, 12, 31, 23, 59, 59)) + 1 == civil.month_id(civil.unix(2026, 1, 1))


def test_weekday_is_monday_zero():
    assert civil.weekday(civil.unix(2026, 11, 23)) == 0  # a Monday
    assert civil.weekday(civil.unix(2026, 11, 29, 23, 59, 59)) == 6


def test_parse_date_rejects_non_dates():
    assert civil.parse_date("2026-11-28") == civil.days_from_civil(2026, 11, 28)
    for bad in ("2026-02-30", "2026-13-01", "28/11/2026", 20261128):
        with pytest.raises(ValueError):
            civil.parse_date(bad)


def test_civil_under_micropython_matches_datetime():
    sample = TIMES[::400]
    code = (
        "from credit import civil\n"
        "for t in %r:\n"
        "    print(t, *civil.civil(t), civil.unix(*civil.civil(t)[:6]) == t)\n" % (sample,)
    )
    out = run_micropython(code, heap="96k").split("\n")
    lines = [l for l in out if l]
    assert len(lines) == len(sample)
    for t, line in zip(sample, lines):
        d = EPOCH + dt.timedelta(seconds=t)
        assert line == "%d %d %d %d %d %d %d %d True" % (t, d.year, d.month, d.day, d.hour, d.minute, d.second, d.weekday())
