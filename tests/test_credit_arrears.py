"""Post-paid arrears loaded on the meter as debt (issue 15): the ledger's load, its invariant, recovery by
the arrears share of each top-up after the debt of use, never the whole top-up (no cut-off for arrears),
the state across a restart, and the same figures under the real MicroPython interpreter (heap 96k)."""
import random

import pytest

from credit import civil
from credit.ledger import Ledger
from credit.policy import Policy
from credit.tariff import Schedule
from mpyrun import run_micropython

T0 = civil.unix(2026, 11, 10, 12)       # a Tuesday, noon: no friendly period in the tests' policy
FLAT = {"tariffs": [{"blocks": [{"price_per_mwh": 1000000}]}]}  # 1 minor unit per Wh


def make(events=None, **cfg):
    ev = events if events is not None else []
    return Ledger(cfg, Schedule(FLAT), lambda k, d: ev.append((k, d)))


def test_loading_arrears_adds_to_debt_and_cleared_and_keeps_the_invariant():
    led = make(opening_credit=700)
    led.load_debt(5000)
    assert (led.credit, led.debt, led.arrears, led.cleared) == (700, 5000, 5000, 5000), led.state()
    assert led.check() is None, led.check()
    led.load_debt(250)
    assert (led.debt, led.arrears, led.cleared) == (5250, 5250, 5250), led.state()
    assert led.check() is None, led.check()


@pytest.mark.parametrize("amount", [0, -5, True, 1.5, "100", None])
def test_a_load_that_is_not_a_positive_int_changes_nothing(amount):
    led = make(opening_credit=100)
    before = led.state()
    with pytest.raises(ValueError, match="positive int"):
        led.load_debt(amount)
    assert led.state() == before


def test_a_load_past_the_ledgers_bound_or_with_a_bad_share_changes_nothing():
    led = make()
    led.load_debt(999999000)
    before = led.state()
    with pytest.raises(ValueError, match="debt would pass"):
        led.load_debt(1001)
    for share in (0, 9001, 10000, True, "25"):
        with pytest.raises(ValueError, match="arrears share"):
            led.load_debt(10, share)
    assert led.state() == before


def test_a_topup_recovers_the_arrears_by_the_meters_share_and_says_so():
    ev = []
    led = make(ev)                  # debt_share_bp 2500 by default
    led.load_debt(5000)
    split = led.topup(4000, ref="sts:1")
    assert split == {"amount": 4000, "emergency": 0, "debt": 1000, "credit": 3000, "ref": "sts:1"}, split
    assert (led.credit, led.debt, led.arrears) == (3000, 4000, 4000), led.state()
    assert ev[-1] == ("debt_recovered", {"amount": 1000, "left": 4000, "ref": "sts:1", "arrears": 1000,
                                         "arrears_left": 4000}), ev
    assert led.check() is None, led.check()


def test_the_share_given_with_the_load_is_the_arrears_share():
    led = make(debt_share_bp=5000)
    led.load_debt(300, share_bp=1000)
    assert led.topup(2000)["debt"] == 200
    assert led.topup(2000)["debt"] == 100           # only 100 left: never more than owed
    assert (led.debt, led.arrears, led.credit) == (0, 0, 3700) and led.check() is None, led.state()


def test_the_debt_of_use_is_recovered_first_then_the_arrears_from_what_is_left():
    ev = []
    led = make(ev, debt_share_bp=5000)
    led.load_debt(10000, share_bp=2000)
    led.debit(600, T0, True)                        # no credit: 600 of debt of use
    assert (led.debt, led.arrears) == (10600, 10000)
    split = led.topup(2000, ref="r")
    # use: min(600, 50 % of 2000) = 600; arrears: 20 % of the 1400 left = 280; credit 1120
    assert (split["debt"], split["credit"]) == (880, 1120), split
    assert (led.debt, led.arrears) == (9720, 9720), led.state()
    assert ev[-1][1]["arrears"] == 280 and ev[-1][1]["amount"] == 880, ev[-1]
    assert led.check() is None


def test_emergency_is_repaid_before_any_arrears():
    led = make(emergency_amount=1000, emergency_threshold=200)
    led.load_debt(5000)
    assert led.take_emergency() == (1000, "")
    split = led.topup(3000)
    assert (split["emergency"], split["debt"], split["credit"]) == (1000, 500, 1500), split
    assert led.check() is None


