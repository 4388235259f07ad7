"""The real firmware (compiled .mpy, MicroPython with a 96 KB heap cap) in the simulated world."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.device.client import ServiceClient
from host_tools.sim.run import run

ROOT = Path(__file__).resolve().parent.parent
METERKIT = str(Path(sys.executable).parent / "meterkit")
COUNT_WH = 1 / 32.0        # one 0.1-pulse register count at 3200 imp/kWh


@pytest.mark.long
def test_ideal_front_end_30_days_matches_truth_to_the_register_resolution():
    r = run(days=30, seed=3, afe="ideal", period_s=60)
    assert r["sim_seconds"] == 30 * 86400
    assert r["true_import_wh"] > 50000          # a month of a real household
    assert abs(r["meter_import_wh"] - r["true_import_wh"]) <= COUNT_WH
    assert r["boots"] == 1
    assert set(r["events"]) <= {"boot", "supply_close", "statement"}     # no fault of any kind
    assert r["firmware_heap_limit_bytes"] <= 256 * 1024
    assert 0 < r["firmware_heap_peak_bytes"] <= r["firmware_heap_limit_bytes"]


@pytest.mark.long
def test_a_front_end_3_percent_high_in_current_reads_3_percent_high():
    # A gain error scales every reading: a week of the same household (about 32 kWh) shows it as well as
    # a month (the month-long accumulation is the ideal front end's test above); 30 days cost 40 s more.
    r = run(days=7, seed=3, afe="gain_plus_3pct", period_s=60)
    assert r["true_import_wh"] > 25000
    assert 2.9 <= r["error_pct"] <= 3.1


@pytest.mark.long
def test_an_uncalibrated_typical_meter_is_off_by_a_few_percent():
    r = run(days=5, seed=4, afe="typical", period_s=60)
    assert 0.3 <= abs(r["error_pct"]) <= 10


def test_solar_export_lands_in_the_export_total():
    r = run(days=3, seed=5, afe="ideal", profile="solar", period_s=60)
    assert r["true_export_wh"] > 1000
    # Near sunrise/sunset net power sits below the start-up threshold, where a real meter does not count.
    assert abs(r["meter_export_wh"] - r["true_export_wh"]) / r["true_export_wh"] < 0.002


@pytest.mark.long
@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_chip_fault_detected_reported_recovered_with_no_energy_lost(fault):
    # an hour at 3 kW: the fault 20 minutes in (the app long past its start), then over half an hour of
    # metering after it to show nothing was lost (a loss at the fault is a fixed amount: a longer run
    # would not show it better; two hours cost twice the time for the same checks)
    r = run(days=1 / 24, seed=6, afe="ideal", profile="constant", period_s=1, faults=["%s@1200+90" % fault])
    assert r["events"].get("meter_" + fault) == 1
    assert r["events"].get("meter_recovered") == 1
    assert abs(r["meter_import_wh"] - r["true_import_wh"]) <= COUNT_WH


@pytest.mark.long
def test_chip_reset_detected_recalibrated_and_loss_bounded_by_one_poll():
    r = run(days=1 / 24, seed=6, afe="ideal", profile="constant", period_s=1, faults=["reset@1200"])
    assert r["events"].get("meter_reset") == 1 and r["events"].get("meter_recovered") == 1
    lost = r["true_import_wh"] - r["meter_import_wh"]
    # The chip drops what it held when it resets and meters nothing until restarted: at most one
    # 1-second poll of this load (the constant profile's power) plus a count.
    max_w = 3000
    assert -COUNT_WH <= lost <= max_w / 3600 + COUNT_WH


def _cli_start(*args):
    return subprocess.Popen([METERKIT, "sim", "run", "--json", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _cli_result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.long
def test_sim_run_json_has_the_contract_keys_and_is_reproducible():
    # The three runs go at once (each its own world, flash file and firmware process).
    procs = [_cli_start("--days", "2", "--seed", "9"), _cli_start("--days", "2", "--seed", "9"),
             _cli_start("--days", "2", "--seed", "10")]
    try:
        a, b, c = [_cli_result(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for k in ("sim_seconds", "wall_seconds", "true_import_wh", "true_export_wh", "meter_import_wh",
              "meter_export_wh", "error_pct", "firmware_heap_peak_bytes", "firmware_heap_limit_bytes",
              "events", "seed"):
        assert k in a
    a.pop("wall_seconds")
    b.pop("wall_seconds")
    assert a == b
    assert c["true_import_wh"] != a["true_import_wh"]


def test_sim_run_refuses_a_bad_fault_spec():
    p = subprocess.run([METERKIT, "sim", "run", "--days", "1", "--fault", "melt@10", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "unknown fault kind" in p.stderr


def test_service_pty_answers_pyserial_and_sigterm_leaves_nothing_behind():
    proc = subprocess.Popen([METERKIT, "sim", "start", "--json", "--seed", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        with ServiceClient(info["service_port"], timeout=10) as c:
            pong = c.call("ping")
            assert pong["pong"] is True and pong["board"] == "sim"
            rd = c.call("readings")
            assert 20000 < rd["urms_cv"] < 26000 and rd["freq_chz"] > 4900
            bad = None
            try:
                c.call("no-such-command")
            except Exception as e:   # DeviceError with the meter's message
                bad = str(e)
            assert "unknown command" in bad
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # The firmware process (micropython) went with it.
    time.sleep(0.2)
    ps = subprocess.run(["pgrep", "-f", "-s", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
