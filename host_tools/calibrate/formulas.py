"""ATM90E26 calibration arithmetic: register values from bench measurements (AN26 §3, in the form the
chip model documents in docs/sim-atm90e26.md), each with the range check that tells a front end the
registers cannot correct from one that is merely off. Pure functions; no meter, no bench."""
import math

PL_SCALE = 838860800            # PL_constant = PL_SCALE * G_L * V_L * V_U / (MC * Un * Ib)   [AN26]
THRESHOLD_SCALE = 93.2067556    # PStartTh = THRESHOLD_SCALE * G_L * V_L * V_U * K          [AN26]
PHI_CLOCK_HZ = 2048000.0        # one Lphi LSB delays the current by one 2.048 MHz period
PGA_L = (4, 8, 16, 24, 1, 1, 1, 1)   # MMode bits 15..13
PGA_N = (2, 4, 1, 1)                 # MMode bits 12..11
# The chip's reset gains: the base the RMS transfer functions are written against.
NOMINAL_GAINS = {"Ugain": 26400, "IgainL": 31251, "IgainN": 30000}


class RangeProblem(Exception):
    """A correction the register cannot hold: the front end is outside what calibration can fix."""

    def __init__(self, register, wanted, lo, hi, why):
        super().__init__("%s would need %s (allowed %d..%d): %s" % (register, _fmt(wanted), lo, hi, why))
        self.register = register
        self.wanted = wanted
        self.why = why


def _fmt(x):
    return "%d" % x if isinstance(x, int) else "%.1f" % x


def s16(v):
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def u16(v):
    return int(v) & 0xFFFF


def s8(v):
    v &= 0xFF
    return v - 0x100 if v & 0x80 else v


def with_fraction(reg, lsb, signed=False):
    """A 16-bit reading plus the LSB register (0x08) read right after it: the signed fraction in
    bits 15..8 gives 1/256 of a register step."""
    v = s16(reg) if signed else reg & 0xFFFF
    return v + s8((lsb >> 8) & 0xFF) / 256.0


def pga_l(mmode):
    return PGA_L[(mmode >> 13) & 7]


def pga_n(mmode):
    return PGA_N[(mmode >> 11) & 3]


def design_pins(design):
    """(V_U, V_L, V_N): mV at the chip's pins at Un and Ib for the board's nominal front end."""
    fe = design["front_end"]
    v_u = design["un_v"] * 1000.0 / fe["divider_ratio"]
    v_l = fe["shunt_uohm"] * design["ib_a"] / 1000.0
    v_n = design["ib_a"] * fe["neutral_burden_ohm"] / fe["neutral_ct_ratio"] * 1000.0
    return v_u, v_l, v_n


def pl_constant(design, mmode, meter_constant=None):
    """PL_constant for the design at a meter constant (imp/kWh), AN26's formula."""
    mc = meter_constant or design["meter_constant_imp_per_kwh"]
    v_u, v_l, _ = design_pins(design)
    return int(PL_SCALE * pga_l(mmode) * v_l * v_u / (mc * design["un_v"] * design["ib_a"]))


def split_pl(pl):
    if not 0 < pl < 1 << 32:
        raise RangeProblem("PLconst", pl, 1, (1 << 32) - 1, "outside the 32-bit register pair")
    return (pl >> 16) & 0xFFFF, pl & 0xFFFF


def threshold(mmode, v_l_mv, v_u_mv, fraction_ib):
    """PStartTh/PNolTh-style threshold for a fraction of Ib, AN26's formula, for the pin voltages
    this meter really has at Ib and Un."""
    t = int(round(THRESHOLD_SCALE * pga_l(mmode) * v_l_mv * v_u_mv * fraction_ib))
    if not 0 <= t <= 0xFFFF:
        raise RangeProblem("threshold", t, 0, 0xFFFF, "start-up/no-load threshold out of range")
    return t


def rms_gain(register, old, true_value, measured):
    """New Ugain/IgainL/IgainN so that `measured` (read at gain `old`) reads `true_value`.
    Ugain must keep bit 15 clear (DS26); the current gains are unsigned 16-bit."""
    if measured <= 0:
        raise RangeProblem(register, 0, 1, 0xFFFF, "the meter reads nothing on this channel")
    new = int(round(old * true_value / measured))
    hi = 0x7FFF if register == "Ugain" else 0xFFFF
    if not 1 <= new <= hi:
        why = "the channel reads %.1f %% %s" % (abs(measured / true_value - 1) * 100,
                                               "low" if measured < true_value else "high")
        if register == "Ugain" and new > hi:
            why += "; Ugain would need bit 15, which the datasheet forbids"
        raise RangeProblem(register, new, 1, hi, why)
    return new


def lgain_for(old, gain_error):
    """New Lgain (two's complement ratio * 2^15) given the energy gain error measured at `old`
    (0.03 = reads 3 % high). AN26: Lgain = -e/(1+e) * 2^15 from zero; here from any start value."""
    k = (1 + s16(old) / 32768.0) / (1 + gain_error)
    new = int(round((k - 1) * 32768))
    if not -32768 <= new <= 32767:
        raise RangeProblem("Lgain", new, -32768, 32767,
                           "energy reads %.1f %% %s, beyond the gain register's reach (x0..x2)" % (
                               abs(gain_error) * 100, "low" if gain_error < 0 else "high"))
    return u16(new)


def split_gain_phase(err_pf1, err_pf05):
    """(gain error, extra lag in radians) from the energy errors at PF 1 and PF 0.5 inductive:
    PF 1 reads (1+g)cos(d), PF 0.5L reads (1+g)cos(60deg+d)/cos(60deg), so their ratio is
    1 - sqrt(3) tan(d) whatever the gain."""
    r = (1 + err_pf05) / (1 + err_pf1)
    d = math.atan((1 - r) / math.sqrt(3))
    g = (1 + err_pf1) / math.cos(d) - 1
    return g, d


def phase_lsb_rad(f_hz):
    return 2 * math.pi * f_hz / PHI_CLOCK_HZ


def phi_for(register, old, extra_lag_rad, f_hz):
    """New Lphi/Nphi that cancels a measured extra lag (positive Lphi adds lag)."""
    new = int(round(s16(old) - extra_lag_rad / phase_lsb_rad(f_hz)))
    if not -32768 <= new <= 32767:
        raise RangeProblem(register, new, -32768, 32767,
                           "phase error %.2f deg beyond the register's reach" % math.degrees(extra_lag_rad))
    return u16(new)


def rms_offset(register, zero_reading, gain):
    """IoffsetL/IoffsetN/Uoffset from the reading with no signal (register units): the chip adds
    s16(offset) * 256 / gain to the square, so -reading^2 * gain / 256 removes the floor."""
    new = -int(round(zero_reading * zero_reading * gain / 256.0))
    if new < -32768:
        raise RangeProblem(register, new, -32768, 32767,
                           "no-signal floor %.1f register units is beyond the offset's reach" % zero_reading)
    return u16(new)


def power_offset(register, small_power_mean):
    """PoffsetL/QoffsetL/...: the two's complement of the small-power-mode mean at no load."""
    new = -int(round(small_power_mean))
    if not -32768 <= new <= 32767:
        raise RangeProblem(register, new, -32768, 32767, "no-load power offset too large")
    return u16(new)
