"""The ATM90E26 register-level model: bus framing, checksums, calibration, energy and faults."""
import json
import math
import random

import pytest

from host_tools.paths import BOARDS
from host_tools.sim.world.afe import FrontEnd
from host_tools.sim.world.chips import atm90e26 as m
from host_tools.sim.world.chips.atm90e26 import ADDR, ATM90E26

BOARD = json.loads((BOARDS / "sim" / "board.json").read_text())["metering"]
CAL = BOARD["calibration"]
CAL_NAMES = ["PLconstH", "PLconstL", "Lgain", "Lphi", "Ngain", "Nphi", "PStartTh", "PNolTh", "QStartTh",
             "QNolTh", "MMode"]
ADJ_NAMES = ["Ugain", "IgainL", "IgainN", "Uoffset", "IoffsetL", "IoffsetN", "PoffsetL", "QoffsetL",
             "PoffsetN", "QoffsetN"]
LSB_WS = 3.6e6 / 3200 / 10          # watt-seconds per 0.1-pulse energy LSB (1/32 Wh)


def wr(chip, name, value):
    addr = ADDR[name] if isinstance(name, str) else name
    buf = bytearray([addr & 0x7F, (value >> 8) & 0xFF, value & 0xFF])
    chip.transfer(buf)
    return bytes(buf)


def rd(chip, name):
    addr = ADDR[name] if isinstance(name, str) else name
    buf = bytearray([0x80 | addr, 0, 0])
    chip.transfer(buf)
    return (buf[1] << 8) | buf[2]


def s16(x):
    return x - 0x10000 if x & 0x8000 else x


def init(chip, cal=None, adj=None, cs1=None, cs2=None):
    """The reference's init sequence (section 1.3); returns SysStatus read at the end."""
    values = dict(CAL)
    values.update(cal or {})
    values.update(adj or {})
    wr(chip, "SoftReset", 0x789A)
    wr(chip, "CalStart", 0x5678)
    for n in CAL_NAMES:
        wr(chip, n, values[n] & 0xFFFF)
    wr(chip, "CS1", rd(chip, "CS1") if cs1 is None else cs1)
    wr(chip, "AdjStart", 0x5678)
    for n in ADJ_NAMES:
        wr(chip, n, values[n] & 0xFFFF)
    wr(chip, "CS2", rd(chip, "CS2") if cs2 is None else cs2)
    wr(chip, "CalStart", 0x8765)
    wr(chip, "AdjStart", 0x8765)
    return rd(chip, "SysStatus")


@pytest.fixture
def chip():
    c = ATM90E26(random.Random(42))
    assert init(c) == 0
    return c


def line(chip, fe, volts, amps, phi=0.0, hz=50.0):
    chip.set_inputs(*fe.pins(volts, amps, phi, hz))


IDEAL = FrontEnd.named("ideal", 0, BOARD)


def energy_over(chip, seconds, reg="APenergy", step=60.0):
    """Sum a clear-on-read energy register read every `step` seconds (never wraps)."""
    total, t = 0, 0.0
    rd(chip, reg)
    while t < seconds:
        dt = min(step, seconds - t)
        chip.advance(dt)
        t += dt
        total += rd(chip, reg)
    return total


# ---- bus and registers --------------------------------------------------------------------------
def test_checksum_vectors_from_reference():
    c = ATM90E26(random.Random(1))
    assert rd(c, "CS1") == 0x55CB
    assert rd(c, "CS2") == 0x6BB9
    wr(c, "CalStart", 0x5678)
    wr(c, "PLconstH", 0x00B9)
    wr(c, "PLconstL", 0xC1F3)
    wr(c, "Lgain", 0x1D39)
    assert rd(c, "CS1") == 0x4A34
    wr(c, "AdjStart", 0x5678)
    wr(c, "Ugain", 0xD464)
    wr(c, "IgainL", 0x6E49)
    assert rd(c, "CS2") == 0xD294


def test_reading_cs1_returns_computed_value_not_written_one():
    c = ATM90E26(random.Random(1))
    wr(c, "CS1", 0x1234)
    assert rd(c, "CS1") == 0x55CB
    assert c.peek(ADDR["CS1"]) == 0x55CB


