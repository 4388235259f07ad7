"""Tariff arithmetic against hand-worked tables: blocks, month boundaries, tariff changes, TOU splits,
standing charge, tax rounding, and conservation (debited within one minor unit of the exact price)."""
import random
from fractions import Fraction

import pytest

from credit import civil
from credit.ledger import Ledger
from credit.tariff import Schedule

NOV1 = civil.unix(2026, 11, 1)
NOV10 = civil.unix(2026, 11, 10, 12)
NOV20 = civil.unix(2026, 11, 20, 12)
NOV30_2330 = civil.unix(2026, 11, 30, 23, 30)
DEC1_0030 = civil.unix(2026, 12, 1, 0, 30)


def blocks(lifeline, upper, limit_kwh=100):
    return [{"upto_kwh": limit_kwh, "price_per_mwh": lifeline}, {"price_per_mwh": upper}]


def schedule(tariffs, **kw):
    return Schedule(dict({"tariffs": tariffs}, **kw))


def one(**t):
    t.setdefault("blocks", blocks(150000, 400000))
    return schedule([dict(t, start=0)], max_split_s=7200)


def ledger(s, **cfg):
    led = Ledger(cfg, s)
    led.topup(10**7)
    return led


def test_blocks_price_lifeline_then_upper_within_one_debit():
    # 150 kWh: 100 kWh at 1.50 + 50 kWh at 4.00 = 150.00 + 200.00 = 350.00 (35000 minor)
    led = ledger(one())
    assert led.debit(150000, NOV10, True) == 35000
    assert led.mtd_wh == 150000


def test_blocks_restart_at_a_new_month():
    # Nov: 80 kWh (80 x 1.50 = 120.00); Dec 1st: 40 kWh all lifeline again (60.00), not 20 + 20.
    led = ledger(one())
    assert led.debit(80000, civil.unix(2026, 11, 30, 12), True) == 12000
    assert led.debit(40000, civil.unix(2026, 12, 1, 12), True) == 6000
    assert led.mtd_wh == 40000


def test_debit_spanning_month_boundary_is_split_by_time():
    # mtd 90 kWh; 60 kWh over Nov 30 23:30 -> Dec 1 00:30: 30 kWh in Nov (10 x 1.50 + 20 x 4.00 = 95.00)
    # and 30 kWh in Dec (30 x 1.50 = 45.00): 140.00.
    led = ledger(one())
    led.debit(90000, NOV30_2330, True)
    assert led.debit(60000, DEC1_0030, True) == 14000
    assert led.mtd_wh == 30000


def test_long_gap_is_not_split_but_priced_at_its_end():
    # max_split_s 7200: a 3-hour interval (a power cut) is priced as one piece just before its end.
    led = ledger(one())
    led.debit(90000, NOV30_2330, True)
    assert led.debit(60000, DEC1_0030 + 7200, True) == 9000  # all Dec lifeline


def test_tariff_change_mid_month_prices_only_what_follows_and_keeps_blocks():
    s = schedule([
        {"start": NOV1, "blocks": blocks(150000, 400000)},
        {"start": civil.unix(2026, 11, 15), "blocks": blocks(200000, 500000)},
    ])
    led = ledger(s)
    assert led.debit(50000, NOV10, True) == 7500  # 50 x 1.50
    # 80 kWh on Nov 20 at the new prices, blocks continuing at 50 kWh: 50 x 2.00 + 30 x 5.00 = 250.00
    assert led.debit(80000, NOV20, True) == 25000
    assert led.debited == 32500  # what was debited before the change is untouched


def test_tariff_change_inside_an_interval_splits_at_its_start():
    change = civil.unix(2026, 11, 15)
    s = schedule([
        {"start": NOV1, "blocks": blocks(150000, 400000)},
        {"start": change, "blocks": blocks(200000, 500000)},
    ], max_split_s=7200)
    led = ledger(s)
    led.debit(0, change - 1800, True)
    # 10 kWh over the half hour before and the half hour after: 5 x 1.50 + 5 x 2.00 = 17.50
    assert led.debit(10000, change + 1800, True) == 1750


def test_tou_band_split_across_its_boundary():
    # Peak 18-23 every day at x1.5. 10 kWh from 17:30 to 18:30: 5 x 1.50 + 5 x 2.25 = 18.75
    s = one(tou=[{"days": [0, 1, 2, 3, 4, 5, 6], "from_hour": 18, "to_hour": 23, "mult_bp": 15000}])
    led = ledger(s)
    led.debit(0, civil.unix(2026, 11, 10, 17, 30), True)
    assert led.debit(10000, civil.unix(2026, 11, 10, 18, 30), True) == 1875