def test_arrears_never_take_a_whole_topup_even_when_debt_is_recovered_in_full():
    """With debt_share_bp 10000 (debt of use first, in full), arrears are still taken at 90 % at most: every
    top-up adds credit while only arrears are owed, so arrears alone never keep the supply off."""
    led = make(debt_share_bp=10000)
    led.load_debt(100000)
    split = led.topup(1000)
    assert (split["debt"], split["credit"]) == (900, 100), split
    split = led.topup(1)
    assert (split["debt"], split["credit"]) == (0, 1), split


def test_no_cut_off_for_arrears_whatever_the_amounts_and_shares():
    """The policy cuts on credit alone (credit <= 0 outside friendly periods), never on debt: a meter with
    credit and any arrears keeps its supply, and a top-up always brings credit when only arrears are owed."""
    rng = random.Random(15)
    pol = Policy({})
    for _ in range(400):
        led = make(debt_share_bp=rng.choice((0, 1, 2500, 9000, 9999, 10000)))
        led.load_debt(rng.randint(1, 10 ** 8), share_bp=rng.choice((None, 1, 2500, 9000)))
        amount = rng.randint(1, 10 ** 6)
        before = led.credit
        split = led.topup(amount)
        assert split["credit"] > 0 and led.credit > before, (led.state(), amount, split)
        assert not pol.cut_for_credit(led.credit, T0, True), led.state()
        assert led.check() is None, led.check()
    # the control: without credit the same policy does cut (it is credit, not debt, that decides)
    assert pol.cut_for_credit(0, T0, True)


def test_arrears_survive_a_restart_and_an_old_record_reads_as_none():
    led = make()
    led.load_debt(4000, share_bp=3000)
    led.topup(1000)
    st = led.state()
    again = Ledger({}, Schedule(FLAT), None, dict(st))
    assert (again.debt, again.arrears, again.arr_bp, again.cleared) == (3700, 3700, 3000, 4000), again.state()
    assert again.check() is None
    old = {k: v for k, v in st.items() if k not in ("arrears", "arr_bp")}   # written before arrears existed
    old["debt"] = 0
    old["cleared"] = 0
    prev = Ledger({}, Schedule(FLAT), None, old)
    assert (prev.arrears, prev.arr_bp) == (0, 0)
    for bad in ({"arrears": -1}, {"arrears": "5"}, {"arr_bp": True}):
        with pytest.raises(ValueError, match="arrears"):
            Ledger({}, Schedule(FLAT), None, dict(st, **bad))


def test_forgiving_the_debt_forgives_the_arrears_with_it():
    led = make(opening_credit=100)
    led.load_debt(2000)
    led.clear_credit(forgive=True)
    assert (led.credit, led.debt, led.arrears) == (0, 0, 0) and led.check() is None, led.state()


def test_the_check_catches_arrears_above_the_debt():
    led = make()
    led.load_debt(100)
    led.arrears = 101
    assert "arrears 101" in led.check()


def test_arrears_under_micropython():
    code = r'''
from credit.tariff import Schedule
from credit.ledger import Ledger
from credit.policy import Policy
ev = []
led = Ledger({"debt_share_bp": 5000}, Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 1000000}]}]}),
             lambda k, d: ev.append((k, d)))
led.load_debt(10000, 2000)
led.debit(600, 1794312000, True)
s = led.topup(2000, "r")
print("split", s["debt"], s["credit"], led.debt, led.arrears, led.cleared)
print("event", ev[-1][1]["amount"], ev[-1][1]["arrears"], ev[-1][1]["arrears_left"])
print("check", led.check())
led2 = Ledger({"debt_share_bp": 10000}, Schedule({"tariffs": [{"blocks": [{"price_per_mwh": 1000000}]}]}))
led2.load_debt(100000)
print("full", led2.topup(1000)["credit"], Policy({}).cut_for_credit(led2.credit, 1794312000, True))
st = led.state()
print("state", st["arrears"], st["arr_bp"])
'''
    out = run_micropython(code, heap="96k")
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["split"] == "880 1120 9720 9720 10000", out
    assert lines["event"] == "880 280 9720", out
    assert lines["check"] == "None", out
    assert lines["full"] == "100 False", out
    assert lines["state"] == "9720 2000", out
