"""The ATM90E26 calibration procedure on a bench: RMS gains at Un/Ib, active energy gain (Lgain) and
phase (Lphi) from pulse-gated energy comparisons at Ib PF 1 and PF 0.5 inductive, no-load offsets
(current RMS, power via small-power mode), the neutral channel, start-up/no-load thresholds from the
design, and a second pass. Registers go to the meter with `cal_set`; a front end the registers cannot
correct ends as FAILED with the numbers and the reason, never forced.

The whole procedure runs with the chip's high-rate test output (target.HighRateOutput): the registers
computed and returned are the normal-mode ones."""
from host_tools.calibrate import formulas as F
from host_tools.calibrate.bench.base import BenchError, InstrumentError

SETTINGS = {
    "settle_s": 0.5,               # after each source change, before sampling or gating
    "samples": 8,                  # RMS/power readings averaged per point
    "sample_every_s": 0.1,
    "max_samples": 32,             # keep sampling up to this while readings move
    "gate_s": 3.0,                 # minimum pulse-gated comparison for Lgain/Lphi (edge error < 1 ms/3 s)
    "gate_timeout_s": 30.0,
    "tolerance_pct": 0.04,         # a pass whose PF 1 and PF 0.5L errors are both within ends the iteration
    "max_rounds": 3,
    "start_of_starting_current": 0.75,    # PStartTh at 75 % of the class's starting current
    "noload_of_starting_current": 0.60,   # PNolTh below it: creep with voltage only is cut off
    "neutral_gain_min_pct": 0.05,  # Ngain only when the neutral power is further off than this
}
# How far an RMS reading's ratio to the reference may move between the two halves of a sample set.
_SETTLE_TOL = 5e-4


def nominal_registers(cal):
    """The start of every calibration: the chip's nominal gains, no offsets, no corrections. Board-
    specific settings (MMode, thresholds) are kept."""
    regs = {k: cal[k] for k in cal if k not in ("PLconstH", "PLconstL")}
    regs.update(F.NOMINAL_GAINS)
    for k in ("Uoffset", "IoffsetL", "IoffsetN", "PoffsetL", "QoffsetL", "PoffsetN", "QoffsetN",
              "Lgain", "Lphi", "Ngain", "Nphi"):
        regs[k] = 0
    return regs