def test_reset_values_match_reference_table():
    c = ATM90E26(random.Random(1))
    expected = {"FuncEn": 0x000C, "SagTh": 0x1D6A, "CalStart": 0x6886, "PLconstH": 0x0015, "PLconstL": 0xD174,
                "PStartTh": 0x08BD, "QStartTh": 0x0AEC, "MMode": 0x9422, "AdjStart": 0x6886, "Ugain": 0x6720,
                "IgainL": 0x7A13, "IgainN": 0x7530, "EnStatus": 0xC800, "Lgain": 0, "Urms": 0, "Pmean": 0}
    for name, value in expected.items():
        assert rd(c, name) == value, name


def test_write_frame_returns_zeros_and_read_frame_returns_data_after_dont_care_byte():
    c = ATM90E26(random.Random(1))
    assert wr(c, "FuncEn", 0x0030) == b"\x00\x00\x00"
    buf = bytearray([0x80 | ADDR["FuncEn"], 0xAA, 0x55])
    c.transfer(buf)
    assert bytes(buf) == b"\x00\x00\x30"


def test_several_frames_in_one_transfer_are_separate_chip_select_cycles():
    c = ATM90E26(random.Random(1))
    buf = bytearray([ADDR["FuncEn"], 0x00, 0x30, 0x80 | ADDR["FuncEn"], 0, 0, 0x80 | ADDR["LastData"], 0, 0])
    c.transfer(buf)
    assert bytes(buf) == b"\x00\x00\x00\x00\x00\x30\x00\x00\x30"


def test_last_data_follows_reads_and_writes_and_is_unchanged_by_reading_itself(chip):
    line(chip, IDEAL, 230.0, 10.0)
    urms = rd(chip, "Urms")
    assert rd(chip, "LastData") == urms == 23000
    assert rd(chip, "LastData") == urms
    wr(chip, "FuncEn", 0x0030)
    assert rd(chip, "LastData") == 0x0030


def test_clear_on_read_energy_updates_last_data_with_value_read(chip):
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(10.0)
    v = rd(chip, "APenergy")
    assert v > 0
    assert rd(chip, "LastData") == v
    assert rd(chip, "APenergy") == 0


def test_invalid_address_reads_zero_and_write_is_discarded():
    c = ATM90E26(random.Random(1))
    wr(c, "FuncEn", 0x0011)
    wr(c, 0x50, 0x1234)
    assert rd(c, 0x50) == 0
    assert rd(c, "LastData") == 0x0011
    wr(c, "Urms", 0x4444)              # read-only: discarded
    assert rd(c, "Urms") == 0


def test_partial_frame_neither_writes_nor_updates_last_data():
    c = ATM90E26(random.Random(1))
    wr(c, "FuncEn", 0x0011)
    buf = bytearray([ADDR["SagTh"], 0x12])
    c.transfer(buf)
    assert rd(c, "SagTh") == 0x1D6A
    buf = bytearray([0x80 | ADDR["MMode"], 0])
    c.transfer(buf)
    assert buf[1] == 0x94
    assert rd(c, "LastData") == 0x1D6A


def test_soft_reset_only_with_789a():
    c = ATM90E26(random.Random(1))
    wr(c, "FuncEn", 0x0030)
    wr(c, "SoftReset", 0x1234)
    assert rd(c, "FuncEn") == 0x0030
    wr(c, "SoftReset", 0x789A)
    assert rd(c, "FuncEn") == 0x000C


def test_calstart_5678_resets_calibration_block_to_defaults():
    c = ATM90E26(random.Random(1))
    wr(c, "PStartTh", 0x1111)
    wr(c, "MMode", 0x7422)
    wr(c, "Ugain", 0x1234)
    wr(c, "CalStart", 0x5678)
    assert rd(c, "PStartTh") == 0x08BD and rd(c, "MMode") == 0x9422
    assert rd(c, "Ugain") == 0x1234              # the other block is untouched
    wr(c, "AdjStart", 0x5678)
    assert rd(c, "Ugain") == 0x6720


def test_plconst_high_takes_effect_only_after_low_is_written():
    chip = ATM90E26(random.Random(42), {"noise_lsb": 0.0})
    init(chip)
    line(chip, IDEAL, 230.0, 10.0)
    wr(chip, "CalStart", 0x5678)                 # resets PLconst to the chip default 0x15D174
    for n in CAL_NAMES[2:]:
        wr(chip, n, CAL[n])
    wr(chip, "PLconstL", 0)                      # H still the default 0x15
    p_default_h = s16(rd(chip, "Pmean"))
    wr(chip, "PLconstH", 24)
    assert s16(rd(chip, "Pmean")) == p_default_h
    wr(chip, "PLconstL", 0)
    assert s16(rd(chip, "Pmean")) == 2300
    assert p_default_h == round(2300 * 24 / 21)


