"""The ATM90E26 driver against the simulator's register-level chip model, under CPython."""
import random

import pytest

from fakes import EventSink, FakeClock, ModelBus
from host_tools.sim.world.chips.atm90e26 import ATM90E26 as ChipModel
from metering.chips import atm90e26 as drv
from metering.meter import Meter

BOARD_CAL = {
    "PLconstH": 24, "PLconstL": 0, "Lgain": 0, "Lphi": 0, "Ngain": 0, "Nphi": 0,
    "PStartTh": 5145, "PNolTh": 4096, "QStartTh": 5145, "QNolTh": 4096, "MMode": 0x7422,
    "Ugain": 26400, "IgainL": 31251, "IgainN": 30000, "Uoffset": 0, "IoffsetL": 0, "IoffsetN": 0,
    "PoffsetL": 0, "QoffsetL": 0, "PoffsetN": 0, "QoffsetN": 0,
}


def make(start_ms=0, seed=1):
    clock = FakeClock(ms=start_ms)
    model = ChipModel(random.Random(seed))
    bus = ModelBus(model, clock)
    chip = drv.ATM90E26(bus, clock, dict(BOARD_CAL))
    return clock, model, bus, chip


def set_load(model, volts, amps, pf=1.0):
    import math
    model.set_inputs(volts, amps * 0.25, math.acos(pf), 50.0, amps, math.acos(pf))


def test_checksum_vectors_from_the_reference():
    defaults_cal = [0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422]
    assert drv.checksum(defaults_cal) == 0x55CB
    cal = list(defaults_cal)
    cal[0], cal[1], cal[2] = 0x00B9, 0xC1F3, 0x1D39
    assert drv.checksum(cal) == 0x4A34
    adj = [0x6720, 0x7A13, 0x7530, 0, 0, 0, 0, 0, 0, 0]
    assert drv.checksum(adj) == 0x6BB9
    adj[0], adj[1] = 0xD464, 0x6E49
    assert drv.checksum(adj) == 0xD294


def test_start_loads_calibration_and_chip_accepts_checksums():
    clock, model, bus, chip = make()
    chip.start()
    assert model.peek(0x20) == 0x8765 and model.peek(0x30) == 0x8765
    assert model.peek(0x2C) == drv.checksum([BOARD_CAL[n] for n in drv.CAL_REGS])
    assert model.peek(0x2B) == 0x7422
    assert chip.probe() == drv.OK


def test_start_raises_when_no_chip_answers():
    clock, model, bus, chip = make()
    model.set_fault("silent")
    with pytest.raises(drv.ChipError):
        chip.start()


def test_probe_classifies_faults():
    clock, model, bus, chip = make()
    chip.start()
    model.set_fault("silent")
    assert chip.probe() == drv.SILENT
    model.set_fault("garbage")
    assert chip.probe() == drv.GARBAGE
    model.set_fault(None)
    assert chip.probe() == drv.OK
    model.power_on_reset()
    assert chip.probe() == drv.RESET


def test_poll_decodes_readings_with_their_encodings():
    clock, model, bus, chip = make()
    chip.start()
    set_load(model, 230.0, 10.0, 0.5)
    clock.advance(1000)
    chip.poll()
    assert chip.readings.urms_cv == 23000
    assert chip.readings.irms_ma == 10000
    assert chip.readings.p_w == 1150
    assert chip.readings.pf_milli == 500
    assert chip.readings.freq_chz == 5000
    assert abs(chip.readings.angle_dd - 600) <= 1
    # Export: negative power in two's complement, negative PF in sign-magnitude.
    import math
    model.set_inputs(230.0, 2.5, math.pi, 50.0, 10.0, math.pi)
    clock.advance(1000)
    chip.poll()
    assert chip.readings.p_w == -2300
    assert chip.readings.pf_milli == -1000


def test_energy_is_exact_to_the_count_and_lastdata_confirms():
    clock, model, bus, chip = make()
    events = EventSink()
    meter = Meter(chip, clock, events, 3200, 230 * 117 // 100 * 80)
    assert meter.begin()
    set_load(model, 230.0, 10.0, 1.0)
    for _ in range(3600):        # one hour, polled every second
        clock.advance(1000)
        meter.poll()
    wh = meter.import_wh + meter.import_rem / meter.den
    assert abs(wh - 2300.0) <= 1 / 32.0   # one 0.1-pulse count
    assert "meter_bus_error" not in events.kinds()


@pytest.mark.parametrize("start", [0, (1 << 30) - 30000])
def test_late_read_beyond_the_register_wrap_restores_the_lost_turns(start):
    clock, model, bus, chip = make(start_ms=start)
    events = EventSink()
    meter = Meter(chip, clock, events, 3200, 230 * 117 // 100 * 80)
    assert meter.begin()
    set_load(model, 230.0, 80.0, 1.0)   # 18.4 kW: the 16-bit register wraps after ~400 s
    clock.advance(1000)
    meter.poll()
    before = meter.import_wh + meter.import_rem / meter.den
    clock.advance(1000 * 1000)          # a read 1000 s late (past a tick wrap when start is near 2**30)
    meter.poll()
    got = meter.import_wh + meter.import_rem / meter.den - before
    assert abs(got - 18400 * 1000 / 3600) < 1.0
    assert "meter_energy_unwrapped" in events.kinds()


def test_silent_and_garbage_faults_lose_no_energy():
    for fault in ("silent", "garbage"):
        clock, model, bus, chip = make()
        events = EventSink()
        meter = Meter(chip, clock, events, 3200, 21528)
        assert meter.begin()
        set_load(model, 230.0, 5.0, 1.0)
        for i in range(600):
            if i == 100:
                model.set_fault(fault)
            if i == 220:
                model.set_fault(None)
            clock.advance(1000)
            meter.poll()
        wh = meter.import_wh + meter.import_rem / meter.den
        assert abs(wh - 1150 * 600 / 3600) <= 1 / 32.0, fault
        assert "meter_" + fault in events.kinds()
        assert "meter_recovered" in events.kinds()


def test_chip_reset_is_detected_and_recalibrated_within_one_poll():
    clock, model, bus, chip = make()
    events = EventSink()
    cal = dict(BOARD_CAL, Lgain=123)
    chip.cal.update(cal)
    meter = Meter(chip, clock, events, 3200, 21528)
    assert meter.begin()
    set_load(model, 230.0, 5.0, 1.0)
    for i in range(300):
        if i == 150:
            model.power_on_reset()
        clock.advance(1000)
        meter.poll()
    assert "meter_reset" in events.kinds()
    assert model.peek(0x23) == 123          # the stored calibration was loaded again
    assert chip.probe() == drv.OK
    wh = meter.import_wh + meter.import_rem / meter.den
    # Only what the chip itself dropped at its reset (at most one poll period) is missing.
    expected = 1150 * 300 / 3600 * (1 + 123 / 32768)
    assert -1 / 32.0 <= expected - wh <= 1150 * 1 / 3600 + 1 / 32.0
