"""The analog front end: ideal is exact, named profiles do what they say, typical is seeded."""
import json
import math

import pytest

from host_tools.errors import UsageError
from host_tools.paths import BOARDS
from host_tools.sim.world.afe import FrontEnd

BOARD = json.loads((BOARDS / "sim" / "board.json").read_text())["metering"]


@pytest.mark.parametrize("volts,amps,phi", [(230.0, 10.0, 0.0), (207.0, 0.04, 0.3), (253.0, 80.0, -0.7)])
def test_ideal_front_end_is_exact(volts, amps, phi):
    fe = FrontEnd.named("ideal", 123, BOARD)
    v, i, p, f, n, nphi = fe.pins(volts, amps, phi, 50.0)
    assert v == pytest.approx(volts, rel=1e-15)          # 1000:1 divider: 1 V -> 1 mV
    assert i == pytest.approx(amps * 0.25, rel=1e-15)    # 250 uOhm: 1 A -> 0.25 mV
    assert n == pytest.approx(amps, rel=1e-15)           # 2000:1 CT into 2 Ohm: 1 A -> 1 mV
    assert p == phi and nphi == phi and f == 50.0


def test_gain_plus_3pct_changes_only_the_current_gain():
    fe = FrontEnd.named("gain_plus_3pct", 9, BOARD)
    v, i, p, f, n, nphi = fe.pins(230.0, 10.0, 0.5, 50.0)
    assert i == pytest.approx(2.575, rel=1e-12)
    assert v == pytest.approx(230.0, rel=1e-15) and n == pytest.approx(10.0, rel=1e-15)
    assert p == 0.5 and nphi == 0.5
    assert {k for k, val in fe.params.items() if val} == {"current_gain"}


def test_typical_draws_different_errors_per_seed_and_same_for_same_seed():
    a = FrontEnd.named("typical", 1, BOARD)
    b = FrontEnd.named("typical", 1, BOARD)
    c = FrontEnd.named("typical", 2, BOARD)
    assert a.params == b.params
    assert a.params != c.params
    assert a.pins(230.0, 10.0, 0.2, 50.0) == b.pins(230.0, 10.0, 0.2, 50.0)


def test_typical_errors_stay_within_stated_tolerances():
    for seed in range(200):
        p = FrontEnd.named("typical", seed, BOARD).params
        assert abs(p["current_gain"]) <= 0.05
        assert abs(p["voltage_gain"]) <= 0.03
        assert abs(p["current_phase_deg"]) <= 1.0
        assert abs(p["crosstalk_inphase_mv"]) <= 0.0002


def test_typical_spread_covers_the_tolerance_band():
    gains = [FrontEnd.named("typical", s, BOARD).params["current_gain"] for s in range(200)]
    assert min(gains) < -0.04 and max(gains) > 0.04


def test_crosstalk_gives_a_current_at_no_load_that_scales_with_voltage():
    fe = FrontEnd({"crosstalk_inphase_mv": 0.0002}, 0, BOARD)
    v, i, p, *_ = fe.pins(230.0, 0.0, 0.0, 50.0)
    assert i == pytest.approx(0.0002) and p == pytest.approx(0.0)
    _, i_half, *_ = fe.pins(115.0, 0.0, 0.0, 50.0)
    assert i_half == pytest.approx(0.0001)


def test_phase_error_adds_lag_at_the_pin():
    fe = FrontEnd({"current_phase_deg": 0.5}, 0, BOARD)
    _, _, p, *_ = fe.pins(230.0, 10.0, math.radians(60), 50.0)
    assert p == pytest.approx(math.radians(60.5))


def test_negative_amps_is_export_by_half_a_turn():
    fe = FrontEnd.named("ideal", 0, BOARD)
    _, i, p, *_ = fe.pins(230.0, -10.0, 0.0, 50.0)
    assert i == pytest.approx(2.5) and abs(p) == pytest.approx(math.pi)


def test_neutral_current_can_differ_from_line_current():
    fe = FrontEnd.named("ideal", 0, BOARD)
    *_, n, _ = fe.pins(230.0, 10.0, 0.0, 50.0, neutral_amps=3.0)
    assert n == pytest.approx(3.0)


def test_uncorrectable_profile_is_outside_register_range():
    p = FrontEnd.named("uncorrectable", 0, BOARD).params
    assert 26400 / (1 + p["voltage_gain"]) > 32767        # Ugain would need bit 15
    assert 1 / (1 + p["current_gain"]) >= 2.0             # Lgain reaches at most 2x


def test_from_json_path_and_dict_agree(tmp_path):
    obj = {"name": "mine", "errors": {"current_gain": {"normal": [0.0, 0.01]}, "voltage_gain": 0.01}}
    path = tmp_path / "fe.json"
    path.write_text(json.dumps(obj))
    assert FrontEnd.from_json(path, 5, BOARD).params == FrontEnd.from_json(obj, 5, BOARD).params


def test_unknown_error_term_and_unknown_name_are_usage_errors():
    with pytest.raises(UsageError):
        FrontEnd({"shunt_drift": 0.1}, 0, BOARD)
    with pytest.raises(UsageError) as e:
        FrontEnd.named("perfect", 0, BOARD)
    assert "ideal" in e.value.hint