# ---- init sequence, checksums and modes ---------------------------------------------------------
def test_init_sequence_leads_to_metering(chip):
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(3600.0)
    assert rd(chip, "APenergy") > 0
    assert not chip.warn_out and not chip.irq


def test_wrong_cs1_sets_calerr_asserts_warnout_and_stops_metering():
    c = ATM90E26(random.Random(1))
    status = init(c, cs1=0x1234)
    assert status & 0xC000 == 0xC000
    assert status & 0x3000 == 0
    assert c.warn_out and c.irq
    line(c, IDEAL, 230.0, 10.0)
    c.advance(3600.0)
    assert rd(c, "APenergy") == 0 and c.cf_pulses == 0
    assert rd(c, "SysStatus") & 0xC000 == 0xC000      # the error persists while the mismatch does


def test_wrong_cs2_sets_adjerr_and_freezes_measurements():
    c = ATM90E26(random.Random(1))
    status = init(c, cs2=0x0BAD)
    assert status & 0x3000 == 0x3000 and status & 0xC000 == 0
    assert not c.warn_out
    line(c, IDEAL, 230.0, 10.0)
    assert rd(c, "Urms") == 0 and rd(c, "Irms") == 0
    c.advance(60.0)
    assert rd(c, "APenergy") > 0                       # energy is the CS1 block's business


def test_metering_disabled_while_calstart_is_6886():
    c = ATM90E26(random.Random(1))
    line(c, IDEAL, 230.0, 10.0)
    c.advance(3600.0)
    assert rd(c, "APenergy") == 0 and c.cf_pulses == 0


def test_calibration_mode_5678_meters_without_checking():
    c = ATM90E26(random.Random(1))
    wr(c, "CalStart", 0x5678)
    wr(c, "AdjStart", 0x5678)
    wr(c, "CS1", 0xDEAD)
    line(c, IDEAL, 230.0, 10.0)
    c.advance(60.0)
    assert rd(c, "APenergy") > 0
    assert rd(c, "SysStatus") == 0


# ---- transfer functions with the ideal front end --------------------------------------------------
def test_ideal_front_end_reads_true_values_at_unity_pf(chip):
    line(chip, IDEAL, 230.0, 10.0)
    assert rd(chip, "Urms") == 23000
    assert rd(chip, "Irms") == 10000
    assert s16(rd(chip, "Pmean")) == 2300
    assert s16(rd(chip, "Qmean")) == 0
    assert rd(chip, "Smean") == 2300
    assert rd(chip, "PowerF") == 1000
    assert rd(chip, "Freq") == 5000
    assert rd(chip, "Irms2") == 10000
    assert s16(rd(chip, "Pmean2")) == 2300


@pytest.mark.parametrize("volts,amps", [(230.0, 5.0), (207.0, 1.0), (253.0, 40.0), (230.0, 0.5)])
def test_ideal_front_end_reads_true_values_across_range(chip, volts, amps):
    line(chip, IDEAL, volts, amps)
    assert rd(chip, "Urms") == round(volts * 100)
    assert rd(chip, "Irms") == round(amps * 1000)
    assert s16(rd(chip, "Pmean")) == round(volts * amps)


def test_inductive_pf_half_reads_p_q_pf_and_angle(chip):
    line(chip, IDEAL, 230.0, 10.0, math.radians(60), 50.0)
    assert s16(rd(chip, "Pmean")) == 1150
    assert s16(rd(chip, "Qmean")) == round(2300 * math.sin(math.radians(60)))
    assert rd(chip, "PowerF") == 500
    assert rd(chip, "Pangle") == 600


def test_capacitive_angle_and_export_pf_are_sign_magnitude(chip):
    line(chip, IDEAL, 230.0, 10.0, math.radians(-60))
    assert rd(chip, "Pangle") == 0x8000 | 600
    assert rd(chip, "PowerF") == 500
    line(chip, IDEAL, 230.0, 10.0, math.pi)
    assert rd(chip, "PowerF") == 0x8000 | 1000
    assert rd(chip, "Pmean") == (-2300) & 0xFFFF


def test_frequency_reads_in_hundredths(chip):
    line(chip, IDEAL, 230.0, 10.0, 0.0, 49.87)
    assert rd(chip, "Freq") == 4987


