"""Supply state machine over the real latching driver and a fake relay: reasons, power-limit trips with
growing back-off, decay, reconnect-by-key, relay retries, state after a reboot, and MicroPython."""
import json

import pytest

from mpyrun import expect, run_reported
from relay import supply as sm
from relay.latching import LatchingRelay
from relay.supply import NO_CREDIT, OVER_POWER, REMOTE, TAMPER, Supply
from test_relay_latching import FAKES

exec(FAKES, globals())


def make(cfg=None, state=None, relay_state=None, **hw_kw):
    clock = FakeClock()
    hw = FakeRelayHW(clock, **hw_kw)
    ev, emit = recorder()
    relay = LatchingRelay(hw.set_pin, hw.reset_pin, clock, emit, {}, feedback=hw.feedback, state=relay_state)
    s = Supply(relay, clock, emit, cfg or {}, state=state)
    return clock, hw, ev, s


def kinds(ev):
    return [k for k, _ in ev]


def test_closes_at_start_when_no_reason_holds():
    clock, hw, ev, s = make()
    assert hw.closed and s.closed and ev == [("supply_close", {"after": ""})]


def test_relay_closes_only_when_no_reason_holds():
    clock, hw, ev, s = make()
    s.set_reason(NO_CREDIT)
    s.set_reason(TAMPER)
    assert not hw.closed
    assert s.reasons() == NO_CREDIT | TAMPER
    assert sm.names(s.reasons()) == "NO_CREDIT|TAMPER"
    s.clear_reason(NO_CREDIT)
    assert not hw.closed
    s.clear_reason(TAMPER)
    assert hw.closed
    assert ev[1:] == [("supply_open", {"reasons": "NO_CREDIT", "mask": NO_CREDIT}),
                      ("supply_close", {"after": "NO_CREDIT|TAMPER"})]


def test_setting_a_held_reason_again_moves_nothing():
    clock, hw, ev, s = make()
    s.set_reason(REMOTE)
    pulses = hw.pulses
    s.set_reason(REMOTE)
    s.clear_reason(TAMPER)
    assert hw.pulses == pulses and kinds(ev).count("supply_open") == 1


