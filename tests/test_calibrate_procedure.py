"""The calibration procedure's decisions on the chip-direct meter (no firmware, milliseconds each):
an ideal front end stays nominal, crosstalk lowers the test output instead of saturating, a meter
that creeps fails verification with that reason, the stretch class, and a meter that stops
answering half-way keeps its stored calibration."""
import pytest

from host_tools.calibrate import formulas as F
from host_tools.calibrate.bench.sim import SimBench
from host_tools.calibrate.lab import run_lab
from host_tools.errors import DeviceError
from test_calibrate_fixtures import ChipDirectMeter


def _crosstalk(mv):
    return {"name": "crosstalk", "errors": {"current_gain": 0.03, "voltage_gain": -0.02, "current_phase_deg": 0.5,
                                            "crosstalk_inphase_mv": mv, "noise_rel": 5e-5}}


def _lab(afe, seed=9, cls="1"):
    m = ChipDirectMeter(seed=seed, afe=afe)
    return m, run_lab(m, SimBench(m, seed=seed), cls, write_report=False)


def test_ideal_front_end_keeps_nominal_registers():
    m, res = _lab("ideal")
    regs = res["calibration"]["registers"]
    assert res["passed"]
    assert abs(regs["Ugain"] - 26400) <= 3 and abs(regs["IgainL"] - 31251) <= 4
    # Only the reference error (+-0.01 %) and the gates' 1 ms edge timing (< 0.034 % in 3 s) remain.
    assert abs(F.s16(regs["Lgain"])) <= 15 and abs(F.s16(regs["Lphi"])) <= 6
    assert res["worst_error_pct"] < 0.1


def test_crosstalk_lowers_the_test_output_and_is_corrected():
    m, res = _lab(_crosstalk(0.003))
    assert res["passed"] and res["worst_error_pct"] < 0.2
    assert res["test_output"]["factor"] < 64 == res["test_output"]["requested_factor"]
    assert "slower test output" in res["calibration"]["steps"]["test_output_reduced"]
    assert F.s16(res["calibration"]["registers"]["PoffsetL"]) < -1000                # about 2.8 W corrected


def test_a_meter_that_creeps_fails_verification_with_that_reason():
    m, res = _lab(_crosstalk(0.02))
    assert res["status"] == "FAILED" and "no-load creep" in res["reason"]
    assert res["creep"]["pulses"] > 1 and all(p["passed"] for p in res["points"])
    assert any("IoffsetL at its limit" in w for w in res["calibration"]["warnings"])
    assert m.stored is None                                                        # nothing stored


def test_typical_meter_meets_the_stretch_class_0_2():
    m, res = _lab("typical", seed=12, cls="0.2")
    assert res["passed"] and len(res["points"]) == 18
    assert res["starting"]["fraction_ib"] == 0.001 and res["worst_error_pct"] < 0.2


def test_a_meter_that_stops_answering_half_way_keeps_its_stored_calibration():
    m = ChipDirectMeter(seed=3)
    m.call("cal_set", cal={"Lgain": 77})                   # a previous calibration, stored
    real = m.call
    count = {"n": 0}

    def flaky(cmd, **args):
        count["n"] += 1
        if count["n"] > 12:
            raise DeviceError("no reply from the meter")
        return real(cmd, **args)
    m.call = flaky
    with pytest.raises(DeviceError, match="no reply"):
        run_lab(m, SimBench(m, seed=3), "1", write_report=False)
    assert m.stored["Lgain"] == 77
    m.reboot()                                             # power cycle: the stored calibration is back
    assert m.cal["Lgain"] == 77 and (m.cal["PLconstH"], m.cal["PLconstL"]) == (24, 0)
