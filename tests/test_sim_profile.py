"""`meterkit sim profile`: the breakdown of a simulated stretch adds up."""
import json
import subprocess
import sys


def test_profile_accounts_for_frames_processes_and_jobs():
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "sim", "profile", "--days", "0.05", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["link_frames"] == sum(out["frames_by_kind"].values()), out
    # a metering poll a minute for 72 minutes, each reading the chip over SPI
    assert 70 <= out["jobs"]["meter"]["runs"] <= 74, out["jobs"]
    assert out["frames_by_kind"]["SPI"] >= 2 * 70, out["frames_by_kind"]
    # the display's quiet minutes are played by the board: about one wake per metering poll, not one
    # per display period (5 s)
    assert out["jobs"]["ui"]["runs"] <= out["jobs"]["meter"]["runs"] + 3, out["jobs"]
    assert out["frames_by_kind"].get("DISPLAY_PLAN", 0) >= 70, out["frames_by_kind"]
    assert out["firmware_cpu_seconds"] > 0 and out["simulator_cpu_seconds"] > 0, out
    # the tamper check reads the cover switch every poll: its level comes with the wake (link.py)
    assert out["frames_by_kind"].get("GPIO_R", 0) == 0, out["frames_by_kind"]


def test_profile_refuses_a_silly_length():
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "sim", "profile", "--days", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--days" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_levels_sent_with_each_wake_are_what_a_pin_read_would_answer():
    import random
    from types import SimpleNamespace
    from host_tools.sim.esp32 import runner as R
    from host_tools.sim.esp32 import link as L
    pins = {"meter_irq": 1, "relay_feedback": 6, "power_fail": 7, "cover": 12, "relay_set": 4, "high": 30}
    r = R.SimMeter.__new__(R.SimMeter)
    r.info = {"pins": pins}
    r.pins = R._Pins({v: 0 for v in pins.values()})
    r.pin_names = {v: k for k, v in pins.items()}
    r._fb_bit = 1 << 6
    r.world = SimpleNamespace(relay_closed=False)
    rng = random.Random(3)
    for _ in range(200):
        for n in pins.values():
            if rng.random() < 0.3:
                r.pins[n] = rng.choice((0, 1))
        r.world.relay_closed = rng.random() < 0.5
        want = sum(1 << n for n in pins.values() if n < 24 and r._gpio_read(n))
        assert r._levels() == want
        now, flags, levels = L._QBI.unpack(L.pack_advance_reply(1234, 5, r._levels()))
        assert (now, flags, levels) == (1234, 5, want)
