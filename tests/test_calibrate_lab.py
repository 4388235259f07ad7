"""The calibration lab end to end with the real firmware in lockstep (SimMeter): a seeded meter with
front-end errors of several percent is calibrated, verified and certified; the certificate agrees
with an independent re-measurement in the simulator; the calibration survives a reboot and a chip
reset; an uncorrectable front end fails with its reason; and the CLI's bad situations."""
import base64
import csv
import io
import json
import os
import re

import pytest

from host_tools.calibrate.bench.sim import BenchServer, RemoteBench, SimBench
from host_tools.calibrate.lab import run_lab, summary
from host_tools.calibrate.target import SettleError, SimService
from host_tools.cli import main
from host_tools.sim.esp32.runner import SimMeter
from test_calibrate_fixtures import ChipDirectMeter, polled

SEED = 5          # typical front end: energy reads about +5.7 % at Ib before calibration


def _meter(seed=SEED, afe="typical"):
    m = SimMeter(seed=seed, afe=afe, profile="constant", settings={"meter_period_s": 1})
    m.run_for(1)
    return m


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    m = _meter()
    b = SimBench(m, seed=SEED)
    out = tmp_path_factory.mktemp("cert")
    res = run_lab(SimService(m), b, "1", report_dir=out, meter_name="seed5")
    yield m, b, res
    m.close()


def test_typical_meter_with_percent_errors_passes_class_1_after_calibration(lab):
    m, b, res = lab
    unc = res["calibration"]["uncalibrated_error_pct"]
    assert abs(unc["pf1_pct"]) > 2 and abs(unc["pf05l_pct"]) > 2
    assert res["status"] == "PASSED" and res["passed"] and res["reason"] is None
    assert len(res["points"]) == 16 and all(p["passed"] for p in res["points"])
    assert all(abs(p["error_pct"]) <= 0.2 for p in res["points"])
    assert res["starting"]["passed"] and res["starting"]["pulses"] >= 1
    assert res["creep"]["passed"] and res["creep"]["pulses"] <= 1
    assert res["stored_in_meter"]
    assert 30 < res["bench_seconds"] < 110      # 3 sub-gates of 1 s per point (repeatability)


def test_certificate_files_hold_every_point_and_the_plot(lab):
    m, b, res = lab
    rep = res["report"]
    page = open(rep["html"]).read()
    assert "PASSED" in page and "seed5" in page and "sim" in page
    for p in res["points"]:
        assert p["label"] in page
    png = open(rep["png"], "rb").read()
    assert png.startswith(b"\x89PNG")
    assert base64.b64encode(png).decode() in page
    rows = list(csv.DictReader(io.StringIO(open(rep["csv"]).read())))
    assert len(rows) == 16 + 2
    # written to 3 decimals (0.001 %), results as words
    assert float(rows[4]["error_pct"]) == pytest.approx(res["points"][4]["error_pct"], abs=0.0005)
    assert rows[4]["result"] == "pass" and "True" not in open(rep["csv"]).read()
    saved = json.load(open(rep["json"]))
    assert saved["worst_error_pct"] == pytest.approx(res["worst_error_pct"])
    assert saved["registers_after"] == res["calibration"]["registers"]


def _firmware_wh(m):
    t = m.request("totals", fresh=True)
    return t["import_wh"] + t["import_rem"] / t["rem_den"]


@pytest.mark.parametrize("label,hours", [("100% Ib PF 1", 0.25), ("10% Ib PF 0.5L", 2.0), ("Imax PF 0.8C", 0.05)])
def test_certificate_matches_an_independent_remeasurement(lab, label, hours):
    """The meter's own energy totals (normal meter constant, firmware in the loop) against the world's
    true energy over a long interval agree with the certificate's error at that point."""
    m, b, res = lab
    point = next(p for p in res["points"] if p["label"] == label)
    b.set(230, point["current_a"], point["pf"])
    m.run_for(2)
    e0, t0 = _firmware_wh(m), m.world.true_import_wh
    m.run_for(hours * 3600)
    err = ((_firmware_wh(m) - e0) / (m.world.true_import_wh - t0) - 1) * 100
    # Certificate (against the reference, +-0.01 %) and truth agree to the gate's resolution.
    assert err == pytest.approx(point["error_pct"], abs=0.06)
    b.off()


def test_stored_calibration_survives_reboot_and_chip_reset(lab):
    m, b, res = lab
    regs = res["calibration"]["registers"]
    from host_tools.sim.world.chips.atm90e26 import ADDR

    def chip_matches():
        return {k: m.world.chip.peek(ADDR[k]) for k in regs} == regs

    assert chip_matches()
    m.kill()                                  # power cut: the next run boots the firmware again
    m.run_for(3)
    assert m.request("ping")["calibrated"] is True
    assert chip_matches()
    m.world.chip_fault("reset")               # the chip alone loses its registers
    assert not chip_matches()
    m.run_for(3)
    assert chip_matches()