class Procedure:
    """One meter's calibration. `run()` returns a result dict: status CALIBRATED or FAILED, reason,
    registers (normal mode), rounds (the errors measured each pass), steps (what was measured)."""

    def __init__(self, mut, bench, output, starting_fraction_ib, settings=None, log=None):
        self.mut = mut
        self.bench = bench
        self.out = output
        self.starting = starting_fraction_ib
        self.s = dict(SETTINGS, **(settings or {}))
        self.log = log or (lambda msg: None)
        d = mut.design
        self.un, self.ib, self.f = float(d["un_v"]), float(d["ib_a"]), float(d.get("f_hz", 50))
        self.v_u, self.v_l, _ = F.design_pins(d)
        self.regs = nominal_registers(mut.cal)
        self.mmode = self.regs["MMode"]
        self.steps = {}
        self.rounds = []
        self.problems = []
        self.warnings = []

    # -- helpers --------------------------------------------------------------------------------------
    def write(self):
        """Write the test-mode view of the registers (not stored: a reboot brings back the old
        calibration until the final write)."""
        self.mut.cal_set(self.out.view(self.regs), persist=False)

    def source(self, amps, pf, volts=None):
        self.bench.set(self.un if volts is None else volts, amps, pf, self.f)
        self.bench.run(self.s["settle_s"])

    def energy_error(self, label):
        """Pulse-gated relative error at the present source setting."""
        g = self.bench.gate(self.s["gate_s"], 1, self.s["gate_timeout_s"])
        e = g.error(self.out.test_constant)
        self.log("  %s: %d pulses in %.3f s, error %+.4f %%" % (label, g.pulses, g.seconds, e * 100))
        return e

    def sample(self, names, tolerance=None):
        return self.mut.sample(self.bench, names, self.s["samples"], self.s["sample_every_s"],
                               tolerance=tolerance, max_n=self.s["max_samples"])

    def attempt(self, fn, *args):
        """A register computation; a RangeProblem is collected (the meter FAILS), not raised."""
        try:
            return fn(*args)
        except F.RangeProblem as e:
            self.problems.append(str(e))
            return None

    # -- the steps ------------------------------------------------------------------------------------
    def run(self):
        try:
            self._run()
        except InstrumentError:
            raise                       # the bench failed, not the meter: no verdict
        except BenchError as e:
            return self.result("FAILED", "the meter does not register energy at the calibration points: %s" % e)
        if self.problems:
            return self.result("FAILED", "the front end is outside what the registers can correct: " +
                               "; ".join(self.problems))
        return self.result("CALIBRATED", None)

    def _run(self):
        self.write()
        # 1. Un, Ib, PF 1: RMS gains, and the uncalibrated energy error.
        self.log("gains at Un %g V, Ib %g A, PF 1" % (self.un, self.ib))
        self.source(self.ib, 1.0)
        means, ref = self.sample(["Urms", "Irms", "Irms2"], _SETTLE_TOL)
        self.steps["rms_at_ib"] = {"meter": means, "reference": ref}
        ug = self.attempt(F.rms_gain, "Ugain", self.regs["Ugain"], ref["volts"] * 100, means["Urms"])
        ig = self.attempt(F.rms_gain, "IgainL", self.regs["IgainL"], ref["amps"] * 1000, means["Irms"])
        ng = self.attempt(F.rms_gain, "IgainN", self.regs["IgainN"], ref["amps"] * 1000, means["Irms2"])
        ratio_u = means["Urms"] / (ref["volts"] * 100)
        ratio_i = means["Irms"] / (ref["amps"] * 1000) if means["Irms"] else 1.0
        self.steps["front_end_ratios"] = {"voltage": ratio_u, "current": ratio_i}
        e1 = self.energy_error("Ib PF 1")
        self.source(self.ib, 0.5)
        e05 = self.energy_error("Ib PF 0.5L")
        self.rounds.append({"pf1_pct": e1 * 100, "pf05l_pct": e05 * 100})
        if ug:
            self.regs.update({"Ugain": ug})
            if "SagTh" in self.regs:
                # The sag threshold is compared with gain-corrected Urms: keep its voltage.
                sag = int(round(self.regs["SagTh"] * F.NOMINAL_GAINS["Ugain"] / ug))
                self.regs["SagTh"] = max(1, min(0xFFFF, sag))
        if ig:
            self.regs["IgainL"] = ig
        if ng:
            self.regs["IgainN"] = ng
        self._gain_phase(e1, e05)
        self._thresholds(ratio_u, ratio_i)
        if self.problems:
            return
        self.write()
        # 2. No load: current RMS offsets, then power offsets in small-power mode.
        self._offsets()
        if self.problems:
            return
        self.write()
        # 3. Further passes at Ib PF 1 and PF 0.5L until both errors are within tolerance.
        tol = self.s["tolerance_pct"] / 100.0
        for n in range(1, self.s["max_rounds"]):
            self.log("pass %d" % (n + 1))
            self.source(self.ib, 1.0)
            e1 = self.energy_error("Ib PF 1")
            p1, r1 = self.sample(["Pmean2"])
            self.source(self.ib, 0.5)
            e05 = self.energy_error("Ib PF 0.5L")
            p05, r05 = self.sample(["Pmean2"])
            self.rounds.append({"pf1_pct": e1 * 100, "pf05l_pct": e05 * 100})
            neutral_changed = n == 1 and self._neutral(p1["Pmean2"] / r1["watts"] - 1,
                                                       p05["Pmean2"] / r05["watts"] - 1)
            if abs(e1) <= tol and abs(e05) <= tol:
                if neutral_changed:
                    self.write()
                break
            self._gain_phase(e1, e05)
            if self.problems:
                return
            self.write()

    def _gain_phase(self, e1, e05):
        g, d = F.split_gain_phase(e1, e05)
        lg = self.attempt(F.lgain_for, self.regs["Lgain"], g)
        lp = self.attempt(F.phi_for, "Lphi", self.regs["Lphi"], d, self.f)
        if lg is not None:
            self.regs["Lgain"] = lg
        if lp is not None:
            self.regs["Lphi"] = lp

    def _neutral(self, en1, en05):
        """Nphi always, Ngain only when the neutral power is off by more than the setting."""
        g, d = F.split_gain_phase(en1, en05)
        self.steps["neutral_errors_pct"] = {"pf1": en1 * 100, "pf05l": en05 * 100}
        old = (self.regs["Ngain"], self.regs["Nphi"])
        nphi = self.attempt(F.phi_for, "Nphi", self.regs["Nphi"], d, self.f)
        if nphi is not None:
            self.regs["Nphi"] = nphi
        if abs(g) * 100 > self.s["neutral_gain_min_pct"]:
            ngain = self.attempt(F.lgain_for, self.regs["Ngain"], g)
            if ngain is not None:
                self.regs["Ngain"] = ngain
        return (self.regs["Ngain"], self.regs["Nphi"]) != old

    def _thresholds(self, ratio_u, ratio_i):
        """Start-up and no-load thresholds for this meter's real pin voltages: the chip compares its
        uncorrected input with them, so a shunt that reads 5 % low needs a 5 % lower threshold."""
        v_u, v_l = self.v_u * ratio_u, self.v_l * ratio_i
        st = self.attempt(F.threshold, self.mmode, v_l, v_u, self.starting * self.s["start_of_starting_current"])
        nl = self.attempt(F.threshold, self.mmode, v_l, v_u, self.starting * self.s["noload_of_starting_current"])
        if st is not None and nl is not None:
            self.regs.update(PStartTh=st, QStartTh=st, PNolTh=nl, QNolTh=nl)

    def _offsets(self):
        self.log("offsets at no load")
        self.source(0.0, 1.0)
        m, _ = self.sample(["Irms", "Irms2"])
        self.steps["no_load_rms"] = m
        io = self._rms_offset("IoffsetL", m["Irms"], self.regs["IgainL"])
        ino = self._rms_offset("IoffsetN", m["Irms2"], self.regs["IgainN"])
        # Power offsets at the normal PL_constant: in test mode the no-load power, scaled up by the
        # factor, could saturate the small-power reading.
        self.mut.cal_set(self.out.normal(self.regs), persist=False)
        self.mut.small_power_mode(True)
        try:
            p, _ = self.sample(["Pmean", "Qmean", "Pmean2", "Qmean2"])
        finally:
            self.mut.small_power_mode(False)
        self.steps["no_load_small_power"] = p
        vals = {"IoffsetL": io, "IoffsetN": ino}
        for reg, name in (("PoffsetL", "Pmean"), ("QoffsetL", "Qmean"),
                          ("PoffsetN", "Pmean2"), ("QoffsetN", "Qmean2")):
            if abs(p[name]) >= 32766:
                self.problems.append("%s: the no-load %s saturates the small-power reading (more than %.0f W of "
                                     "crosstalk), beyond the offset register" % (reg, name, 32767 * self._small_w()))
                continue
            vals[reg] = self.attempt(F.power_offset, reg, p[name])
        self.regs.update({k2: v for k2, v in vals.items() if v is not None})
        if not self.problems and self.out.fit(self.regs):
            self.steps["test_output_reduced"] = ("the power offset needs a slower test output: x%d instead of x%d"
                                                 % (self.out.factor, self.out.requested))
            self.log("  " + self.steps["test_output_reduced"])

    def _rms_offset(self, reg, floor, gain):
        """The current RMS offset; one beyond the register's reach is a warning, not a failure: it only
        affects the current reading near zero, never energy (which the class judges)."""
        try:
            return F.rms_offset(reg, max(0.0, floor), gain)
        except F.RangeProblem:
            left = (floor * floor - 32768 * 256.0 / gain) ** 0.5
            self.warnings.append("%s at its limit: with no current the reading stays at about %.0f mA (%.0f mA "
                                 "uncorrected)" % (reg, left, floor))
            return F.u16(-32768)

    def _small_w(self):
        """Watts per small-power LSB at the present gains (k_s = Ugain*IgainL/(1e5*2^22))."""
        return self.regs["Ugain"] * self.regs["IgainL"] / (100000.0 * (1 << 22))

    def result(self, status, reason):
        return {"status": status, "reason": reason, "registers": self.out.normal(self.regs),
                "rounds": self.rounds, "steps": self.steps, "problems": list(self.problems),
                "warnings": list(self.warnings),
                "uncalibrated_error_pct": dict(self.rounds[0]) if self.rounds else None}