def test_tou_window_wrapping_midnight_and_weekdays():
    # Night tariff 22:00-06:00 Mon-Fri nights at x0.5; Saturday night is normal.
    s = one(tou=[{"days": [0, 1, 2, 3, 4], "from_hour": 22, "to_hour": 6, "mult_bp": 5000}])
    tue_3am = civil.unix(2026, 11, 24, 3)   # Monday night's window
    sun_3am = civil.unix(2026, 11, 29, 3)   # Saturday night: no window
    a, b = ledger(s), ledger(s)
    assert a.debit(1000, tue_3am, True) == 75   # 1 kWh x 1.50 x 0.5
    assert b.debit(1000, sun_3am, True) == 150


def test_tou_window_wraps_from_sunday_night_into_monday():
    s = one(tou=[{"days": [6], "from_hour": 22, "to_hour": 2, "mult_bp": 20000}])
    led = ledger(s)
    assert led.debit(1000, civil.unix(2026, 11, 30, 1, 30), True) == 300  # Monday 01:30, Sunday's window
    # 01:30-02:30 is split at 02:00 where the window ends: 0.5 kWh x 3.00 + 0.5 kWh x 1.50
    assert led.debit(1000, civil.unix(2026, 11, 30, 2, 30), True) == 225


def test_first_matching_tou_window_wins():
    s = one(tou=[{"days": [1], "from_hour": 0, "to_hour": 24, "mult_bp": 20000},
                 {"days": [0, 1, 2], "from_hour": 10, "to_hour": 12, "mult_bp": 5000}])
    led = ledger(s)
    assert led.debit(1000, civil.unix(2026, 11, 24, 11), True) == 300  # Tuesday: x2 wins


def test_standing_charge_accrues_per_second_and_a_day_costs_the_daily_charge():
    s = one(standing_per_day=1000)
    led = ledger(s)
    led.debit(0, NOV10, True)
    total = 0
    for k in range(1, 1441):  # a day in one-minute debits
        total += led.debit(0, NOV10 + 60 * k, True)
    assert total == 1000
    assert led.fine == 0
    # 7 hours: 291.66.. -> 291 debited, the rest carried
    assert led.debit(0, NOV10 + 86400 + 7 * 3600, True) == 291
    assert Fraction(led.fine, led.den) == Fraction(7000, 24) - 291


def test_standing_charge_splits_at_a_tariff_change():
    change = civil.unix(2026, 11, 15)
    s = schedule([
        {"start": NOV1, "blocks": blocks(1, 1), "standing_per_day": 1000},
        {"start": change, "blocks": blocks(1, 1), "standing_per_day": 3000},
    ])
    led = ledger(s)
    led.debit(0, change - 43200, True)
    assert led.debit(0, change + 43200, True) == 500 + 1500


def test_tax_rounding_carries_the_remainder():
    # 2.375/kWh + 16 % = 2.755/kWh. 1000 debits of 1 Wh: 275.5 -> 275 debited, 0.5 carried;
    # another kWh brings the total to exactly 551.
    s = one(blocks=[{"price_per_mwh": 237500}], tax_bp=1600)
    led = ledger(s)
    t = NOV10
    got = 0
    for _ in range(1000):
        t += 1
        got += led.debit(1, t, True)
    assert got == 275
    assert Fraction(led.fine, led.den) == Fraction(1, 2)
    for _ in range(1000):
        t += 1
        got += led.debit(1, t, True)
    assert got == 551 and led.fine == 0


def test_common_denominator_stays_a_small_int_for_real_prices():
    s = one(blocks=blocks(237500, 412300), standing_per_day=1234, tax_bp=1600,
            tou=[{"days": [0, 1, 2, 3, 4, 5, 6], "from_hour": 18, "to_hour": 23, "mult_bp": 12500}])
    assert s.den < 2**30
    assert all(n < 2**30 for row in s.tariffs[0].num for n in row)