def test_uncorrectable_front_end_fails_with_its_reason_and_nothing_stored(tmp_path):
    m = _meter(seed=1, afe="uncorrectable")
    try:
        res = run_lab(SimService(m), SimBench(m, seed=1), "1", report_dir=tmp_path, meter_name="bad")
        assert res["status"] == "FAILED" and not res["passed"]
        assert "Ugain" in res["reason"] and "bit 15" in res["reason"] and "IgainL" in res["reason"]
        assert "Lgain" in res["reason"]
        assert not res["stored_in_meter"] and m.request("ping")["calibrated"] is False
        cal = m.request("cal_get")["cal"]
        assert (cal["PLconstH"], cal["PLconstL"], cal["Lgain"]) == (24, 0, 0)   # not left in test mode
        assert "FAILED" in open(res["report"]["html"]).read()
        assert summary(res)["proposed_registers"] is not None
    finally:
        m.close()


def test_remote_bench_calibrates_like_the_in_process_one():
    """--bench sim:ADDRESS: the bench over TCP, the meter over its service port, sharing one meter."""
    m = _meter(seed=7)
    try:
        with polled(BenchServer(m, seed=7)) as srv:
            class Locked(SimService):
                def call(self, cmd, timeout=None, **args):
                    with srv.lock:
                        return SimService.call(self, cmd, **args)
            rb = RemoteBench(srv.address)
            try:
                res = run_lab(Locked(m), rb, "1", write_report=False)
                assert res["passed"] and res["bench"]["kind"] == "sim"
                assert res["bench_seconds"] == pytest.approx(srv.bench.elapsed_s(), abs=1e-6)
            finally:
                rb.close()
            assert m.world.bench is None                  # released: back on its household load
    finally:
        m.close()


def test_cli_json_reports_points_bench_time_and_report(tmp_path, capsys):
    rc = main(["calibrate", "--bench", "sim", "--seed", "3", "--report", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["passed"] is True and out["class"] == "1"
    assert out["worst_error_pct"] < 0.2 and out["bench_seconds"] < 110
    assert {"current_a", "pf", "error_pct", "limit_pct"} <= set(out["points"][0])
    assert sorted(out["report"]) == ["csv", "html", "json", "png", "sig"]
    assert all(os.path.exists(p) for p in out["report"].values())


def test_cli_prints_a_readable_summary_for_people(tmp_path, capsys):
    rc = main(["calibrate", "--bench", "sim", "--seed", "4", "--report", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0
    assert "PASSED (class 1)" in out.out and "Imax PF 0.8C" in out.out and "bench time" in out.out
    assert "verifying" in out.err                        # progress lines go to stderr


def test_cli_says_when_the_meter_does_not_answer(tmp_path, capsys):
    master, slave = os.openpty()
    try:
        with polled(BenchServer(ChipDirectMeter(seed=1))) as srv:
            rc = main(["calibrate", "--port", os.ttyname(slave), "--bench", "sim:" + srv.address,
                       "--timeout", "0.3", "--report", str(tmp_path), "--json"])
    finally:
        os.close(master)
        os.close(slave)
    out = json.loads(capsys.readouterr().out)
    assert rc == 3 and re.search("no reply", out["error"]) and out["kind"] == "DeviceError"
    assert not os.listdir(tmp_path)                     # no certificate for a meter never seen


def test_cli_needs_a_bench_and_a_port_for_a_remote_bench(capsys):
    assert main(["calibrate", "--json"]) == 2
    assert "no bench" in json.loads(capsys.readouterr().out)["error"]
    assert main(["calibrate", "--bench", "sim:127.0.0.1:9", "--json"]) == 2
    assert "--port" in json.loads(capsys.readouterr().out)["error"]


def test_a_point_that_will_not_settle_is_an_error_and_the_meter_keeps_its_calibration():
    m = ChipDirectMeter(seed=3)
    before = dict(m.cal)
    real = m.call
    drift = {"n": 0}

    def drifting(cmd, **args):
        r = real(cmd, **args)
        if cmd == "raw_read" and args["regs"][0] == 0x49:
            drift["n"] += 1
            r["values"][0] += drift["n"] * 20           # Urms creeps up 0.1 % per sample
        return r
    m.call = drifting
    with pytest.raises(SettleError, match="did not settle"):
        run_lab(m, SimBench(m, seed=3), "1", write_report=False)
    assert m.cal == before and m.stored is None
