"""The BL0942 and ADE7953 drivers and the dummy chip against the simulator's register-level models, under
CPython: start-up, readings and their scales, exact energy, faults (silent, garbage, reset) detected,
reported and recovered with energy kept, and the registry's refusal of an unknown chip."""
import json
import math
import random
from pathlib import Path

import pytest

from fakes import EventSink, FakeClock, ModelBus
from host_tools.sim.world.afe import FrontEnd
from host_tools.sim.world.chips import make as make_model
from metering import chip as contract
from metering import registry
from metering.meter import Meter

ROOT = Path(__file__).resolve().parents[1]
METERING = {name: json.loads((ROOT / "boards" / "sim" / "chips" / ("%s.json" % name)).read_text())
            for name in ("bl0942", "ade7953")}


def rig(name, afe_errors=None, seed=1):
    met = METERING[name]
    clock = FakeClock()
    model = make_model(name, random.Random(seed))
    bus = ModelBus(model, clock)
    model.test_bus = bus
    chip = registry.make_chip(met, bus, clock, dict(met["calibration"]))
    events = EventSink()
    meter = Meter(chip, clock, events, met["meter_constant_imp_per_kwh"], registry.max_power_w(met))
    afe = FrontEnd(afe_errors or {}, seed, met)
    return clock, model, chip, meter, events, afe


def load(model, afe, volts, amps, pf=1.0, neutral=None):
    model.test_bus.sync()               # the time so far ran at the old inputs
    phi = math.acos(abs(pf)) * (1 if pf > 0 else -1)
    model.set_inputs(*afe.pins(volts, amps, phi, 50.0, amps if neutral is None else neutral))


def wh(meter):
    return meter.import_wh + meter.import_rem / meter.den


# chip -> energy resolution of one count the chip itself gives out (Wh): a CF pulse, an energy LSB
RESOLUTION_WH = {"bl0942": 1000.0 / 2558, "ade7953": 1000.0 / 24000000}


@pytest.mark.parametrize("name", ["bl0942", "ade7953"])
def test_readings_are_in_the_meter_units(name):
    clock, model, chip, meter, events, afe = rig(name)
    assert meter.begin(), events.items
    load(model, afe, 230.0, 5.0, 0.5)
    clock.advance(1000)
    meter.poll()
    r = meter.reading
    assert abs(r.urms_cv - 23000) <= 5, r.urms_cv
    assert abs(r.irms_ma - 5000) <= 3, r.irms_ma
    assert abs(r.p_w - 575) <= 1, r.p_w
    assert abs(r.pf_milli - 500) <= 2, r.pf_milli
    assert abs(r.freq_chz - 5000) <= 2, r.freq_chz
    if name == "ade7953":
        assert abs(r.irms_n_ma - 5000) <= 3, r.irms_n_ma      # channel B on the neutral CT
    else:
        assert r.irms_n_ma is None                          # the BL0942 has one current channel


@pytest.mark.parametrize("name", ["bl0942", "ade7953"])
@pytest.mark.parametrize("gain", [0.0, 0.03])
def test_an_hour_reads_the_truth_and_a_front_end_3pct_high_reads_3pct_high(name, gain):
    clock, model, chip, meter, events, afe = rig(name, {"current_gain": gain})
    assert meter.begin()
    load(model, afe, 230.0, 10.0)
    for _ in range(3600):
        clock.advance(1000)
        meter.poll()
    truth = 2300.0
    got = wh(meter)
    assert abs(got - truth * (1 + gain)) <= RESOLUTION_WH[name] + 0.001 * gain * truth, (name, gain, got)
    assert "meter_bus_error" not in events.kinds()


@pytest.mark.parametrize("name", ["bl0942", "ade7953"])
def test_export_is_counted_as_export(name):
    clock, model, chip, meter, events, afe = rig(name)
    assert meter.begin()
    model.test_bus.sync()
    model.set_inputs(*afe.pins(230.0, -5.0, 0.0, 50.0, 5.0))
    for _ in range(600):
        clock.advance(1000)
        meter.poll()
    exp = meter.export_wh + meter.export_rem / meter.den
    assert abs(exp - 1150 * 600 / 3600) <= RESOLUTION_WH[name], exp
    assert meter.import_wh == 0


@pytest.mark.parametrize("name", ["bl0942", "ade7953"])
@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_silent_and_garbage_are_reported_recovered_and_lose_no_energy(name, fault):
    clock, model, chip, meter, events, afe = rig(name)
    assert meter.begin()
    load(model, afe, 230.0, 5.0)
    for i in range(600):
        if i == 100:
            model.set_fault(fault)
        if i == 220:
            model.set_fault(None)
        clock.advance(1000)
        meter.poll()
    assert "meter_" + fault in events.kinds(), events.kinds()
    assert "meter_recovered" in events.kinds()
    assert meter.health == contract.OK
    got = wh(meter)
    assert abs(got - 1150 * 600 / 3600) <= RESOLUTION_WH[name] + 1e-6, (name, fault, got)


@pytest.mark.parametrize("name", ["bl0942", "ade7953"])
def test_a_chip_reset_is_detected_and_set_up_again(name):
    clock, model, chip, meter, events, afe = rig(name)
    assert meter.begin()
    load(model, afe, 230.0, 5.0)
    for i in range(300):
        if i == 150:
            model.power_on_reset()
        clock.advance(1000)
        meter.poll()
    assert "meter_reset" in events.kinds(), events.kinds()
    assert meter.health == contract.OK and chip.probe() == contract.OK
    assert meter.export_wh == 0 and meter.export_rem == 0, "the reset's counter restart read as export"
    got = wh(meter)
    # Only what the chip itself dropped at its reset (at most one poll, plus the restart's own wait)
    # is missing.
    assert 0 <= 1150 * 300 / 3600 - got <= 1150 * 2 / 3600 + RESOLUTION_WH[name], got


