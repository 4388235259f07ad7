"""The ATM90E26 (Atmel/Microchip M90E26) modelled at register level for the simulator.

The firmware's driver talks to this object byte for byte over SPI frames; the world feeds it the
voltages and currents at the chip's pins (from host_tools.sim.world.afe) and advances time. Every transfer
function, threshold and quirk modelled here is written down in docs/sim-atm90e26.md; the numbers in
the comments refer to that page. Energy integration is exact arithmetic on the inputs; only the
instantaneous readings (RMS, mean power) carry a little seeded noise.
"""
import math

from host_tools.sim.world.chips import FromJson, chip_params

# ---- register addresses -------------------------------------------------------------------------
SOFTRESET, SYSSTATUS, FUNCEN, SAGTH, SMALLPMOD, LASTDATA, LSB = 0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x08
CALSTART, PLCONSTH, PLCONSTL, LGAIN, LPHI, NGAIN, NPHI = 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26
PSTARTTH, PNOLTH, QSTARTTH, QNOLTH, MMODE, CS1 = 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C
ADJSTART, UGAIN, IGAINL, IGAINN, UOFFSET, IOFFSETL, IOFFSETN = 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36
POFFSETL, QOFFSETL, POFFSETN, QOFFSETN, CS2 = 0x37, 0x38, 0x39, 0x3A, 0x3B
APENERGY, ANENERGY, ATENERGY, RPENERGY, RNENERGY, RTENERGY, ENSTATUS = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46
IRMS, URMS, PMEAN, QMEAN, FREQ, POWERF, PANGLE, SMEAN = 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F
IRMS2, PMEAN2, QMEAN2, POWERF2, PANGLE2, SMEAN2 = 0x68, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F

# Control codes [DS26 §5.3].
SOFTRESET_CODE = 0x789A
CODE_DISABLED = 0x6886
CODE_CALIBRATE = 0x5678
CODE_CHECK = 0x8765
SMALLPMOD_CODE = 0xA987

# SysStatus / EnStatus bits.
CALERR = 0xC000
ADJERR = 0x3000
LNCHANGE = 0x0080
REVQCHG = 0x0040
REVPCHG = 0x0020
SAGWARN = 0x0002
QNOLOAD = 0x8000
PNOLOAD = 0x4000
REVQ = 0x2000
REVP = 0x1000
LLINE = 0x0800

# name: (address, access, reset). Access: W write-only, RW, R read-only, RC read-and-clear.
REGISTERS = {
    "SoftReset": (SOFTRESET, "W", 0x0000), "SysStatus": (SYSSTATUS, "RC", 0x0000),
    "FuncEn": (FUNCEN, "RW", 0x000C), "SagTh": (SAGTH, "RW", 0x1D6A),
    "SmallPMod": (SMALLPMOD, "RW", 0x0000), "LastData": (LASTDATA, "R", 0x0000), "LSB": (LSB, "R", 0x0000),
    "CalStart": (CALSTART, "RW", 0x6886), "PLconstH": (PLCONSTH, "RW", 0x0015),
    "PLconstL": (PLCONSTL, "RW", 0xD174), "Lgain": (LGAIN, "RW", 0), "Lphi": (LPHI, "RW", 0),
    "Ngain": (NGAIN, "RW", 0), "Nphi": (NPHI, "RW", 0), "PStartTh": (PSTARTTH, "RW", 0x08BD),
    "PNolTh": (PNOLTH, "RW", 0), "QStartTh": (QSTARTTH, "RW", 0x0AEC), "QNolTh": (QNOLTH, "RW", 0),
    "MMode": (MMODE, "RW", 0x9422), "CS1": (CS1, "RW", 0), "AdjStart": (ADJSTART, "RW", 0x6886),
    "Ugain": (UGAIN, "RW", 0x6720), "IgainL": (IGAINL, "RW", 0x7A13), "IgainN": (IGAINN, "RW", 0x7530),
    "Uoffset": (UOFFSET, "RW", 0), "IoffsetL": (IOFFSETL, "RW", 0), "IoffsetN": (IOFFSETN, "RW", 0),
    "PoffsetL": (POFFSETL, "RW", 0), "QoffsetL": (QOFFSETL, "RW", 0), "PoffsetN": (POFFSETN, "RW", 0),
    "QoffsetN": (QOFFSETN, "RW", 0), "CS2": (CS2, "RW", 0),
    "APenergy": (APENERGY, "RC", 0), "ANenergy": (ANENERGY, "RC", 0), "ATenergy": (ATENERGY, "RC", 0),
    "RPenergy": (RPENERGY, "RC", 0), "RNenergy": (RNENERGY, "RC", 0), "RTenergy": (RTENERGY, "RC", 0),
    "EnStatus": (ENSTATUS, "R", 0xC800), "Irms": (IRMS, "R", 0), "Urms": (URMS, "R", 0),
    "Pmean": (PMEAN, "R", 0), "Qmean": (QMEAN, "R", 0), "Freq": (FREQ, "R", 0), "PowerF": (POWERF, "R", 0),
    "Pangle": (PANGLE, "R", 0), "Smean": (SMEAN, "R", 0), "Irms2": (IRMS2, "R", 0),
    "Pmean2": (PMEAN2, "R", 0), "Qmean2": (QMEAN2, "R", 0), "PowerF2": (POWERF2, "R", 0),
    "Pangle2": (PANGLE2, "R", 0), "Smean2": (SMEAN2, "R", 0),
}
ADDR = {name: spec[0] for name, spec in REGISTERS.items()}