def drive(s, clock, watts, seconds, step_ms=1000):
    for _ in range(seconds * 1000 // step_ms):
        s.power_sample(watts if s.closed else 0, clock.advance(step_ms))


def test_power_limit_trips_with_growing_backoff_and_recloses():
    clock, hw, ev, s = make({"max_power_w": 5000, "over_power_s": 10, "backoff_s": 30, "backoff_max_s": 100})
    drive(s, clock, 4900, 60)
    assert hw.closed and s.trips == 0
    drive(s, clock, 6000, 10)
    assert hw.closed  # 10 s counted from the first sample over the limit: not yet
    drive(s, clock, 6000, 1)
    assert not hw.closed and s.reasons() == OVER_POWER
    offs = []
    for _ in range(4):
        t_open = 0
        while not s.closed:
            drive(s, clock, 6000, 1)
            t_open += 1
        offs.append(t_open)
        while s.closed:
            drive(s, clock, 6000, 1)
    # back-off 30 s, 60 s, then capped at 100 s
    assert offs == [30, 60, 100, 100]
    trips = [d for k, d in ev if k == "over_power"]
    assert [d["backoff_s"] for d in trips] == [30, 60, 100, 100, 100]
    assert trips[0]["watts"] == 6000


def test_short_spike_over_the_limit_does_not_trip():
    clock, hw, ev, s = make({"max_power_w": 5000, "over_power_s": 10})
    for _ in range(5):
        drive(s, clock, 9000, 9)
        drive(s, clock, 100, 1)
    assert hw.closed and "over_power" not in kinds(ev)


def test_trip_count_decays_after_quiet_periods():
    clock, hw, ev, s = make({"max_power_w": 5000, "over_power_s": 5, "backoff_s": 30, "decay_s": 600})
    for _ in range(3):
        drive(s, clock, 6000, 6)
        while not s.closed:
            drive(s, clock, 0, 1)
    assert s.trips == 3
    drive(s, clock, 1000, 599)
    assert s.trips == 3
    drive(s, clock, 1000, 2)
    assert s.trips == 2
    drive(s, clock, 1000, 1200)
    assert s.trips == 0
    drive(s, clock, 6000, 6)
    assert [d["backoff_s"] for k, d in ev if k == "over_power"][-1] == 30


def test_auto_mode_recloses_at_once_after_topup():
    clock, hw, ev, s = make({"reconnect": "auto"})
    s.set_reason(NO_CREDIT)
    s.clear_reason(NO_CREDIT)
    assert hw.closed and not s.awaiting_key


def test_key_mode_waits_for_reconnect_key_after_topup():
    clock, hw, ev, s = make({"reconnect": "key"})
    assert s.key_reconnect() is False  # nothing to reconnect
    s.set_reason(NO_CREDIT)
    s.clear_reason(NO_CREDIT)
    assert not hw.closed and s.awaiting_key and "reconnect_armed" in kinds(ev)
    s.set_reason(TAMPER)
    assert s.key_reconnect() is False and not hw.closed  # another reason still holds
    s.clear_reason(TAMPER)
    assert not hw.closed
    assert s.key_reconnect() is True and hw.closed and not s.awaiting_key


def test_key_mode_over_power_recloses_by_itself():
    clock, hw, ev, s = make({"reconnect": "key", "max_power_w": 1000, "over_power_s": 1, "backoff_s": 5})
    drive(s, clock, 2000, 2)
    assert not hw.closed
    drive(s, clock, 0, 6)
    assert hw.closed and not s.awaiting_key


def test_arm_reconnect_demands_the_key_in_auto_mode():
    clock, hw, ev, s = make()
    s.set_reason(REMOTE)
    s.arm_reconnect()
    s.clear_reason(REMOTE)
    assert not hw.closed
    assert s.key_reconnect() and hw.closed


def test_relay_that_will_not_move_is_retried_from_poll():
    clock, hw, ev, s = make({"relay_retry_s": 60}, ignore=0)
    hw.stuck = True
    s.set_reason(REMOTE)
    assert hw.closed and s.relay.failed and kinds(ev).count("relay_failed") == 1
    s.poll(clock.advance(30000))
    assert kinds(ev).count("relay_failed") == 1  # not yet
    hw.stuck = False
    s.poll(clock.advance(31000))
    assert not hw.closed and not s.relay.failed
    assert kinds(ev).count("supply_open") == 1


def test_state_after_reboot_keeps_reasons_and_over_power_backoff():
    clock, hw, ev, s = make({"max_power_w": 1000, "over_power_s": 1, "backoff_s": 30})
    s.set_reason(NO_CREDIT)
    s.clear_reason(NO_CREDIT)
    drive(s, clock, 2000, 2)
    st = json.loads(json.dumps(s.state()))
    rst = s.relay.state()
    clock2, hw2, ev2, s2 = make({"max_power_w": 1000, "over_power_s": 1, "backoff_s": 30}, state=st, relay_state=rst)
    assert s2.reasons() == OVER_POWER and not hw2.closed and s2.trips == 1
    drive(s2, clock2, 0, 29)
    assert not hw2.closed
    drive(s2, clock2, 0, 2)
    assert hw2.closed


@pytest.mark.parametrize("cfg,key", [({"reconnect": "maybe"}, "reconnect"), ({"max_power_w": -1}, "max_power_w"),
                                     ({"key_reasons": ["NOPE"]}, "key_reasons"), ({"decay_s": 10**6}, "decay_s")])
def test_bad_supply_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        make(cfg)


def test_supply_under_micropython_trips_backs_off_and_waits_for_key():
    code = FAKES + r'''
from relay.latching import LatchingRelay
from relay import supply as sm
clock = FakeClock()
hw = FakeRelayHW(clock)
ev, emit = recorder()
relay = LatchingRelay(hw.set_pin, hw.reset_pin, clock, emit, {}, feedback=hw.feedback)
s = sm.Supply(relay, clock, emit, {"max_power_w": 3000, "over_power_s": 5, "backoff_s": 30, "reconnect": "key"})
offs = []
for trip in range(3):
    n = 0
    while s.closed:
        s.power_sample(4000, clock.advance(1000))
    while not s.closed:
        s.power_sample(0, clock.advance(1000))
        n += 1
    offs.append(n)
report("off_seconds_per_trip", offs)
s.set_reason(sm.NO_CREDIT)
s.clear_reason(sm.NO_CREDIT)
report("closed_after_topup", s.closed)
report("awaiting_key_after_topup", s.awaiting_key)
report("key_reconnect", s.key_reconnect())
report("relay_closed_after_key", hw.closed)
report("names", sm.names(sm.NO_CREDIT | sm.UNDER_VOLTAGE | sm.RELAY_TEST))
'''
    got, out = run_reported(code, heap="96k")
    expect(got, {"off_seconds_per_trip": [30, 60, 120], "closed_after_topup": False, "awaiting_key_after_topup": True,
                 "key_reconnect": True, "relay_closed_after_key": True,
                 "names": "NO_CREDIT|UNDER_VOLTAGE|RELAY_TEST"}, out)
