"""Integer-only formatting for the LCD: money in any minor unit, kWh, power, time, dates, waits, and
the ASCII fold for the HD44780 ROM A00."""
from decimal import ROUND_DOWN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from ui import fmt


def test_money_minor_units_at_100_per_major():
    assert fmt.money(1234567, 100, "MRU") == "12345.67 MRU"
    assert fmt.money(5, 100, "MRU") == "0.05 MRU"
    assert fmt.money(0, 100, "MRU") == "0.00 MRU"
    assert fmt.money(-1205, 100, "MRU") == "-12.05 MRU"


def test_money_in_khoums_is_exact_fifths():
    assert fmt.money_scale(5) == (1, 2)
    assert fmt.money(7, 5, "MRU") == "1.4 MRU"
    assert fmt.money(10, 5, "MRU") == "2.0 MRU"


def test_money_with_whole_units_has_no_decimals():
    assert fmt.money(1234, 1, "MRU") == "1234 MRU"


def test_money_with_non_decimal_minor_unit_truncates_to_two_decimals():
    assert fmt.money_scale(3) == (2, None)
    assert fmt.money(2, 3, "X") == "0.66 X"
    assert fmt.money(-2, 3, "X") == "-0.66 X"


def test_money_beyond_float_precision_is_exact():
    assert fmt.money(123456789012345678, 100, "MRU") == "1234567890123456.78 MRU"


@given(st.integers(-10**12, 10**12), st.sampled_from([1, 2, 4, 5, 8, 10, 20, 25, 50, 100, 1000]))
def test_money_matches_exact_decimal_for_every_decimal_minor_unit(minor, per_major):
    d, _ = fmt.money_scale(per_major)
    exact = (Decimal(minor) / Decimal(per_major)).quantize(Decimal(1).scaleb(-d), rounding=ROUND_DOWN)
    assert fmt.money(minor, per_major, "MRU") == "%s MRU" % exact


@given(st.integers(-10**9, 10**9))
def test_kwh_truncates_toward_zero_like_decimal(wh):
    exact = (Decimal(wh) / 1000).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    text = "%s kWh" % exact
    if exact == 0:  # Decimal keeps the sign of a negative zero; the meter shows no "-0.00"
        text = "0.00 kWh"
    assert fmt.kwh(wh) == text


def test_kwh_two_decimals_truncated():
    assert fmt.kwh(12345) == "12.34 kWh"
    assert fmt.kwh(49) == "0.04 kWh"
    assert fmt.kwh(-12345) == "-12.34 kWh"
    assert fmt.kwh(12345, 3) == "12.345 kWh"


def test_token_amounts_drop_useless_zeros():
    assert fmt.kwh_short(12300) == "12.3 kWh"
    assert fmt.kwh_short(12000) == "12.0 kWh"
    assert fmt.kwh_short(12340) == "12.34 kWh"
    assert fmt.kwh_short(12345) == "12.345 kWh"


def test_power_in_watts_then_kilowatts():
    assert fmt.watts(0) == "0 W"
    assert fmt.watts(1234) == "1234 W"
    assert fmt.watts(99999) == "99999 W"
    assert fmt.watts(123456) == "123.4 kW"
    assert fmt.watts(-250) == "-250 W"


def test_clock_and_date_from_minutes():
    minute = 1795000000 // 60  # 2026-11-18 11:06:40 UTC
    assert fmt.hhmm(minute) == "11:06"
    assert fmt.date(minute) == "18/11/2026"
    assert fmt.hhmm(0) == "00:00"


def test_waits_in_seconds_then_minutes_rounded_up():
    assert fmt.seconds(40) == "40 s"
    assert fmt.seconds(119) == "119 s"
    assert fmt.seconds(120) == "2 min"
    assert fmt.seconds(1280) == "22 min"


def test_lcd_fold_keeps_ascii_folds_french_accents_and_marks_the_rest():
    text = "Réseau à Nouakchott ç ~\\ ش’"
    assert bytes(fmt.code(c) for c in text) == b"Reseau a Nouakchott c ?? ?'"