CAL_BLOCK = range(PLCONSTH, MMODE + 1)       # 21..2B, guarded by CS1
ADJ_BLOCK = range(UGAIN, QOFFSETN + 1)       # 31..3A, guarded by CS2
MEASUREMENTS = (IRMS, URMS, PMEAN, QMEAN, FREQ, POWERF, PANGLE, SMEAN,
                IRMS2, PMEAN2, QMEAN2, POWERF2, PANGLE2, SMEAN2)
# register -> (lowest, highest, needs metering, kind: 0 value, 1 power factor, 2 angle).
_READING_SPEC = {a: (0, 0xFFFF, False, 0) for a in (URMS, IRMS, IRMS2, FREQ)}
_READING_SPEC.update({a: (0, 0x7FFF, True, 0) for a in (SMEAN, SMEAN2)})
_READING_SPEC.update({a: (-32768, 32767, True, 0) for a in (PMEAN, QMEAN, PMEAN2, QMEAN2)})
_READING_SPEC.update({POWERF: (0, 0, True, 1), POWERF2: (0, 0, True, 1),
                      PANGLE: (0, 0, True, 2), PANGLE2: (0, 0, True, 2)})
RMS_LIKE = (IRMS, URMS, PMEAN, QMEAN, SMEAN, IRMS2, PMEAN2, QMEAN2, SMEAN2)   # latch LSB on read

# Read dispatch kinds (one small int per address, so the hot path is one list index).
_K_INVALID, _K_PLAIN, _K_MEAS, _K_ENERGY, _K_SYS, _K_CS1, _K_CS2, _K_LAST, _K_ENSTATUS, _K_WONLY = range(10)

# Transfer-function constants (docs/sim-atm90e26.md §2).
W_PER_UNIT = 838860800 / 3.6e6 * 3.6e6 / 3200     # = 2**18: Pmean W per (G_L*mV*mV/PL_constant)
THRESHOLD_SCALE = 93.2067556                     # PStartTh = 93.2067556 * G_L * V_L * V_U * K [AN26]
HUNDREDTHS_PER_WS = 100 * 3200 / 3.6e6           # 0.01-pulse units per watt-second at the reference MC
PHI_CLOCK_HZ = 2048000.0                          # Lphi/Nphi: one LSB delays current by 1/2.048 MHz
SMALL_POWER_SHIFT = 22                            # SmallPMod scaling: 2**22 ([AN26] reading, see doc)
PGA_L = (4, 8, 16, 24, 1, 1, 1, 1)               # MMode bits 15..13
PGA_N = (2, 4, 1, 1)                              # MMode bits 12..11
FREQ_MIN_MV = 20.0                                # below this voltage at the pin there are no zero crossings

