"""Firmware core under CPython: scheduler on wrapping ticks, settings validation, the service port."""
import json

from fakes import FakeClock

from app import settings as config
from app.sched import Scheduler
from service.port import ServicePort


class Stream:
    def __init__(self):
        self.inbox = []
        self.out = b""

    def feed(self, data):
        self.inbox.append(data)

    def read(self):
        return self.inbox.pop(0) if self.inbox else None

    def write(self, data):
        self.out += data

    def replies(self):
        return [json.loads(x) for x in self.out.split(b"\n") if x]


def test_periodic_jobs_keep_their_period_across_the_ticks_wrap():
    clock = FakeClock(ms=(1 << 30) - 2500)
    s = Scheduler(clock)
    seen = []
    s.every("a", 1000, lambda: seen.append(clock.ms))
    for _ in range(8):
        s.step()
    assert [b - a for a, b in zip(seen, seen[1:])] == [1000] * (len(seen) - 1)
    assert len(seen) >= 7


def test_a_job_far_behind_is_reanchored_not_burst():
    clock = FakeClock()
    s = Scheduler(clock)
    runs = []
    s.every("a", 1000, lambda: runs.append(clock.ms))
    s.step()
    clock.advance(60000)           # a minute lost (a long fault): one run, then the normal period
    s.step()
    s.step()
    assert runs[1] == 61000 and runs[2] - runs[1] == 1000


def test_input_wakes_the_loop_early_and_runs_input_handlers():
    clock = FakeClock()
    s = Scheduler(clock)
    got = []
    s.every("slow", 60000, lambda: None, first_in_ms=60000)
    s.on_input(lambda: got.append(clock.ms))
    clock.input_at.append(1234)
    s.step()
    assert got == [1234]


def test_a_failing_job_is_reported_and_the_loop_goes_on():
    clock = FakeClock()
    errors = []
    s = Scheduler(clock, on_error=lambda name, e, fails: errors.append((name, str(e), fails)))
    ok = []
    s.every("bad", 1000, lambda: 1 / 0)
    s.every("good", 1000, lambda: ok.append(1))
    for _ in range(3):
        s.step()
    assert [(e[0], e[2]) for e in errors] == [("bad", 1), ("bad", 2), ("bad", 3)], errors
    assert len(ok) == 3


def test_a_job_that_recovers_starts_its_failure_count_again():
    clock = FakeClock()
    fails = []
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] in (1, 2, 4):
            raise OSError(5)
    s = Scheduler(clock, on_error=lambda name, e, n: fails.append(n))
    s.every("flaky", 1000, flaky)
    for _ in range(5):
        s.step()
    assert fails == [1, 2, 1], fails      # the success between the 2nd and 4th run cleared the count


def test_settings_are_validated_and_bad_values_keep_defaults(tmp_path):
    p = tmp_path / "settings.json"
    p.write_text(json.dumps({"meter_period_s": 30, "gc_every_polls": "x", "max_voltage_cv": 5, "nope": 1}))
    cfg, problems = config.load(str(p))
    assert cfg["meter_period_s"] == 30
    assert cfg["gc_every_polls"] == config.defaults()["gc_every_polls"]
    assert cfg["max_voltage_cv"] == config.defaults()["max_voltage_cv"]
    keys = sorted(k for k, _ in problems)
    assert keys == ["gc_every_polls", "max_voltage_cv", "nope"]


def test_missing_settings_give_defaults_and_broken_json_is_a_problem(tmp_path):
    cfg, problems = config.load(str(tmp_path / "absent.json"))
    assert cfg == config.defaults() and problems == []
    p = tmp_path / "settings.json"
    p.write_text("{not json")
    cfg, problems = config.load(str(p))
    assert cfg == config.defaults() and problems[0][0] == "settings.json"


def test_service_port_answers_and_survives_bad_input():
    st = Stream()
    port = ServicePort(st, max_line=64)
    port.command("ping", lambda req: {"pong": True})
    port.command("boom", lambda req: 1 / 0)
    st.feed(b'{"id": 1, "cmd": "ping"}\n{"id": 2, "cmd": "nope"}\nnot json\n')
    st.feed(b'{"id": 3, "cmd": "boom"}\n' + b"x" * 200 + b"\n[1,2]\n")
    st.feed(b'{"id": 4, "cm')      # split across reads
    st.feed(b'd": "ping"}\n')
    port.poll()
    r = st.replies()
    assert r[0] == {"id": 1, "ok": True, "pong": True}
    assert r[1]["ok"] is False and "unknown command" in r[1]["error"]
    assert r[2]["ok"] is False and "not JSON" in r[2]["error"]
    assert r[3]["ok"] is False and "ZeroDivisionError" in r[3]["error"]
    assert "too long" in r[4]["error"]
    assert "object" in r[5]["error"]
    assert r[6] == {"id": 4, "ok": True, "pong": True}


def test_privileged_commands_go_through_the_gate():
    st = Stream()
    port = ServicePort(st)
    port.command("cal_set", lambda req: {"done": True}, privileged=True)
    port.gate = lambda req: None if req.get("session") == "yes" else "authenticate first"
    st.feed(b'{"id": 1, "cmd": "cal_set"}\n{"id": 2, "cmd": "cal_set", "session": "yes"}\n')
    port.poll()
    r = st.replies()
    assert r[0]["ok"] is False and r[0]["error"] == "authenticate first"
    assert r[1]["done"] is True


def test_a_quiet_job_sleeps_to_its_next_timer_and_comes_back_within_a_period_when_busy():
    clock = FakeClock()
    s = Scheduler(clock)
    runs = []
    state = {"quiet": 0}
    s.every("link", 1000, lambda: runs.append(clock.ms), quiet=lambda: state["quiet"], quiet_max_ms=10000)
    # another job gives the link work at 30 s (as an input or an event would)
    s.every("meter", 60000, lambda: state.update(quiet=0), first_in_ms=30000)
    for _ in range(3):              # busy: once a second
        s.step()
    assert runs == [0, 1000, 2000]
    state["quiet"] = 4500           # quiet: the next run at its timer, not one period on
    s.step()
    s.step()
    assert runs[3:] == [3000, 7500]
    state["quiet"] = 60000          # a long quiet is capped (timers the job does not know of)
    s.step()
    s.step()
    assert runs[5:] == [12000, 22000]
    s.step()                        # 30000: the meter job runs and the link is busy again
    s.step()
    assert runs[7:] == [31000], runs


def test_a_quiet_function_that_fails_keeps_the_period():
    clock = FakeClock()
    s = Scheduler(clock)
    runs = []
    s.every("link", 1000, lambda: runs.append(clock.ms), quiet=lambda: 1 // 0)
    for _ in range(3):
        s.step()
    assert runs == [0, 1000, 2000]
