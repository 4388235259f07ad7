"""Latching relay driver with fake pins and a fake relay: confirmation, bounded retries, failure and welds.

FAKES is plain MicroPython-compatible source, exec'd here and sent to the real interpreter by the
MicroPython tests, so both run the same fakes."""
import pytest

from mpyrun import expect, run_reported
from relay.latching import LatchingRelay

FAKES = r'''
PERIOD = 1 << 30


from fakeclock import FakeClock as _Clock


def FakeClock(start=PERIOD - 5000):
    """The tests' one clock, started just before the ticks wrap."""
    return _Clock(start)


class FakePin:
    def __init__(self, hw=None):
        self.v = 0
        self.hw = hw

    def value(self, v=None):
        if v is None:
            return self.v
        was, self.v = self.v, v
        if self.hw and was != v:
            self.hw.coil(self, v)


class FakeRelayHW:
    """A latching relay: a coil pulse of min_pulse_ms moves the armature unless stuck; `ignore`
    pulses are lost first; a welded contact conducts whatever the armature does."""

    def __init__(self, clock, min_pulse_ms=20, stuck=False, welded=False, load_ma=0, ignore=0):
        self.clock = clock
        self.min_pulse_ms = min_pulse_ms
        self.stuck = stuck
        self.welded = welded
        self.load_ma = load_ma
        self.ignore = ignore
        self.closed = False
        self.pulses = 0
        self.both_on = False
        self.on_at = 0
        self.set_pin = FakePin(self)
        self.reset_pin = FakePin(self)
        self.feedback = self

    def value(self):
        return 1 if self.closed else 0

    def coil(self, pin, v):
        if self.set_pin.v and self.reset_pin.v:
            self.both_on = True
        if v:
            self.on_at = self.clock.ticks_ms()
            return
        self.pulses += 1
        if self.clock.ticks_diff(self.clock.ticks_ms(), self.on_at) < self.min_pulse_ms or self.stuck:
            return
        if self.ignore:
            self.ignore -= 1
            return
        self.closed = pin is self.set_pin

    def current(self):
        return self.load_ma if (self.closed or self.welded) else 0


def recorder():
    ev = []
    return ev, lambda kind, data: ev.append((kind, data))
'''

exec(FAKES, globals())


def make(feedback=True, current=False, cfg=None, **hw_kw):
    clock = FakeClock()
    hw = FakeRelayHW(clock, **hw_kw)
    ev, emit = recorder()
    r = LatchingRelay(hw.set_pin, hw.reset_pin, clock, emit, cfg or {},
                      feedback=hw.feedback if feedback else None, current=hw.current if current else None)
    return clock, hw, ev, r


def test_close_and_open_confirmed_by_feedback_with_one_pulse_each():
    clock, hw, ev, r = make()
    assert r.close() and hw.closed and r.confirmed and r.closed
    assert r.open() and not hw.closed and r.confirmed and not r.closed
    assert hw.pulses == 2 and ev == []
    assert hw.set_pin.v == 0 and hw.reset_pin.v == 0 and not hw.both_on


def test_lost_pulse_is_retried_and_succeeds():
    clock, hw, ev, r = make(ignore=2)
    assert r.close() and hw.closed
    assert hw.pulses == 3 and ev == []


def test_stuck_relay_fails_after_bounded_retries_with_event():
    clock, hw, ev, r = make(stuck=True, cfg={"retries": 4, "pulse_ms": 50, "settle_ms": 10})
    assert r.close() is False
    assert r.failed and hw.pulses == 4
    assert ev == [("relay_failed", {"want": "closed", "tries": 4})]
    assert clock.slept == 4 * (50 + 10)  # blocking bounded by retries * (pulse + settle)


def test_pulse_too_short_for_the_relay_counts_as_not_moving():
    clock, hw, ev, r = make(min_pulse_ms=100, cfg={"pulse_ms": 60})
    assert r.close() is False and ev[-1][0] == "relay_failed"


