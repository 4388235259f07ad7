"""Bugs `meterkit sim chaos` found, each pinned by the smallest run that shows it."""
import pytest

from host_tools.sim.esp32.runner import SimMeter

LOAD = {"kind": "constant", "name": "steady", "watts": 2000, "pf": 1.0}


@pytest.fixture
def meter():
    m = SimMeter(seed=3, profile=LOAD, afe="ideal", settings={"meter_period_s": 1, "prepaid": {
        "ledger": {"opening_credit": 10000000}}})
    m.run_for(5)
    yield m
    m.close()


def test_power_fail_is_committed_and_reported_once_while_the_input_stays_high(meter):
    """Input waking the loop within the hold-up (here service requests; in the chaos run modem data) made
    the prepaid core commit and report `power_fail` again at every wake, at one virtual instant, for ever
    (37,000 events in the chaos run's uplink queue)."""
    m = meter
    w = m.world
    boots = m.boots
    w.outage(w.now_ms + 1, 600000)
    m.run_until(w.now_ms + 3)                 # the input rises; the firmware commits and reports
    for _ in range(4):
        m.request("ping")                     # more input inside the hold-up
    counts = m.request("events")["counts"]
    assert m.boots == boots, "the meter died inside the hold-up"
    assert counts.get("power_fail") == 1, counts


def test_a_brown_out_within_the_hold_up_is_survived_reported_once_and_re_arms(meter):
    """The simulator kept the power-fail input high and the death due after the supply came back within
    the hold-up; now the input falls again and the meter lives on. The next sag, with no other input in
    between (re-armed by the metering poll, not only by an input wake), is reported again."""
    m = meter
    w = m.world
    boots = m.boots
    holdup = m.info["power_fail_holdup_ms"]
    before = m.request("totals", fresh=True)["import_wh"]
    w.outage(w.now_ms + 1, holdup // 2)
    m.run_for(30)
    w.outage(w.now_ms + 1, holdup // 2)
    m.run_for(30)
    counts = m.request("events")["counts"]
    assert m.boots == boots, "a sag shorter than the hold-up rebooted the meter"
    assert counts.get("power_fail") == 2, counts
    assert m.request("totals", fresh=True)["import_wh"] > before, "metering stopped after the brown-outs"
