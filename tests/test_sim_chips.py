"""The same firmware against each chip model in the simulated world (`sim run --chip`): an ideal front
end reads the truth to within the chip's resolution, a front end 3 % high reads 3 % high, faults are
detected, reported and recovered with energy kept; and `meterkit calibrate` takes the BL0942 and the
ADE7953 meters to class 1 at every IEC point, their calibration kept in flash."""
import pytest

from host_tools.calibrate.bench.sim import SimBench
from host_tools.calibrate.lab import run_lab
from host_tools.calibrate.target import SimService
from host_tools.sim.run import METERING_PREPAID, run
from host_tools.sim.esp32.runner import SimMeter

# Energy of the smallest count each chip's driver gives the meter, plus the part of a count a chip
# still holds when the run stops (Wh).
RESOLUTION_WH = {"atm90e26": 1 / 32.0, "bl0942": 1000 / 2558.0, "ade7953": 0.01}
DAYS = 0.5          # the 30-day figure is in `make bench` (sim_30d_wall_seconds per chip)


@pytest.mark.parametrize("chip", ["atm90e26", "bl0942", "ade7953"])
def test_an_ideal_front_end_reads_the_truth_within_the_chip_resolution(chip):
    r = run(days=DAYS, seed=3, afe="ideal", period_s=60, chip=chip)
    assert r["chip"] == chip
    assert r["true_import_wh"] > 500, r
    gap = r["true_import_wh"] - r["meter_import_wh"]
    assert -0.001 <= gap <= RESOLUTION_WH[chip], (chip, r["true_import_wh"], r["meter_import_wh"])
    assert r["events"].get("meter_bus_error", 0) == 0, r["events"]


@pytest.mark.parametrize("chip", ["bl0942", "ade7953"])
def test_a_front_end_3pct_high_reads_3pct_high(chip):
    r = run(days=DAYS, seed=3, afe="gain_plus_3pct", period_s=60, chip=chip)
    assert abs(r["error_pct"] - 3.0) <= 0.05, (chip, r["error_pct"])


@pytest.mark.parametrize("chip", ["bl0942", "ade7953"])
def test_chip_faults_are_reported_and_recovered_with_energy_kept(chip):
    faults = ["silent@3600+300", "garbage@7200+300", "reset@10800"]
    r = run(days=0.25, seed=3, afe="ideal", period_s=10, chip=chip, faults=faults)
    ev = r["events"]
    for kind in ("meter_silent", "meter_garbage", "meter_reset"):
        assert ev.get(kind) == 1, (chip, kind, ev)
    assert ev.get("meter_recovered", 0) >= 3, (chip, ev)
    assert r["meter_export_wh"] == 0, (chip, r["meter_export_wh"])
    gap = r["true_import_wh"] - r["meter_import_wh"]
    # Silent and garbage lose nothing (the chip keeps counting); the reset loses what the chip held
    # since the last poll (10 s) and its restart.
    assert -0.001 <= gap <= r["true_import_wh"] / (0.25 * 86400) * 12 + RESOLUTION_WH[chip], (chip, gap)


def test_an_unknown_chip_in_the_board_description_boots_with_metering_failed(tmp_path):
    import json
    m = SimMeter(seed=1, afe="ideal", profile="constant", settings={"meter_period_s": 1}, workdir=tmp_path)
    try:
        m.info["metering"]["chip"] = "hlw8032"
        m.board_json = tmp_path / "board.json"
        m.board_json.write_text(json.dumps(m.info))
        m.run_for(5)
        readings = m.request("readings")
        assert readings["health"] == "failed", readings
        kinds = [e[2] for e in m.request("events")["events"]]
        assert kinds.count("meter_failed") == 1, kinds
        assert m.request("status")["ok"]        # the meter answers: it did not crash
    finally:
        m.close()


@pytest.mark.parametrize("chip, afe, seed", [("ade7953", "typical", 4), ("bl0942", "shunt_matched", 4)])
def test_calibrate_takes_the_meter_to_class_1_at_every_point(tmp_path, chip, afe, seed):
    m = SimMeter(seed=seed, afe=afe, profile="constant", settings={"meter_period_s": 1}, chip=chip)
    try:
        m.run_for(1)
        res = run_lab(SimService(m), SimBench(m, seed=seed), "1", report_dir=tmp_path, meter_name=chip)
        assert res["chip"] == chip
        assert res["status"] == "PASSED", (res["reason"], res["calibration"]["problems"])
        assert len(res["points"]) == 16 and all(p["passed"] for p in res["points"])
        worst = max(abs(p["error_pct"]) for p in res["points"])
        assert worst <= 0.3, (chip, worst)
        assert res["stored_in_meter"]
        cal = m.request("cal_get")
        assert cal["calibrated"] and cal["cal"] == res["registers_after"]
    finally:
        m.close()


@pytest.mark.parametrize("chip, flagged", [("ade7953", True), ("bl0942", False)])
def test_the_neutral_channel_feeds_the_tamper_check(chip, flagged):
    """ADE7953: channel B on the neutral CT sees a wire around the line shunt. BL0942: no neutral
    channel, so no imbalance can be seen (and none is invented); reverse energy still is."""
    load = {"kind": "constant", "name": "steady", "watts": 2000, "pf": 1.0}
    m = SimMeter(seed=1, profile=load, afe="ideal", chip=chip,
                 settings={"meter_period_s": 1, "prepaid": METERING_PREPAID})
    try:
        m.run_for(60)
        m.world.tamper(bypass=0.6)
        m.run_for(90)
        ev = [e[3] for e in m.request("events")["events"] if e[2] == "tamper"]
        kinds = [e["kind"] for e in ev]
        assert (kinds == ["imbalance"]) == flagged, (chip, ev)
        if flagged:
            assert ev[0]["side"] == "neutral" and ev[0]["neutral_ma"] > 2 * ev[0]["line_ma"], ev
        m.world.tamper(bypass=0.0, line_reversed=True)
        m.run_for(600)
        kinds = [e[3]["kind"] for e in m.request("events")["events"] if e[2] == "tamper"]
        assert "reverse" in kinds, (chip, kinds)
    finally:
        m.close()


def test_ade7953_model_has_one_storage_for_the_24_and_32_bit_views():
    import random

    from host_tools.sim.world.chips.ade7953 import ADE7953
    c = ADE7953(random.Random(1), {"noise_rel": 0.0})
    c.set_inputs(230.0, 2.5, 3.14159265, 50.0)                # export: AWATT negative
    v24, v32 = c.peek(0x212), c.peek(0x312)
    assert v24 & 0x800000 and v32 == v24 | 0xFF000000, (hex(v24), hex(v32))
    c.poke(0x282, 0x500000)                                    # AWGAIN through its 24-bit address
    assert c.peek(0x382) == 0x500000                           # unsigned: no sign extension


@pytest.mark.parametrize("chip", ["bl0942", "ade7953"])
def test_chip_models_take_their_parameters_from_json_and_refuse_unknown_ones(tmp_path, chip):
    import json
    import random

    from host_tools.sim.world.chips import MODELS
    import importlib
    cls = getattr(importlib.import_module(MODELS[chip][0]), MODELS[chip][1])
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"params": {"noise_rel": 0.0}}))
    assert cls.from_json(str(f), random.Random(1)).params["noise_rel"] == 0.0
    with pytest.raises(ValueError, match="unknown"):
        cls(random.Random(1), {"noise": 1})