DEFAULT_PARAMS = {
    "noise_lsb": 0.25,      # bounded uniform noise on each reading, in register LSBs (never flips an exact value)
    "noise_rel": 0.0,       # bounded uniform relative noise on each reading
    "u_floor_mv": 0.0,      # ADC noise floor per channel, in mV at the pin, added in quadrature to the RMS
    "il_floor_mv": 0.0,
    "n_floor_mv": 0.0,
}


def _s16(x):
    return x - 0x10000 if x & 0x8000 else x


def _u16_clamped(x):
    """Round and saturate a signed reading into a two's complement 16-bit register."""
    v = int(round(x))
    if v > 32767:
        v = 32767
    elif v < -32768:
        v = -32768
    return v & 0xFFFF


def _sign_magnitude(x, limit):
    mag = int(round(abs(x)))
    if mag > limit:
        mag = limit
    return (0x8000 | mag) if (x < 0 and mag) else mag


def checksum(values):
    """CS1/CS2 of a block of 16-bit register values: high byte XOR of all bytes, low byte their sum mod 256."""
    s = x = 0
    for v in values:
        hi, lo = (v >> 8) & 0xFF, v & 0xFF
        s += hi + lo
        x ^= hi ^ lo
    return (x << 8) | (s & 0xFF)


class ATM90E26(FromJson):
    """One ATM90E26 on an SPI bus. See the module docstring and docs/sim-atm90e26.md."""

    NAME = "ATM90E26"

    def __init__(self, rng, params=None):
        self.rng = rng
        self.params = p = chip_params(DEFAULT_PARAMS, params, self.NAME)
        self._noise_lsb = float(p["noise_lsb"])
        self._noise_rel = float(p["noise_rel"])
        self._noisy = self._noise_lsb > 0 or self._noise_rel > 0
        # Unit noise in [-1, 1], drawn once from the world's generator; readings walk through it.
        self._noise_tab = [rng.uniform(-1.0, 1.0) for _ in range(4093)] if self._noisy else []
        self._noise_at = 0
        self._kind = [_K_INVALID] * 128
        self._writable = [False] * 128
        self._reset_values = [0] * 128
        for addr, access, reset in REGISTERS.values():
            self._reset_values[addr] = reset
            self._writable[addr] = access in ("W", "RW")
            self._kind[addr] = _K_WONLY if access == "W" else _K_PLAIN
        for a in MEASUREMENTS:
            self._kind[a] = _K_MEAS
        for a in range(APENERGY, RTENERGY + 1):
            self._kind[a] = _K_ENERGY
        self._kind[SYSSTATUS] = _K_SYS
        self._kind[CS1] = _K_CS1
        self._kind[CS2] = _K_CS2
        self._kind[LASTDATA] = _K_LAST
        self._kind[ENSTATUS] = _K_ENSTATUS
        self._rms_like = [False] * 128
        for a in RMS_LIKE:
            self._rms_like[a] = True
        self.fault = None
        self.cf_pulses = 0
        self.v_mv = self.i_mv = self.phi = self.n_mv = self.n_phi = 0.0
        self.freq_hz = 50.0
        self.power_on_reset()


    # ---- reset and modes ------------------------------------------------------------------------
    def power_on_reset(self):
        """Every register to its reset value and the internal accumulators cleared (power-on or 789A)."""
        self.r = list(self._reset_values)
        self._plh_eff = self.r[PLCONSTH]       # PLconstH takes effect only when PLconstL is written
        self._sticky = 0                         # SysStatus bits that clear on read
        self._sag_warn_out = self._sag = False
        self._frac = [0] * 128                   # LSB-register fraction per RMS-like register
        self._gen = 1                            # bumped whenever readings may change
        self._reg_gen = [0] * 128                # the _gen each measurement register was computed at
        # Net accumulators in 0.01-pulse units, residual in (-1, 1): forward and reverse cancel inside 0.01.
        self._acc = [0.0, 0.0]
        self._acc_abs = [0.0, 0.0]
        self._fwd = [0, 0]                       # whole 0.01 pulses, per channel (0 active, 1 reactive)
        self._rev = [0, 0]
        self._abs = [0, 0]
        self._update_modes()
        self._dirty = True
        self._gen += 1

    def _update_modes(self):
        r = self.r
        cal, adj = r[CALSTART], r[ADJSTART]
        self._cs1_err = cal == CODE_CHECK and r[CS1] != checksum(r[a] for a in CAL_BLOCK)
        self._cs2_err = adj == CODE_CHECK and r[CS2] != checksum(r[a] for a in ADJ_BLOCK)
        self.metering_on = (cal == CODE_CALIBRATE) or (cal == CODE_CHECK and not self._cs1_err)
        self.measuring_on = (adj == CODE_CALIBRATE) or (adj == CODE_CHECK and not self._cs2_err)
        self._update_pins()

    def _status_errors(self):
        return (CALERR if self._cs1_err else 0) | (ADJERR if self._cs2_err else 0)

    def _update_pins(self):
        self._warn_out = self._cs1_err or self._sag_warn_out
        self._irq = bool(self._sticky or self._status_errors())

    @property
    def warn_out(self):
        """The WarnOut pin: a CS1 error, or a voltage sag with FuncEn.SagWo."""
        if self._dirty:
            self._recalc()
        return self._warn_out

    @property
    def irq(self):
        """The IRQ pin: any SysStatus bit set."""
        if self._dirty:
            self._recalc()
        return self._irq

    def set_fault(self, kind):
        """None (healthy), "silent" (frames unseen, MISO floats high) or "garbage" (MISO replaced by noise)."""
        if kind not in (None, "silent", "garbage"):
            raise ValueError(f"unknown ATM90E26 fault {kind!r}: use None, 'silent' or 'garbage'")
        self.fault = kind

    # ---- the physical side ----------------------------------------------------------------------
    def set_inputs(self, v_mv, i_mv, phi_rad, freq_hz, n_mv=0.0, n_phi_rad=0.0):
        """RMS millivolts at the pins; phi > 0 means the current lags the voltage (inductive)."""
        if (v_mv == self.v_mv and i_mv == self.i_mv and phi_rad == self.phi and freq_hz == self.freq_hz
                and n_mv == self.n_mv and n_phi_rad == self.n_phi):
            return                                   # nothing changed: keep the derived values
        self.v_mv = float(v_mv)
        self.i_mv = float(i_mv)
        self.phi = float(phi_rad)
        self.freq_hz = float(freq_hz)
        self.n_mv = float(n_mv)
        self.n_phi = float(n_phi_rad)
        self._dirty = True
        self._gen += 1

    def _recalc(self):
        """Derive everything that depends on inputs and calibration registers (docs §2)."""
        r = self.r
        self._dirty = False
        mm = r[MMODE]
        gl = PGA_L[(mm >> 13) & 7]
        gn = PGA_N[(mm >> 11) & 3]
        self._amod = bool(mm & 0x80)
        pl = (self._plh_eff << 16) | r[PLCONSTL]
        ugain, igl, ign = r[UGAIN], r[IGAINL], r[IGAINN]
        v, i, n, f = self.v_mv, self.i_mv, self.n_mv, self.freq_hz
        theta = 2 * math.pi * (f if f > 0 else 50.0) / PHI_CLOCK_HZ
        phi_l = self.phi + _s16(r[LPHI]) * theta
        phi_n = self.n_phi + _s16(r[NPHI]) * theta
        cos_l, sin_l = math.cos(phi_l), math.sin(phi_l)
        x = gl * v * i                                   # the chip's input power measure (§2.4)
        kl = (1 + _s16(r[LGAIN]) / 32768.0) * W_PER_UNIT / pl if pl else 0.0
        small_l = ugain * igl / (100000.0 * (1 << SMALL_POWER_SHIFT))   # W per small-power LSB
        small_n = ugain * ign / (100000.0 * (1 << SMALL_POWER_SHIFT))
        p_w = kl * x * cos_l + _s16(r[POFFSETL]) * small_l
        q_w = kl * x * sin_l + _s16(r[QOFFSETL]) * small_l
        xp, xq = x * abs(cos_l), x * abs(sin_l)
        p_noload = xp < r[PNOLTH] / THRESHOLD_SCALE
        q_noload = xq < r[QNOLTH] / THRESHOLD_SCALE
        on = self.metering_on
        self._run = (on and not p_noload and xp >= r[PSTARTTH] / THRESHOLD_SCALE,
                     on and not q_noload and xq >= r[QSTARTTH] / THRESHOLD_SCALE)
        self._rate = (p_w * HUNDREDTHS_PER_WS, q_w * HUNDREDTHS_PER_WS)
        if on:
            r[ENSTATUS] = (r[ENSTATUS] & ~(PNOLOAD | QNOLOAD)) | (PNOLOAD if p_noload else 0) | \
                (QNOLOAD if q_noload else 0)
        # RMS: offsets act in the squared domain (§2.2).
        u_lsb = v * ugain / 26400.0 * 100.0
        uf = self.params["u_floor_mv"] * ugain / 26400.0 * 100.0
        urms = math.sqrt(max(0.0, u_lsb * u_lsb + uf * uf + _s16(r[UOFFSET]) * 256.0 / ugain)) if ugain else 0.0
        il_scale = (gl / 24.0) * 4.0 * igl / 31251.0 * 1000.0        # mA per mV at the pin
        i_ma = i * il_scale
        ilf = self.params["il_floor_mv"] * il_scale
        irms = math.sqrt(max(0.0, i_ma * i_ma + ilf * ilf + _s16(r[IOFFSETL]) * 256.0 / igl)) if igl else 0.0
        n_scale = gn * ign / 30000.0 * 1000.0
        n_ma = n * n_scale
        nf = self.params["n_floor_mv"] * n_scale
        irms2 = math.sqrt(max(0.0, n_ma * n_ma + nf * nf + _s16(r[IOFFSETN]) * 256.0 / ign)) if ign else 0.0
        s = urms * irms / 100000.0                     # VA (urms in 0.01 V, irms in mA)
        kn = 1 + _s16(r[NGAIN]) / 32768.0
        p2 = u_lsb / 100.0 * n_ma / 1000.0 * kn
        p2_w = p2 * math.cos(phi_n) + _s16(r[POFFSETN]) * small_n
        q2_w = p2 * math.sin(phi_n) + _s16(r[QOFFSETN]) * small_n
        s2 = urms * irms2 / 100000.0
        small_mode = r[SMALLPMOD] == SMALLPMOD_CODE
        self._vals = {
            URMS: urms, IRMS: irms, IRMS2: irms2,
            PMEAN: p_w / small_l if (small_mode and small_l) else p_w,
            QMEAN: q_w / small_l if (small_mode and small_l) else q_w,
            SMEAN: s, SMEAN2: s2, PMEAN2: p2_w, QMEAN2: q2_w,
            FREQ: f * 100.0 if v >= FREQ_MIN_MV else 0.0,
        }
        self._pf = (p_w / s if s > 0 else 0.0, p2_w / s2 if s2 > 0 else 0.0)
        self._angle = (math.degrees(math.atan2(q_w, p_w)) * 10 if (p_w or q_w) else 0.0,
                       math.degrees(math.atan2(q2_w, p2_w)) * 10 if (p2_w or q2_w) else 0.0)
        # Sag: compare the peak voltage with SagTh = Vpeak*100/(4*Ugain/32768) [AN26].
        fe = r[FUNCEN]
        sag = bool(fe & 0x20) and urms * 1.4142135623730951 < r[SAGTH] * 4.0 * ugain / 32768.0
        self._sag = sag
        if sag:
            self._sticky |= SAGWARN
        self._sag_warn_out = sag and bool(fe & 0x10)
        self._update_pins()
        self._gen += 1

    def _update_reading(self, a):
        """Bring one measurement register up to date (lazily: only registers that are read cost time)."""
        if self._dirty:
            self._recalc()
        self._reg_gen[a] = self._gen
        if not self.measuring_on:
            return                                   # registers hold their last values (CS2 error, disabled)
        lo, hi, is_power, kind = _READING_SPEC[a]
        if is_power and not self.metering_on:
            return
        r = self.r
        if kind == 1:
            r[a] = _sign_magnitude(self._pf[a == POWERF2] * 1000, 1000)
            return
        if kind == 2:
            r[a] = _sign_magnitude(self._angle[a == PANGLE2], 1800)
            return
        x = self._vals[a]
        if self._noisy and x:
            # Pre-drawn seeded unit noise: cheap on the hot path, still reproducible from the seed.
            k = self._noise_at
            u = self._noise_tab[k]
            self._noise_at = k + 1 if k + 1 < len(self._noise_tab) else 0
            x = x * (1 + self._noise_rel * u) + self._noise_lsb * u
        v = int(round(x))
        r[a] = (lo if v < lo else hi if v > hi else v) & 0xFFFF
        self._frac[a] = (int((x - v) * 256) & 0xFF) << 8

    # ---- time ----------------------------------------------------------------------------------
    def advance(self, dt_s):
        """Integrate energy over dt_s seconds at the current inputs (exact arithmetic on the inputs)."""
        if self._dirty:
            self._recalc()
        if self._noisy:
            self._gen += 1                           # a new measurement period: new reading noise
        if self._sag and not self._sticky & SAGWARN:
            self._sticky |= SAGWARN                  # still sagging: the event comes back after a read
            self._update_pins()
        run = self._run
        if run[0]:
            self._integrate(0, self._rate[0] * dt_s)
        if run[1]:
            self._integrate(1, self._rate[1] * dt_s)

    def _integrate(self, ch, units):
        """Add `units` (0.01 pulses, signed) on channel ch (0 active, 1 reactive)."""
        r = self.r
        acc = self._acc[ch] + units
        whole = int(acc)                              # toward zero: the residual keeps its sign
        self._acc[ch] = acc - whole
        base = APENERGY if ch == 0 else RPENERGY
        rev_bit, chg_bit = (REVP, REVPCHG) if ch == 0 else (REVQ, REVQCHG)
        if whole > 0:
            old = self._fwd[ch]
            new = old + whole
            self._fwd[ch] = new
            r[base] = (r[base] + new // 10 - old // 10) & 0xFFFF
            if new // 100 != old // 100:
                self._set_direction(rev_bit, chg_bit, False)
                if ch == 0 and self._amod:
                    self.cf_pulses += new // 100 - old // 100
        elif whole < 0:
            old = self._rev[ch]
            new = old - whole
            self._rev[ch] = new
            r[base + 1] = (r[base + 1] + new // 10 - old // 10) & 0xFFFF
            if new // 100 != old // 100:
                self._set_direction(rev_bit, chg_bit, True)
        a = self._acc_abs[ch] + abs(units)
        whole = int(a)
        self._acc_abs[ch] = a - whole
        if whole:
            old = self._abs[ch]
            new = old + whole
            self._abs[ch] = new
            r[base + 2] = (r[base + 2] + new // 10 - old // 10) & 0xFFFF
            if ch == 0 and not self._amod:
                self.cf_pulses += new // 100 - old // 100

    def _set_direction(self, rev_bit, chg_bit, reverse):
        r = self.r
        was = bool(r[ENSTATUS] & rev_bit)
        if was != reverse:
            r[ENSTATUS] ^= rev_bit
            enable = 0x04 if rev_bit == REVP else 0x08     # FuncEn RevPEn / RevQEn
            if r[FUNCEN] & enable:
                self._sticky |= chg_bit
                self._update_pins()

    # ---- the bus side --------------------------------------------------------------------------
    kind = "atm90e26"
    bus = "spi"

    def transfer(self, buf, frame_len=3):
        """Clock k 3-byte frames through the chip, in place (each frame is one chip-select cycle)."""
        n = len(buf)
        if self.fault == "silent":
            buf[:] = b"\xff" * n
            return
        full = n - n % 3
        for o in range(0, full, 3):
            a = buf[o]
            if a & 0x80:
                v = self._read(a & 0x7F)
                buf[o] = 0
                buf[o + 1] = v >> 8
                buf[o + 2] = v & 0xFF
            else:
                self._write(a, (buf[o + 1] << 8) | buf[o + 2])
                buf[o] = buf[o + 1] = buf[o + 2] = 0
        if full != n:
            # Fewer than 24 clocks: no write, a partial read without side effects, LastData unchanged.
            a = buf[full]
            v = self.peek(a & 0x7F) if a & 0x80 else 0
            tail = bytes((0, v >> 8))
            buf[full:] = tail[: n - full]
        if self.fault == "garbage":
            buf[:] = self.rng.randbytes(n)

    def _read(self, addr):
        k = self._kind[addr]
        r = self.r
        if k == _K_PLAIN:
            v = r[addr]
        elif k == _K_MEAS:
            if self._reg_gen[addr] != self._gen:
                self._update_reading(addr)
            v = r[addr]
            if self._rms_like[addr]:
                r[LSB] = self._frac[addr]
        elif k == _K_ENERGY:
            v = r[addr]
            r[addr] = 0
        elif k == _K_LAST:
            return r[LASTDATA]
        elif k == _K_SYS:
            if self._dirty:
                self._recalc()
            v = self._sticky | self._status_errors()
            self._sticky = 0
            self._update_pins()
        elif k == _K_ENSTATUS:
            if self._dirty:
                self._recalc()
            v = r[ENSTATUS]
        elif k == _K_CS1:
            v = checksum(r[a] for a in CAL_BLOCK)
        elif k == _K_CS2:
            v = checksum(r[a] for a in ADJ_BLOCK)
        elif k == _K_WONLY:
            v = 0
        else:
            return 0                                   # invalid address: reads 0, LastData unchanged
        r[LASTDATA] = v
        return v

    def _write(self, addr, value):
        if addr > 0x7F or not self._writable[addr]:
            return                                     # invalid or read-only: discarded
        r = self.r
        if addr == SOFTRESET:
            if value == SOFTRESET_CODE:
                self.power_on_reset()
            else:
                r[LASTDATA] = value
            return
        r[addr] = value
        r[LASTDATA] = value
        if addr == PLCONSTL:
            self._plh_eff = r[PLCONSTH]
        if addr == CALSTART and value == CODE_CALIBRATE:
            for a in CAL_BLOCK:
                r[a] = self._reset_values[a]
            self._plh_eff = r[PLCONSTH]
        elif addr == ADJSTART and value == CODE_CALIBRATE:
            for a in ADJ_BLOCK:
                r[a] = self._reset_values[a]
        if CALSTART <= addr <= CS2:
            self._update_modes()
        self._dirty = True
        self._gen += 1

    def peek(self, addr):
        """A register's value without side effects (no clear-on-read, LastData untouched)."""
        if not 0 <= addr < 128:
            return 0
        k = self._kind[addr]
        if k == _K_MEAS and self._reg_gen[addr] != self._gen:
            self._update_reading(addr)
        elif k == _K_ENSTATUS and self._dirty:
            self._recalc()
        if k == _K_SYS:
            if self._dirty:
                self._recalc()
            return self._sticky | self._status_errors()
        if k == _K_CS1:
            return checksum(self.r[a] for a in CAL_BLOCK)
        if k == _K_CS2:
            return checksum(self.r[a] for a in ADJ_BLOCK)
        if k in (_K_INVALID, _K_WONLY):
            return 0
        return self.r[addr]

    def poke(self, name_or_addr, value):
        """Write a register as the bus would (test and bench convenience)."""
        addr = ADDR[name_or_addr] if isinstance(name_or_addr, str) else name_or_addr
        self._write(addr, value & 0xFFFF)
