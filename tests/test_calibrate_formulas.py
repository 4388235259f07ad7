"""The ATM90E26 calibration arithmetic against AN26's worked examples and against the simulated chip
used directly (no firmware, no bench): registers computed from measured errors make the chip read true."""
import math
import random

import pytest

from host_tools.calibrate import classes
from host_tools.calibrate import formulas as F
from host_tools.calibrate.target import HighRateOutput
from host_tools.sim.world.chips.atm90e26 import ATM90E26

DESIGN = {"un_v": 230, "ib_a": 10, "imax_a": 80, "f_hz": 50, "meter_constant_imp_per_kwh": 3200,
          "front_end": {"shunt_uohm": 250, "divider_ratio": 1000, "neutral_ct_ratio": 2000,
                        "neutral_burden_ohm": 2.0}}
MMODE = 0x7422          # the board's: L PGA 24, N PGA 1


def test_pl_constant_matches_an26_example_and_the_board():
    an26 = {"un_v": 220, "ib_a": 5, "meter_constant_imp_per_kwh": 3200,
            "front_end": {"shunt_uohm": 200, "divider_ratio": 880, "neutral_ct_ratio": 1, "neutral_burden_ohm": 1}}
    assert F.pl_constant(an26, MMODE) == 1429876 == 0x15D174
    assert F.pl_constant(DESIGN, MMODE) == 24 << 16


def test_start_threshold_matches_an26_default():
    assert F.threshold(MMODE, 1.0, 250.0, 0.004) == 0x08BD


def test_lgain_and_lphi_match_an26_examples():
    assert F.lgain_for(0, -0.1378) == 0x1475
    g, d = F.split_gain_phase(0.0, 0.0095)
    assert F.phi_for("Lphi", 0, d, 50) == 0x24


def test_offsets_match_the_documented_examples():
    assert F.s16(F.rms_offset("IoffsetL", 12.0, 31251)) == -17579
    assert F.power_offset("PoffsetL", F.s16(0xFFCB)) == 0x35


def test_reading_with_lsb_fraction():
    assert F.with_fraction(1000, 0x8000) == 1000 - 0.5
    assert F.with_fraction(0xFFFF, 0x4000, signed=True) == -1 + 0.25


def test_out_of_range_corrections_raise_with_reasons():
    with pytest.raises(F.RangeProblem, match="bit 15"):
        F.rms_gain("Ugain", 26400, 230.0, 230.0 * 0.75)
    with pytest.raises(F.RangeProblem, match="Lgain"):
        F.lgain_for(0, -0.7)
    assert F.rms_gain("IgainL", 31251, 10000, 10500) == round(31251 / 1.05)


# -- against the chip model -------------------------------------------------------------------------

def _chip(**params):
    c = ATM90E26(random.Random(1), params or None)
    c.poke("CalStart", 0x5678)
    c.poke("PLconstH", 24)
    c.poke("PLconstL", 0)
    c.poke("MMode", MMODE)
    c.poke("PStartTh", 0)
    c.poke("AdjStart", 0x5678)
    return c


def _energy_error(chip, gain, lag_deg, pf, amps=10.0, hours=10.0):
    """Chip energy (CF pulses over many hours) against the truth for a front end with this gain error
    and extra lag."""
    phi = math.acos(abs(pf)) * (1 if pf > 0 else -1)
    chip.set_inputs(230.0, 0.25 * amps * (1 + gain), phi + math.radians(lag_deg), 50.0)
    c0 = chip.cf_pulses
    chip.advance(hours * 3600)
    true_wh = 230.0 * amps * abs(pf) * hours
    return (chip.cf_pulses - c0) / 3.2 / true_wh - 1


@pytest.mark.parametrize("gain,lag", [(0.05, 0.8), (-0.04, -1.0), (0.0, 0.3)])
def test_gain_and_phase_from_two_errors_correct_the_chip_at_every_power_factor(gain, lag):
    chip = _chip()
    e1 = _energy_error(chip, gain, lag, 1.0)
    e05 = _energy_error(chip, gain, lag, 0.5)
    assert abs(e1) > 0.003 or abs(e05) > 0.003          # uncalibrated: clearly wrong
    g, d = F.split_gain_phase(e1, e05)
    assert g == pytest.approx(gain, abs=2e-4)
    assert math.degrees(d) == pytest.approx(lag, abs=0.01)
    chip.poke("Lgain", F.lgain_for(0, g))
    chip.poke("Lphi", F.phi_for("Lphi", 0, d, 50.0))
    for pf in (1.0, 0.5, -0.8):
        assert abs(_energy_error(chip, gain, lag, pf)) < 3e-4, pf


def test_rms_gains_make_the_chip_read_true():
    chip = _chip()
    chip.set_inputs(230.0 * 1.03, 2.5 * 0.96, 0.0, 50.0, 10.0 * 1.02, 0.0)
    u, i, n = chip.peek(0x49), chip.peek(0x48), chip.peek(0x68)
    chip.poke("Ugain", F.rms_gain("Ugain", 26400, 23000, u))
    chip.poke("IgainL", F.rms_gain("IgainL", 31251, 10000, i))
    chip.poke("IgainN", F.rms_gain("IgainN", 30000, 10000, n))
    chip.advance(1)
    assert abs(chip.peek(0x49) - 23000) <= 2
    assert abs(chip.peek(0x48) - 10000) <= 2
    assert abs(chip.peek(0x68) - 10000) <= 2


