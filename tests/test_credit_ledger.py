"""The credit ledger: top-up split, emergency credit, debt, clearing, unknown time, state and the invariant."""
import json
import random

import pytest

from credit import civil
from credit.ledger import Ledger
from credit.tariff import Schedule

T0 = civil.unix(2026, 11, 10, 12)
FLAT = {"tariffs": [{"blocks": [{"price_per_mwh": 1000000}]}]}  # 1 minor unit per Wh: easy tables


def make(events=None, **cfg):
    ev = events if events is not None else []
    return Ledger(cfg, Schedule(FLAT), lambda k, d: ev.append((k, d)))


def test_topup_goes_to_credit_when_nothing_is_owed():
    led = make()
    assert led.topup(5000, ref="T1") == {"amount": 5000, "emergency": 0, "debt": 0, "credit": 5000, "ref": "T1"}
    assert led.credit == 5000 and led.check() is None


def test_emergency_credit_taken_when_low_and_repaid_first_in_full():
    ev = []
    led = make(ev, emergency_amount=1000, emergency_threshold=200, debt_share_bp=5000)
    led.topup(300)
    assert led.take_emergency() == (0, "credit_not_low")
    led.debit(150, T0, True)  # credit 150 < 200
    assert led.emergency_state() == "available"
    assert led.take_emergency() == (1000, "")
    assert ("emergency_taken", {"amount": 1000}) in ev
    assert led.credit == 1150 and led.em_owed == 1000
    assert led.take_emergency() == (0, "already_taken")
    led.debit(1150, T0 + 60, True)  # all spent, and 0 debt
    led.debit(200, T0 + 120, True)  # 200 into debt
    split = led.topup(3000, ref="T2")
    # emergency 1000 first, then half of the rest (1000) capped by the 200 debt, then credit
    assert split == {"amount": 3000, "emergency": 1000, "debt": 200, "credit": 1800, "ref": "T2"}
    assert led.em_owed == 0 and led.debt == 0 and led.credit == 1800
    assert led.emergency_state() == "unavailable"
    kinds = [k for k, _ in ev]
    assert "emergency_repaid" in kinds and "debt_recovered" in kinds
    assert led.check() is None


def test_small_topup_only_partly_repays_emergency():
    led = make(emergency_amount=1000)
    led.take_emergency()
    assert led.topup(400)["emergency"] == 400
    assert led.em_owed == 600 and led.emergency_state() == "taken"
    assert led.check() is None


def test_emergency_refused_when_disabled():
    assert make().take_emergency() == (0, "disabled")


def test_shortfall_becomes_debt_recovered_by_share():
    ev = []
    led = make(ev, debt_share_bp=2500)
    led.topup(100)
    led.debit(1100, T0, True)
    assert led.credit == 0 and led.debt == 1000
    split = led.topup(2000)
    assert split["debt"] == 500 and split["credit"] == 1500 and led.debt == 500
    assert ("debt_recovered", {"amount": 500, "left": 500, "ref": None}) in ev
    split = led.topup(10000)
    assert split["debt"] == 500 and led.debt == 0
    assert led.check() is None


def test_debt_recovered_first_in_full_when_configured():
    led = make(debt_share_bp=10000)
    led.debit(700, T0, True)
    assert led.topup(500) == {"amount": 500, "emergency": 0, "debt": 500, "credit": 0, "ref": None}
    assert led.topup(500)["credit"] == 300
    assert led.check() is None


def test_debt_share_rounds_down_in_customers_favour():
    led = make(debt_share_bp=3333)
    led.debit(10000, T0, True)
    assert led.topup(10)["debt"] == 3


def test_clear_credit_keeps_or_forgives_what_is_owed():
    led = make(emergency_amount=500)
    led.topup(1000)
    led.clear_credit()
    assert led.credit == 0 and led.check() is None
    led.take_emergency()
    led.debit(800, T0, True)
    led.clear_credit(forgive=True)
    assert (led.credit, led.debt, led.em_owed) == (0, 0, 0)
    assert led.check() is None


