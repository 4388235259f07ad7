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


def test_profile_refuses_a_silly_length():
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "sim", "profile", "--days", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--days" in p.stderr and "Traceback" not in p.stderr, p.stderr