def test_current_offset_removes_the_adc_floor():
    chip = _chip(noise_lsb=0.0, il_floor_mv=0.003)       # 12 mA at the default gain
    chip.set_inputs(230.0, 0.0, 0.0, 50.0)
    floor = chip.peek(0x48)
    assert floor == 12
    chip.poke("IoffsetL", F.rms_offset("IoffsetL", floor, 31251))
    chip.advance(1)
    assert chip.peek(0x48) == 0


def test_power_offset_from_small_power_mode_cancels_crosstalk():
    chip = _chip(noise_lsb=0.0)
    # 0.0002 mV of in-phase crosstalk at the current pin: about 0.18 W that is not there.
    chip.set_inputs(230.0, 0.0002, 0.0, 50.0)
    chip.poke("SmallPMod", 0xA987)
    chip.advance(1)
    small = F.s16(chip.peek(0x4A))
    assert small > 50
    chip.poke("PoffsetL", F.power_offset("PoffsetL", small))
    chip.advance(1)
    assert abs(F.s16(chip.peek(0x4A))) <= 1
    chip.poke("SmallPMod", 0)


def test_high_rate_output_keeps_the_relative_error_of_normal_mode():
    """PL/64 and 64x the power offset: the same error at 5 % Ib as in normal mode, 64x the pulses."""
    out = HighRateOutput(64, 24 << 16, 3200)
    assert out.test_constant == 204800
    view = out.view({"PoffsetL": F.u16(-90), "Lgain": 100})
    assert F.s16(view["PoffsetL"]) == -90 * 64 and view["Lgain"] == 100
    assert (view["PLconstH"] << 16 | view["PLconstL"]) == (24 << 16) // 64

    chip = _chip(noise_lsb=0.0)
    chip.set_inputs(230.0, 0.0002, 0.0, 50.0)               # crosstalk only
    chip.poke("SmallPMod", 0xA987)
    poff = F.power_offset("PoffsetL", F.s16(chip.peek(0x4A)))
    regs = {"PoffsetL": poff}

    def error(regs, mc):
        chip = _chip()
        for k, v in regs.items():
            chip.poke(k, v)
        chip.set_inputs(230.0, 0.125 + 0.0002, 0.0, 50.0)   # 5 % Ib plus the crosstalk
        c0 = chip.cf_pulses
        chip.advance(360000)
        return (chip.cf_pulses - c0) * 1000.0 / mc / (230.0 * 0.5 * 100) - 1
    uncorrected = error({}, 3200)
    normal = error(out.normal(regs), 3200)
    fast = error(out.view(regs), out.test_constant)
    assert uncorrected > 1e-3                               # the crosstalk matters at 5 % Ib
    assert abs(normal) < 1e-4
    assert fast == pytest.approx(normal, abs=3e-5)


def test_class_table_limits_and_points():
    assert classes.limit_pct("1", 0.05, 1.0) == 1.5
    assert classes.limit_pct("1", 0.05, 0.5) is None
    assert classes.limit_pct("1", 8.0, -0.8) == 1.0
    assert classes.limit_pct("0.2", 1.0, 1.0) == 0.2
    pts = classes.plan_points("1", 10, 80)
    assert len(pts) == 16 and pts[0][0] == "5% Ib PF 1" and pts[5][1] == 80
    assert len(classes.plan_points("0.5", 10, 80)) == 18
    assert classes.creep_seconds("1", 3200, 230, 80) == pytest.approx(611.4, abs=0.1)


from hypothesis import given, strategies as st  # noqa: E402


@given(st.floats(-0.2, 0.2), st.floats(-3.0, 3.0))
def test_gain_and_phase_split_recovers_any_front_end(gain, lag_deg):
    d = math.radians(lag_deg)
    e1 = (1 + gain) * math.cos(d) - 1
    e05 = (1 + gain) * math.cos(math.pi / 3 + d) / 0.5 - 1
    g, dd = F.split_gain_phase(e1, e05)
    assert g == pytest.approx(gain, abs=1e-9) and dd == pytest.approx(d, abs=1e-9)


@given(st.integers(-20000, 20000), st.floats(-0.3, 0.3))
def test_lgain_refinement_composes(start, err):
    """Correcting from any start value gives the same chip gain as correcting from zero."""
    total = (1 + start / 32768.0) / (1 + err)
    if not 0.0 < total < 1 + 32767.5 / 32768:
        with pytest.raises(F.RangeProblem):
            F.lgain_for(F.u16(start), err)
        return
    new = F.s16(F.lgain_for(F.u16(start), err))
    assert abs((1 + new / 32768.0) - total) <= 0.5 / 32768 + 1e-12
    assert F.lgain_for(F.u16(start), 0.0) == F.u16(start)