def test_bl0942_ignores_writes_without_the_unlock_and_frames_with_a_bad_checksum():
    from host_tools.sim.world.chips import bl0942 as m
    model = make_model("bl0942", random.Random(1))
    body = bytes([0x19, 0x0F, 0, 0])
    model.uart(bytes([0xA8]) + body[:1] + body[1:] + bytes([m.checksum(0xA8 + 0x19, body[1:])]), 0)
    assert model.peek(m.MODE) == 0x87, "a locked MODE changed"
    model.uart(bytes([0xA8, 0x1D, 0x55, 0, 0, m.checksum(0xA8 + 0x1D, b"\x55\0\0")]), 0)
    model.uart(bytes([0xA8, 0x19, 0x0F, 0, 0, 0x00]), 0)            # wrong checksum
    assert model.peek(m.MODE) == 0x87, "a write with a bad checksum changed MODE"
    model.uart(bytes([0xA8, 0x19, 0x0F, 0, 0, m.checksum(0xA8 + 0x19, b"\x0f\0\0")]), 0)
    assert model.peek(m.MODE) == 0x0F


def test_bl0942_packet_checksum_matches_the_datasheet_rule():
    model = make_model("bl0942", random.Random(1))
    model.set_inputs(57.5, 2.5, 0.0, 50.0)
    p = model.uart(bytes([0x58, 0xAA]), 23)
    assert len(p) == 23 and p[0] == 0x55
    assert p[22] == ~(0x58 + 0x55 + sum(p[1:22])) & 0xFF


def test_bl0942_overcurrent_threshold_is_set_from_the_design():
    clock, model, chip, meter, events, afe = rig("bl0942")
    assert meter.begin()
    from host_tools.sim.world.chips import bl0942 as m
    # 1.2 x Imax (60 A) on the fast RMS scale: I_FAST_RMS[23:8] >= TH is over-current
    amps = METERING["bl0942"]["imax_a"] * 1.2
    fast = m.I_RMS_K * amps * 0.5 * m.I_FAST_RATIO
    assert abs(model.peek(m.I_FAST_RMS_TH) - fast / 256) <= 2, model.peek(m.I_FAST_RMS_TH)
    assert model.peek(m.OT_FUNX) == 0x24 and model.peek(m.MODE) == 0x0F


def test_ade7953_start_writes_the_unlock_then_0x120_and_locks_the_interface():
    clock, model, chip, meter, events, afe = rig("ade7953")
    assert meter.begin()
    from host_tools.sim.world.chips import ade7953 as m
    assert model.peek(m.RESERVED_120) == 0x30
    assert model.peek(m.CONFIG) & 0x8000 == 0, "COMM_LOCK still set"
    assert model.peek(m.CF1DEN) == 7500
    # 0x120 written without the 0xAD before it is ignored by the chip
    model.power_on_reset()
    model.poke(m.RESERVED_120, 0x30)
    assert model.peek(m.RESERVED_120) == 0


def test_ade7953_line_cycle_mode_gives_the_energy_of_whole_half_cycles():
    clock, model, chip, meter, events, afe = rig("ade7953")
    assert meter.begin()
    load(model, afe, 230.0, 10.0)
    e = chip.line_cycle_energy(100)                    # 100 half cycles = 1 s at 50 Hz
    assert abs(e - 2300 * 24000000 / 3.6e6) <= 2300 * 24000000 / 3.6e6 * 1e-3, e


def test_the_dummy_chip_meters_its_script_without_a_bus():
    clock = FakeClock()
    chip = registry.make_chip({"chip": "dummy", "script": [[60, 1200, 23000, 5217], [60, 0, 23000, 0]]},
                              None, clock, {})
    events = EventSink()
    meter = Meter(chip, clock, events, 1000, 20000)
    assert meter.begin()
    for _ in range(240):
        clock.advance(1000)
        meter.poll()
    assert wh(meter) == pytest.approx(1200 * 120 / 3600, abs=1e-9)
    chip.fault = "silent"
    clock.advance(1000)
    meter.poll()
    assert meter.health == contract.SILENT and "meter_silent" in events.kinds()


def test_an_unknown_chip_fails_at_boot_without_a_crash_and_stays_failed():
    clock = FakeClock()
    events = EventSink()
    chip = registry.make_chip({"chip": "hlw8032"}, None, clock, {})
    meter = Meter(chip, clock, events, 1000, 20000)
    assert meter.begin() is False
    assert meter.health == contract.FAILED
    kinds = events.kinds()
    assert kinds == ["meter_failed"], kinds
    assert "hlw8032" in events.items[0][1]["detail"] and "known:" in events.items[0][1]["detail"]
    for _ in range(5):
        clock.advance(1000)
        meter.poll()
    assert events.kinds() == ["meter_failed"], "reported more than once"
    assert meter.readings()["health"] == "failed" and meter.import_wh == 0
    with pytest.raises(ValueError, match="unknown metering chip"):
        chip.check_cal("x", 1)


def test_the_registry_is_a_table_and_the_meter_names_no_chip():
    src = (ROOT / "firmware" / "metering" / "meter.py").read_text().lower()
    for name in ("atm90e26", "bl0942", "ade7953", "65536"):
        assert name not in src, "meter.py names %s" % name
    reg = (ROOT / "firmware" / "metering" / "registry.py").read_text()
    assert "if name ==" not in reg
    assert set(registry.DRIVERS) >= {"atm90e26", "bl0942", "ade7953", "dummy"}