def test_one_hour_at_2300w_gives_2300wh_of_energy_counts(chip):
    line(chip, IDEAL, 230.0, 10.0)
    counts = energy_over(chip, 3600.0, step=300.0)
    assert abs(counts - 2300 * 32) <= 1
    assert chip.cf_pulses == 7360


def test_energy_is_exact_however_time_is_sliced(chip):
    line(chip, IDEAL, 230.0, 10.0)
    rng = random.Random(5)
    t = 0.0
    while t < 600.0:
        dt = min(600.0 - t, rng.choice([0.001, 0.013, 0.5, 2.0, 17.0]))
        chip.advance(dt)
        t += dt
    assert abs(rd(chip, "APenergy") - 2300 * 600 / LSB_WS) <= 1


def test_energy_register_wraps_at_16_bits(chip):
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(3600.0)
    assert rd(chip, "APenergy") == (73600 & 0xFFFF)


def test_reverse_energy_goes_to_anenergy_and_sets_revp(chip):
    line(chip, IDEAL, 230.0, 10.0, math.pi)
    chip.advance(60.0)
    assert rd(chip, "APenergy") == 0
    assert abs(rd(chip, "ANenergy") - 2300 * 60 / LSB_WS) <= 1
    assert rd(chip, "ATenergy") > 0
    assert rd(chip, "EnStatus") & 0x1000
    assert rd(chip, "SysStatus") & 0x0020          # RevPchg
    assert rd(chip, "SysStatus") & 0x0020 == 0     # cleared by the read
    line(chip, IDEAL, 230.0, 10.0, 0.0)
    chip.advance(60.0)
    assert rd(chip, "EnStatus") & 0x1000 == 0


def test_forward_and_reverse_cancel_within_a_hundredth_pulse(chip):
    # 0.613 hundredths of a pulse forward, then the same in reverse, a thousand times.
    dt = 0.613 / (2300 * m.HUNDREDTHS_PER_WS)
    for _ in range(1000):
        line(chip, IDEAL, 230.0, 10.0, 0.0)
        chip.advance(dt)
        line(chip, IDEAL, 230.0, 10.0, math.pi)
        chip.advance(dt)
    assert rd(chip, "APenergy") == 0
    assert rd(chip, "ANenergy") == 0
    assert rd(chip, "ATenergy") == 122             # absolute energy: 1226 hundredths = 122 tenths


def test_reactive_energy_accumulates_with_sin(chip):
    line(chip, IDEAL, 230.0, 10.0, math.radians(90) - 1e-12)
    got = energy_over(chip, 600.0, "RPenergy")
    assert abs(got - 2300 * 600 / LSB_WS) <= 1
    assert rd(chip, "APenergy") == 0               # P is ~0: below the start threshold


# ---- thresholds ----------------------------------------------------------------------------------
def test_below_start_threshold_no_energy_and_no_pulses(chip):
    line(chip, IDEAL, 230.0, 10.0 * 0.0036)         # 0.36 % Ib: above no-load, below start (0.4 %)
    chip.advance(3600.0)
    assert rd(chip, "APenergy") == 0 and chip.cf_pulses == 0
    assert rd(chip, "EnStatus") & 0x4000 == 0


def test_no_load_sets_pnoload_and_emits_no_pulses(chip):
    line(chip, IDEAL, 230.0, 10.0 * 0.003)
    chip.advance(3600.0)
    assert rd(chip, "EnStatus") & 0x4000
    assert rd(chip, "APenergy") == 0 and chip.cf_pulses == 0


def test_just_above_start_threshold_meters(chip):
    line(chip, IDEAL, 230.0, 10.0 * 0.0045)
    got = energy_over(chip, 3600.0)
    assert abs(got - 230 * 0.045 * 3600 / LSB_WS) <= 1


# ---- calibration formulas of AN26 ----------------------------------------------------------------
def _error(chip, fe, phi=0.0, seconds=2000.0):
    line(chip, fe, 230.0, 10.0, phi)
    got = energy_over(chip, seconds, step=500.0)
    return got / (2300 * math.cos(phi) * seconds / LSB_WS) - 1


def test_lgain_formula_cancels_a_3_percent_gain_error(chip):
    fe = FrontEnd.named("gain_plus_3pct", 0, BOARD)
    eps = _error(chip, fe)
    assert abs(eps - 0.03) < 0.0005
    ratio = -eps / (1 + eps)
    lgain = int(ratio * 2 ** 15) & 0xFFFF
    init(chip, cal={"Lgain": lgain})
    assert abs(_error(chip, fe)) < 0.0005


