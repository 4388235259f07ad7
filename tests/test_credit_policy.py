"""Credit policy: friendly periods, never disconnecting on unknown time, debt in friendly hours,
low-credit warnings once per crossing, and the days-left estimate."""
import json

import pytest

from credit import civil
from credit.ledger import Ledger
from credit.policy import Policy
from credit.tariff import Schedule

UK_HOURS = [{"days": [0, 1, 2, 3, 4, 5], "start": "18:00", "end": "11:00"},
            {"days": [5, 6], "start": "00:00", "end": "00:00"}]
MON = (2026, 11, 23)
FLAT = {"tariffs": [{"blocks": [{"price_per_mwh": 1000000}]}]}


def at(day, hh, mm=0):
    return civil.unix(2026, 11, day, hh, mm)


@pytest.mark.parametrize("day,hh,mm,friendly", [
    (23, 17, 59, False),  # Monday before the evening window
    (23, 18, 0, True),    # Monday 18:00 starts it
    (24, 3, 0, True),     # the night wraps past midnight into Tuesday
    (24, 10, 59, True),
    (24, 11, 0, False),   # ends at 11:00
    (24, 14, 0, False),
    (28, 14, 0, True),    # Saturday afternoon: weekend
    (29, 23, 0, True),    # Sunday night (weekend window)
    (30, 10, 0, False),   # Monday morning: Sunday has only its whole-day window, no evening one
])
def test_friendly_windows_uk_style(day, hh, mm, friendly):
    p = Policy({"friendly": UK_HOURS})
    assert p.friendly(at(day, hh, mm), True) is friendly
    assert p.may_disconnect(at(day, hh, mm), True) is (not friendly)


def test_holiday_is_friendly_all_day():
    p = Policy({"friendly": UK_HOURS, "holidays": ["2026-11-26"]})
    assert p.friendly(at(26, 14), True)
    assert not p.friendly(at(25, 14), True)


def test_unknown_time_never_disconnects():
    p = Policy({"friendly": []})
    assert p.may_disconnect(at(24, 14), True)
    assert not p.may_disconnect(at(24, 14), False)
    assert not p.cut_for_credit(0, at(24, 14), False)
    assert p.cut_for_credit(0, at(24, 14), True)
    assert not p.cut_for_credit(1, at(24, 14), True)


def test_friendly_period_keeps_supply_debt_accrues_and_is_recovered_by_share():
    p = Policy({"friendly": UK_HOURS})
    led = Ledger({"debt_share_bp": 5000}, Schedule(FLAT))
    led.topup(100)
    t = at(23, 20)  # Monday evening, friendly
    for k in range(10):
        led.debit(50, t + 60 * k, True)
        assert not p.cut_for_credit(led.credit, t + 60 * k, True)
    assert led.credit == 0 and led.debt == 400
    # the friendly period ends at 11:00 Tuesday: now the supply may be cut
    assert p.cut_for_credit(led.credit, at(24, 11), True)
    split = led.topup(600)
    assert split["debt"] == 300 and split["credit"] == 300 and led.debt == 100
    assert not p.cut_for_credit(led.credit, at(24, 11), True)
    assert led.check() is None


def test_low_credit_warning_once_per_crossing_with_hysteresis():
    ev = []
    p = Policy({"low_credit": 1000, "low_credit_hysteresis": 200}, lambda k, d: ev.append((k, d)))
    for c in (5000, 1200, 999, 800, 500, 999, 1100, 900, 0):
        p.check_warnings(c)
    # 999 crossed once; climbing to 1100 (< 1200) did not re-arm, so 900 stays silent
    assert [d["credit"] for k, d in ev if d["by"] == "amount"] == [999]
    p.check_warnings(1200)  # re-armed at threshold + hysteresis
    p.check_warnings(990)
    assert [d["credit"] for k, d in ev] == [999, 990]


def test_days_left_from_ring_of_daily_totals():
    p = Policy({"history_days": 3})
    assert p.days_left(1000) is None  # no complete day yet
    for day, use in ((10, 100), (11, 200), (12, 300), (13, 600)):
        p.record(use, civil.unix(2026, 11, day, 12), True)
    p.record(0, civil.unix(2026, 11, 14, 0, 1), True)
    # last three complete days: 200 + 300 + 600 = 1100 over 3 days
    assert p.days_left(1100) == 3
    assert p.days_left(3000) == 3000 * 3 // 1100
    assert p.days_left(0) == 0


def test_days_without_use_count_as_zero_and_unknown_time_adds_to_today():
    p = Policy({"history_days": 4})
    p.record(400, at(10, 12), True)
    p.record(100, 0, False)  # unknown time: still today's use
    p.record(0, at(13, 1), True)  # days 11 and 12 saw nothing
    assert p.days_left(500) == 500 * 3 // 500 == 3
    assert p.ring[:3] == [500, 0, 0]


def test_days_left_warning_once_and_rearmed():
    ev = []
    p = Policy({"low_days": 3, "low_days_hysteresis": 1, "history_days": 2}, lambda k, d: ev.append(d))
    p.record(100, at(10, 12), True)
    p.record(100, at(11, 12), True)
    p.record(0, at(12, 12), True)
    for c in (1000, 250, 200, 350, 150, 400, 290):
        p.check_warnings(c)
    assert [(d["by"], d["days"]) for d in ev] == [("days", 2), ("days", 2)]


def test_policy_state_round_trips_and_survives_a_smaller_ring():
    p = Policy({"history_days": 5, "low_credit": 10})
    for day in range(1, 9):
        p.record(day * 10, at(day, 12), True)
    p.check_warnings(5)
    st = json.loads(json.dumps(p.state()))
    q = Policy({"history_days": 5, "low_credit": 10}, state=st)
    assert q.state() == p.state() and q.days_left(700) == p.days_left(700)
    r = Policy({"history_days": 2}, state=st)
    assert r.days_left(130) == 130 * 2 // (60 + 70)
    assert not r.armed_credit


@pytest.mark.parametrize("cfg,key", [
    ({"friendly": [{"days": [0], "start": "25:00", "end": "11:00"}]}, "start"),
    ({"friendly": [{"days": [9], "start": "18:00", "end": "11:00"}]}, "days"),
    ({"holidays": ["2026-02-30"]}, "2026-02-30"),
    ({"history_days": 0}, "history_days"),
    ({"low_credit": -5}, "low_credit"),
])
def test_bad_policy_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        Policy(cfg)