def test_unknown_time_prices_energy_at_last_known_time_and_accrues_no_standing():
    s = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 1000000}], "standing_per_day": 86400}]})
    led = Ledger({}, s)
    led.debit(0, T0, True)
    assert led.debit(100, 0, False) == 100  # energy still charged, no standing
    assert led.last_t == T0
    # time valid again an hour later: the standing charge catches up for the hour
    assert led.debit(0, T0 + 3600, True) == 3600


def test_standing_catch_up_is_capped_after_a_clock_jump():
    s = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 0}], "standing_per_day": 1000}]})
    led = Ledger({"standing_max_gap_s": 86400 * 2}, s)
    led.debit(0, T0, True)
    assert led.debit(0, T0 + 86400 * 365 * 4, True) == 2000


def test_clock_going_back_charges_no_standing_and_resets_the_mark():
    s = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 0}], "standing_per_day": 86400}]})
    led = Ledger({}, s)
    led.debit(0, T0, True)
    assert led.debit(0, T0 - 5000, True) == 0
    assert led.debit(0, T0 - 4000, True) == 1000


def test_new_schedule_rescales_the_carried_remainder():
    s1 = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 500000}]}]})  # 0.5 per Wh
    led = Ledger({}, s1)
    led.debit(1, T0, True)
    s2 = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 250000}]}]})  # 0.25 per Wh
    led.set_schedule(s2)
    assert led.den == s2.den and led.fine * 2 == led.den
    assert led.debit(2, T0 + 1, True) == 1  # 0.5 carried + 0.5


def test_state_saved_under_another_schedule_is_rescaled_on_restore():
    s1 = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 500000}]}]})
    led = Ledger({}, s1)
    led.debit(1, T0, True)  # half a minor unit carried
    s2 = Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 250000}], "tax_bp": 1}]})
    led2 = Ledger({}, s2, state=led.state())
    assert led2.den == s2.den != s1.den and led2.fine * 2 == led2.den and led2.check() is None


def test_state_round_trips_through_json():
    led = make(emergency_amount=300, opening_credit=100)
    led.debit(250, T0, True)
    led.take_emergency()
    led.topup(50)
    st = json.loads(json.dumps(led.state()))
    led2 = Ledger({"emergency_amount": 300, "opening_credit": 100}, Schedule(FLAT), state=st)
    assert led2.state() == led.state()
    assert led2.check() is None


def test_check_reports_a_broken_invariant():
    led = make()
    led.topup(100)
    led.credit += 1  # credit created from nothing
    assert "conservation" in led.check()


def test_invariant_holds_over_random_operations():
    rng = random.Random(7)
    s = Schedule({"tariffs": [{"blocks": [{"upto_kwh": 3, "price_per_mwh": 123457}, {"price_per_mwh": 345679}],
                               "standing_per_day": 777, "tax_bp": 1450}]})
    led = Ledger({"emergency_amount": 500, "emergency_threshold": 300, "debt_share_bp": 4000, "opening_credit": 50}, s)
    t = T0
    for _ in range(5000):
        op = rng.random()
        if op < 0.8:
            t += rng.randrange(1, 600)
            led.debit(rng.randrange(0, 400), t, rng.random() > 0.05)
        elif op < 0.9:
            led.topup(rng.randrange(1, 3000))
        elif op < 0.97:
            led.take_emergency()
        else:
            led.clear_credit(forgive=rng.random() < 0.5)
        assert led.check() is None


@pytest.mark.parametrize("cfg,key", [({"emergency_amount": -1}, "emergency_amount"),
                                     ({"debt_share_bp": 10001}, "debt_share_bp"),
                                     ({"emergency_threshold": "x"}, "emergency_threshold")])
def test_bad_ledger_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        Ledger(cfg, Schedule(FLAT))


def test_bad_topup_and_debit_are_refused():
    led = make()
    with pytest.raises(ValueError):
        led.topup(0)
    with pytest.raises(ValueError):
        led.debit(-1, T0, True)