def test_ugain_and_igainl_formulas_correct_rms_readings(chip):
    fe = FrontEnd({"voltage_gain": -0.025, "current_gain": 0.03}, 0, BOARD)
    line(chip, fe, 230.0, 10.0)
    urms, irms = rd(chip, "Urms") / 100, rd(chip, "Irms") / 1000
    assert abs(urms - 224.25) < 0.02 and abs(irms - 10.3) < 0.002
    ugain = int(26400 * 230 / urms)
    igainl = int(31251 * 10 / irms)
    init(chip, adj={"Ugain": ugain, "IgainL": igainl})
    line(chip, fe, 230.0, 10.0)
    assert abs(rd(chip, "Urms") - 23000) <= 2
    assert abs(rd(chip, "Irms") - 10000) <= 2


def test_lphi_formula_cancels_a_phase_error_at_pf_half(chip):
    fe = FrontEnd({"current_phase_deg": 0.6}, 0, BOARD)
    phi = math.radians(60)
    eps = _error(chip, fe, phi)
    assert eps < -0.01                               # extra lag reads low at PF 0.5 inductive
    lphi = int(eps * 3763.74) & 0xFFFF
    init(chip, cal={"Lphi": lphi})
    assert abs(_error(chip, fe, phi)) < 0.001
    assert abs(_error(chip, fe, 0.0)) < 0.0002       # and does no harm at unity PF


def test_current_offset_register_removes_the_noise_floor():
    c = ATM90E26(random.Random(3), {"il_floor_mv": 0.003, "noise_lsb": 0.0})
    assert init(c) == 0
    line(c, IDEAL, 230.0, 0.0)
    i0 = rd(c, "Irms")
    assert i0 == 12                                  # 3 uV * 4000 mA/mV
    ioffset = -round(i0 * i0 * 31251 / 2 ** 16 * 2 ** 8)
    init(c, adj={"IoffsetL": ioffset & 0xFFFF})
    line(c, IDEAL, 230.0, 0.0)
    assert rd(c, "Irms") <= 1
    line(c, IDEAL, 230.0, 10.0)
    assert rd(c, "Irms") == 10000


def test_power_offset_calibrated_in_small_power_mode(chip):
    fe = FrontEnd({"crosstalk_inphase_mv": 0.0001}, 0, BOARD)   # about 0.09 W at no load
    line(chip, fe, 230.0, 0.0)
    assert s16(rd(chip, "Pmean")) == 0                         # too small to see in watts
    wr(chip, "SmallPMod", 0xA987)
    small = [s16(rd(chip, "Pmean")) for _ in range(8)]
    mean = round(sum(small) / len(small))
    assert mean > 20
    init(chip, adj={"PoffsetL": (-mean) & 0xFFFF})   # a CS2-guarded register: rewrite the block
    line(chip, fe, 230.0, 0.0)
    wr(chip, "SmallPMod", 0xA987)
    assert abs(s16(rd(chip, "Pmean"))) <= 1
    wr(chip, "SmallPMod", 0)
    assert s16(rd(chip, "Pmean")) == 0


# ---- faults and reset ----------------------------------------------------------------------------
def test_silent_chip_floats_miso_high_and_sees_nothing(chip):
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(60.0)
    chip.set_fault("silent")
    buf = bytearray([0x80 | ADDR["APenergy"], 0, 0, ADDR["FuncEn"], 0, 0x30])
    chip.transfer(buf)
    assert bytes(buf) == b"\xff" * 6
    chip.set_fault(None)
    assert rd(chip, "APenergy") > 0                   # not cleared while silent
    assert rd(chip, "FuncEn") == 0x000C               # write not seen


def test_garbage_chip_executes_frames_but_returns_noise(chip):
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(60.0)
    chip.set_fault("garbage")
    seen = set()
    for _ in range(8):
        buf = bytearray([0x80 | ADDR["Urms"], 0, 0])
        chip.transfer(buf)
        seen.add(bytes(buf))
    assert len(seen) > 1 and b"\x00\x59\xd8" not in seen
    wr(chip, "FuncEn", 0x0030)
    rd(chip, "APenergy")
    chip.set_fault(None)
    assert rd(chip, "FuncEn") == 0x0030
    assert rd(chip, "APenergy") == 0


def test_unknown_fault_is_refused(chip):
    with pytest.raises(ValueError):
        chip.set_fault("smoke")