def test_open_confirmed_by_current_when_there_is_no_feedback():
    clock, hw, ev, r = make(feedback=False, current=True, load_ma=5000)
    assert r.close() and r.confirmed  # current flows: confirmed closed
    assert r.open() and r.confirmed and hw.current() == 0


def test_close_without_load_is_done_but_unconfirmed():
    clock, hw, ev, r = make(feedback=False, current=True, load_ma=0)
    assert r.close() and not r.confirmed and hw.closed and hw.pulses == 1


def test_open_with_current_still_flowing_fails_then_weld_is_reported_once():
    clock, hw, ev, r = make(feedback=False, current=True, load_ma=3000, welded=True,
                            cfg={"weld_ms": 2000})
    r.close()
    assert r.open() is False and ev[-1][0] == "relay_failed"
    t = clock.ticks_ms()
    for _ in range(10):  # crosses the 2**30 tick wrap
        t = clock.advance(500)
        r.poll(t)
    assert [k for k, _ in ev].count("relay_welded") == 1
    assert r.welded


def test_weld_seen_with_feedback_open_but_current_flowing():
    clock, hw, ev, r = make(feedback=True, current=True, load_ma=3000, welded=True, cfg={"weld_ms": 1000})
    r.close()
    assert r.open() and not hw.closed  # the armature moved
    r.poll(clock.advance(100))
    r.poll(clock.advance(500))
    assert "relay_welded" not in [k for k, _ in ev]
    r.poll(clock.advance(600))
    assert ("relay_welded", {"ma": 3000}) in ev


def test_brief_current_while_open_is_not_a_weld():
    clock, hw, ev, r = make(feedback=True, current=True, load_ma=3000, cfg={"weld_ms": 1000})
    r.open()
    hw.welded = True
    r.poll(clock.advance(100))
    r.poll(clock.advance(800))
    hw.welded = False
    r.poll(clock.advance(800))
    hw.welded = True
    r.poll(clock.advance(100))
    r.poll(clock.advance(800))
    assert "relay_welded" not in [k for k, _ in ev]


def test_state_restores_commanded_position():
    clock, hw, ev, r = make()
    r.close()
    r2 = LatchingRelay(hw.set_pin, hw.reset_pin, clock, None, {}, feedback=hw.feedback, state=r.state())
    assert r2.closed and r2.state() == {"closed": 1, "failed": 0}


@pytest.mark.parametrize("cfg,key", [({"pulse_ms": 0}, "pulse_ms"), ({"retries": 11}, "retries"),
                                     ({"feedback_closed": 2}, "feedback_closed")])
def test_bad_relay_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        make(cfg=cfg)


def test_relay_under_micropython_retries_fails_and_detects_weld():
    code = FAKES + r'''
from relay.latching import LatchingRelay
clock = FakeClock()
hw = FakeRelayHW(clock, ignore=1)
ev, emit = recorder()
r = LatchingRelay(hw.set_pin, hw.reset_pin, clock, emit, {"weld_ms": 1000}, feedback=hw.feedback, current=hw.current)
report("close", [r.close(), hw.pulses, hw.closed])
hw.stuck = True
report("open_stuck", [r.open(), hw.pulses, ev[-1][0], ev[-1][1]["tries"]])
hw.stuck = False
hw.welded = True
hw.load_ma = 2000
report("open_welded", r.open())
t = clock.ticks_ms()
for i in range(6):
    t = clock.advance(400)
    r.poll(t)
report("relay_welded_events", [k for k, d in ev].count("relay_welded"))
report("both_coils_on", hw.both_on)
'''
    got, out = run_reported(code, heap="96k")
    # [result, pulses so far, relay closed]; [result, pulses so far, last event, its tries]
    expect(got, {"close": [True, 2, True], "open_stuck": [False, 5, "relay_failed", 3], "open_welded": True,
                 "relay_welded_events": 1, "both_coils_on": False}, out)