def _reference_price(wh_list, times, cfg, t_start):
    """Exact price with Fractions, written independently: per-minute debits never cross an hour."""
    limit = cfg["limit_kwh"] * 1000
    exact = Fraction(0)
    mtd, month = 0, None
    prev = t_start
    out = []
    tax = Fraction(10000 + cfg["tax_bp"], 10000)
    for wh, t in zip(wh_list, times):
        exact += Fraction(cfg["standing"] * (t - prev), 86400) * tax
        y, m, _d, h, *_ = civil.civil(t - 1)
        if (y, m) != month:
            month, mtd = (y, m), 0
        mult = Fraction(cfg["peak_bp"], 10000) if 18 <= h < 23 else 1
        low = min(wh, max(0, limit - mtd))
        exact += (Fraction(low * cfg["p1"], 10**6) + Fraction((wh - low) * cfg["p2"], 10**6)) * mult * tax
        mtd += wh
        prev = t
        out.append(exact)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_conservation_total_debited_within_one_minor_unit_of_exact_price(seed):
    rng = random.Random(seed)
    cfg = {"limit_kwh": rng.randrange(1, 50), "p1": rng.randrange(1, 300000), "p2": rng.randrange(1, 900000),
           "tax_bp": rng.randrange(0, 3000), "standing": rng.randrange(0, 5000), "peak_bp": rng.randrange(5000, 30000)}
    s = one(blocks=blocks(cfg["p1"], cfg["p2"], cfg["limit_kwh"]), tax_bp=cfg["tax_bp"],
            standing_per_day=cfg["standing"],
            tou=[{"days": list(range(7)), "from_hour": 18, "to_hour": 23, "mult_bp": cfg["peak_bp"]}])
    led = Ledger({}, s)
    t0 = civil.unix(2026, 11, 28, 0, 0)  # runs across the month end
    led.debit(0, t0, True)
    times = [t0 + 60 * k for k in range(1, 6001)]
    whs = [rng.choice((0, 0, 1, 7, 30, 120, 999)) for _ in times]
    exact = _reference_price(whs, times, cfg, t0)
    debited = 0
    for wh, t, ex in zip(whs, times, exact):
        debited += led.debit(wh, t, True)
        assert 0 <= ex - debited < 1
        assert Fraction(led.fine, led.den) == ex - debited
    assert led.check() is None
    assert led.debt == debited  # no credit: every unit debited is owed


def test_kwh_mode_debits_energy_and_refuses_prices():
    s = Schedule({"mode": "kwh"})
    led = Ledger({}, s)
    led.topup(5000)
    assert led.debit(1234, NOV10, True) == 1234
    assert led.credit == 3766
    assert s.major_text(led.credit) == "3.766 kWh"
    with pytest.raises(ValueError, match="tax_bp"):
        Schedule({"mode": "kwh", "tax_bp": 1600})


@pytest.mark.parametrize("cfg,key", [
    ({"tariffs": [{"blocks": [{"price_per_mwh": -1}]}]}, "price_per_mwh"),
    ({"tariffs": [{"blocks": [{"upto_kwh": 100, "price_per_mwh": 1}, {"upto_kwh": 50, "price_per_mwh": 2}]}]}, "upto_kwh"),
    ({"tariffs": [{"blocks": [{"price_per_mwh": 1}], "tax_bp": 20000}]}, "tax_bp"),
    ({"tariffs": [{"blocks": [{"price_per_mwh": 1}], "tou": [{"days": [7], "from_hour": 1, "to_hour": 2, "mult_bp": 1}]}]}, "days"),
    ({"tariffs": [{"blocks": [{"price_per_mwh": 1}], "tou": [{"days": [1], "from_hour": 25, "to_hour": 2, "mult_bp": 1}]}]}, "from_hour"),
    ({"tariffs": [{"start": 10, "blocks": [{"price_per_mwh": 1}]}, {"start": 5, "blocks": [{"price_per_mwh": 1}]}]}, "start"),
    ({"mode": "euros"}, "mode"),
    ({"tariffs": [{"blocks": [{"price_per_mwh": 1}]}], "minor_per_major": 0}, "minor_per_major"),
])
def test_bad_config_names_the_key_and_range(cfg, key):
    with pytest.raises(ValueError, match=key):
        Schedule(cfg)


def test_major_text_for_khoums_and_hundredths():
    assert Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 1}]}]}).major_text(1234) == "12.34"
    # 5 khoums to the ouguiya: 13 khoums = 2 MRU and 3 khoums = 2.6
    assert Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 1}]}], "minor_per_major": 5}).major_text(13) == "2.6"