def test_power_on_reset_restores_defaults_and_clears_accumulators(chip):
    line(chip, IDEAL, 230.0, 10.0)
    dt = 5.0 / (2300 * m.HUNDREDTHS_PER_WS)           # 0.05 pulse: half a register LSB
    chip.advance(dt)
    pulses = chip.cf_pulses
    chip.power_on_reset()
    assert rd(chip, "CalStart") == 0x6886 and rd(chip, "MMode") == 0x9422 and rd(chip, "Urms") == 0
    init(chip)
    line(chip, IDEAL, 230.0, 10.0)
    chip.advance(dt)
    assert rd(chip, "APenergy") == 0                  # the earlier half LSB was forgotten
    assert chip.cf_pulses == pulses


def test_readings_are_deterministic_for_a_seed():
    def readings(seed):
        c = ATM90E26(random.Random(seed), {"noise_rel": 1e-3})
        init(c)
        out = []
        for k in range(20):
            line(c, IDEAL, 230.0, 10.0)
            c.advance(1.0)
            out.append(rd(c, "Pmean"))
        return out
    assert readings(1) == readings(1)
    assert readings(1) != readings(2)


def test_sag_warning_when_enabled(chip):
    wr(chip, "FuncEn", 0x0030 | 0x000C)
    line(chip, IDEAL, 150.0, 1.0)
    assert rd(chip, "SysStatus") & 0x0002
    assert chip.warn_out
    line(chip, IDEAL, 230.0, 1.0)
    rd(chip, "Urms")
    rd(chip, "SysStatus")
    assert not chip.warn_out


# ---- the pieces together: an ideal meter registers a real-looking day -----------------------------
def test_ideal_meter_registers_a_solar_household_day_in_both_directions(chip):
    from host_tools.sim.world.grid import Grid
    from host_tools.sim.world.loads import LoadProfile
    t0, t1 = 1767225600 + 160 * 86400, 1767225600 + 161 * 86400
    load = LoadProfile.named("solar", 3)
    grid = Grid.named("typical", 3)
    changes = sorted({t for t, *_ in load.segments(t0, t1)} | {t for t, *_ in grid.segments(t0, t1)})
    true_in = true_out = 0.0
    got_in = got_out = 0
    for a, b in zip(changes, changes[1:] + [t1]):
        (_, watts, pf), = list(load.segments(a, a + 1e-3))
        (_, volts, hz, on), = list(grid.segments(a, a + 1e-3))
        if not on:
            chip.set_inputs(0.0, 0.0, 0.0, 0.0)
            chip.advance(b - a)
            continue
        phi = math.copysign(math.acos(abs(pf)), pf) + (math.pi if watts < 0 else 0.0)
        line(chip, IDEAL, volts, abs(watts) / (volts * abs(pf)), phi, hz)
        t = a
        while t < b:                                   # read often enough that registers never wrap
            dt = min(600.0, b - t)
            chip.advance(dt)
            t += dt
            got_in += rd(chip, "APenergy")
            got_out += rd(chip, "ANenergy")
        if abs(watts) < 5145 / m.THRESHOLD_SCALE / 6:   # below 0.4 % Ib (9.2 W): the chip must not count
            continue
        if watts >= 0:
            true_in += watts * (b - a)
        else:
            true_out -= watts * (b - a)
    assert true_out > 3.6e6                                # more than 1 kWh exported that day
    assert abs(got_in - true_in / LSB_WS) <= 2
    assert abs(got_out - true_out / LSB_WS) <= 2


def test_sag_warning_returns_while_the_sag_lasts(chip):
    wr(chip, "FuncEn", 0x0020 | 0x000C)
    line(chip, IDEAL, 150.0, 1.0)
    assert rd(chip, "SysStatus") & 0x0002
    assert rd(chip, "SysStatus") & 0x0002 == 0
    chip.advance(1.0)
    assert rd(chip, "SysStatus") & 0x0002
    assert not chip.warn_out                          # SagWo off: the pin stays quiet


def test_chip_parameters_from_json_and_unknown_ones_refused(tmp_path):
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"params": {"il_floor_mv": 0.002, "noise_lsb": 0.0}}))
    c = ATM90E26.from_json(p, random.Random(1))
    init(c)
    line(c, IDEAL, 230.0, 0.0)
    assert rd(c, "Irms") == 8
    with pytest.raises(ValueError):
        ATM90E26(random.Random(1), {"noise": 1})
