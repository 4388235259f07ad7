"""Calibration of the chips whose calibration is a set of scales rather than the ATM90E26's checksummed
blocks: the ADE7953 (gain registers AVGAIN/AIGAIN/BIGAIN/AWGAIN and the phase register PHCALA, CF1 as
the test output at a faster CF1DEN) and the BL0942 (no gain or phase registers: the firmware's scales
for V, I, P and the energy of one CF pulse, measured against the reference). Each procedure returns the
same result shape as procedure.Procedure, so run_lab verifies and certifies every chip alike."""
import math

from host_tools.calibrate import formulas as F
from host_tools.calibrate.bench.base import BenchError

SETTINGS = {"settle_s": 0.5, "samples": 8, "sample_every_s": 0.1, "gate_s": 3.0, "gate_timeout_s": 60.0,
            "tolerance_pct": 0.04, "max_rounds": 3, "bl0942_gate_s": 30.0, "bl0942_gate_pulses": 20}

GAIN_ONE = 0x400000
GAIN_RANGE = (0x200000, 0x600000)
PHCAL_S = 1.117e-6              # one PHCALA LSB delays (or advances, bit 9) the current by 1.117 us
PHCAL_MAX = 383


class CFOutput:
    """The chip's CF output as the bench sees it: `test_constant` imp/kWh while calibrating and
    verifying; `view(regs)` the registers to run with on the bench, `normal(regs)` those to keep."""

    def __init__(self, test_constant, factor=1, requested=1, den_name=None, normal_den=None):
        self._constant = test_constant
        self.factor = factor
        self.requested = requested
        self.den_name = den_name
        self.normal_den = normal_den

    @property
    def test_constant(self):
        return self._constant() if callable(self._constant) else self._constant

    def view(self, regs):
        out = dict(regs)
        if self.den_name:
            out[self.den_name] = self.normal_den // self.factor
        return out

    def normal(self, regs):
        out = dict(regs)
        if self.den_name:
            out[self.den_name] = self.normal_den
        return out

    def fit(self, regs):
        return False

    def info(self):
        return {"factor": self.factor, "requested_factor": self.requested,
                "test_constant_imp_per_kwh": self.test_constant}


class _Scaled:
    """Shared steps: source settings, pulse-gated errors, sampled raw registers against the reference."""
    REGS = {}
    SIGNED = ()

    def __init__(self, mut, bench, output, settings=None, log=None):
        self.mut = mut
        self.bench = bench
        self.out = output
        self.s = dict(SETTINGS, **(settings or {}))
        self.log = log or (lambda msg: None)
        d = mut.design
        self.un, self.ib, self.f = float(d["un_v"]), float(d["ib_a"]), float(d.get("f_hz", 50))
        self.regs = dict(mut.cal)
        self.steps, self.rounds, self.problems, self.warnings = {}, [], [], []

    def write(self):
        self.mut.cal_set(self.out.view(self.regs), persist=False)

    def source(self, amps, pf):
        self.bench.set(self.un, amps, pf, self.f)
        self.bench.run(self.s["settle_s"])

    def energy_error(self, label, gate_s=None, pulses=1):
        g = self.bench.gate(gate_s or self.s["gate_s"], pulses, self.s["gate_timeout_s"] * (10 if gate_s else 1))
        e = g.error(self.out.test_constant)
        self.log("  %s: %d pulses in %.3f s, error %+.4f %%" % (label, g.pulses, g.seconds, e * 100))
        return e, g

    def sample(self, names):
        """Mean raw readings of the named registers and the reference over the same time."""
        sums = [0.0] * len(names)
        refs = []
        n = self.s["samples"]
        for _ in range(n):
            refs.append(self.bench.reference(self.s["sample_every_s"]))
            vals = self.mut.raw_read([self.REGS[k] for k in names])
            for k, (name, v) in enumerate(zip(names, vals)):
                if name in self.SIGNED and v & 0x800000:
                    v -= 0x1000000
                sums[k] += v
        ref = {key: sum(r[key] for r in refs) / n for key in ("volts", "amps", "watts")}
        return {name: sums[k] / n for k, name in enumerate(names)}, ref

    def run(self):
        try:
            self._run()
        except BenchError as e:
            return self.result("FAILED", "the meter does not register energy at the calibration points: %s" % e)
        if self.problems:
            return self.result("FAILED", "the front end is outside what calibration can correct: " +
                               "; ".join(self.problems))
        return self.result("CALIBRATED", None)

    def result(self, status, reason):
        return {"status": status, "reason": reason, "registers": self.out.normal(self.regs),
                "rounds": self.rounds, "steps": self.steps, "problems": list(self.problems),
                "warnings": list(self.warnings),
                "uncalibrated_error_pct": dict(self.rounds[0]) if self.rounds else None}


class ADE7953Procedure(_Scaled):
    """RMS gains at Un/Ib against the board's scales, then AWGAIN and PHCALA from the pulse-gated errors
    at Ib PF 1 and PF 0.5 inductive, repeated until both are within tolerance."""
    REGS = {"VRMS": 0x21C, "IRMSA": 0x21A, "IRMSB": 0x21B, "AWATT": 0x212}
    SIGNED = ("AWATT",)

    def _gain(self, name, old, target, measured):
        new = int(round(old * target / measured)) if measured > 0 else 0
        if not GAIN_RANGE[0] <= new <= GAIN_RANGE[1]:
            self.problems.append("%s would need %d (allowed %d..%d)" % (name, new, GAIN_RANGE[0], GAIN_RANGE[1]))
            return old
        return new

    def _run(self):
        sc = self.mut.design.get("scales", {})
        self.write()
        self.log("gains at Un %g V, Ib %g A, PF 1" % (self.un, self.ib))
        self.source(self.ib, 1.0)
        m, ref = self.sample(["VRMS", "IRMSA", "IRMSB"])
        self.steps["rms_at_ib"] = {"meter": m, "reference": ref}
        r = self.regs
        r["AVGAIN"] = self._gain("AVGAIN", r["AVGAIN"], sc.get("vrms_per_v", 26000) * ref["volts"], m["VRMS"])
        r["AIGAIN"] = self._gain("AIGAIN", r["AIGAIN"], sc.get("irms_per_a", 100000) * ref["amps"], m["IRMSA"])
        r["BIGAIN"] = self._gain("BIGAIN", r["BIGAIN"], sc.get("irmsb_per_a", 100000) * ref["amps"], m["IRMSB"])
        tol = self.s["tolerance_pct"] / 100.0
        for n in range(self.s["max_rounds"]):
            if n:
                self.log("pass %d" % (n + 1))
            self.source(self.ib, 1.0)
            e1, _ = self.energy_error("Ib PF 1")
            self.source(self.ib, 0.5)
            e05, _ = self.energy_error("Ib PF 0.5L")
            self.rounds.append({"pf1_pct": e1 * 100, "pf05l_pct": e05 * 100})
            if n and abs(e1) <= tol and abs(e05) <= tol:
                break
            g, d = F.split_gain_phase(e1, e05)
            r["AWGAIN"] = self._gain("AWGAIN", r["AWGAIN"], 1.0, 1 + g)
            r["PHCALA"] = self._phcal(r.get("PHCALA", 0), d)
            if self.problems:
                return
            self.write()

    def _phcal(self, old, extra_lag_rad):
        """PHCALA (10-bit sign-magnitude, bit 9 = advance) that cancels a measured extra current lag."""
        now = -(old & 0x1FF) if old & 0x200 else old & 0x1FF          # + delays the current
        new = int(round(now - extra_lag_rad / (2 * math.pi * self.f * PHCAL_S)))
        if abs(new) > PHCAL_MAX:
            self.problems.append("PHCALA would need %d (allowed +-%d): phase error %.2f deg"
                                 % (new, PHCAL_MAX, math.degrees(extra_lag_rad)))
            return old
        return (0x200 | -new) if new < 0 else new


class BL0942Procedure(_Scaled):
    """The scales of V, I and P from sampled registers at Un/Ib PF 1, the energy of one CF pulse from a
    long pulse-gated comparison, then the errors at PF 1 and PF 0.5 inductive. The chip has no phase
    register: a front end whose phase error puts PF 0.5 outside the class cannot be corrected, and
    verification says so."""
    REGS = {"I_RMS": 0x03, "V_RMS": 0x04, "WATT": 0x06}
    SIGNED = ("WATT",)

    def _run(self):
        self.write()
        self.log("scales at Un %g V, Ib %g A, PF 1" % (self.un, self.ib))
        self.source(self.ib, 1.0)
        m, ref = self.sample(["V_RMS", "I_RMS", "WATT"])
        self.steps["rms_at_ib"] = {"meter": m, "reference": ref}
        r = self.regs
        for name, reading, unit in (("uref", "V_RMS", "volts"), ("iref", "I_RMS", "amps"), ("pref", "WATT", "watts")):
            if m[reading] <= 0 or ref[unit] <= 0:
                self.problems.append("%s: the chip reads %s = %d at %.3f %s" % (name, reading, m[reading], ref[unit], unit))
                continue
            r[name] = int(round(m[reading] / ref[unit] * 1000))
        e1, g = self.energy_error("Ib PF 1 (uncalibrated)", self.s["bl0942_gate_s"], self.s["bl0942_gate_pulses"])
        self.source(self.ib, 0.5)
        e05, _ = self.energy_error("Ib PF 0.5L (uncalibrated)")
        self.rounds.append({"pf1_pct": e1 * 100, "pf05l_pct": e05 * 100})
        r["cf_uwh"] = int(round(g.ref_wh * 1e6 / g.pulses))
        self.write()
        self.source(self.ib, 1.0)
        e1, _ = self.energy_error("Ib PF 1", self.s["bl0942_gate_s"], self.s["bl0942_gate_pulses"])
        self.source(self.ib, 0.5)
        e05, _ = self.energy_error("Ib PF 0.5L")
        self.rounds.append({"pf1_pct": e1 * 100, "pf05l_pct": e05 * 100})
        _, d = F.split_gain_phase(e1, e05)
        self.steps["phase_error_deg"] = math.degrees(d)
        if abs(e05) > 0.005:
            self.warnings.append("PF 0.5L reads %+.2f %% (a front-end phase error of %.2f deg): the BL0942 has no "
                                 "phase register to correct it" % (e05 * 100, math.degrees(d)))


def output_for(chip, cal, design, requested):
    """The CF test output for `chip` on the bench (ADE7953: CF1DEN divided by the largest factor up to
    `requested` that divides it; BL0942: its own CF at the calibrated energy per pulse)."""
    if chip == "ade7953":
        den = int(cal.get("CF1DEN", 7500))
        factor = max(f for f in range(1, max(1, requested) + 1) if den % f == 0)
        counts = design.get("scales", {}).get("counts_per_kwh", 24000000)
        return CFOutput(counts / (den // factor), factor, requested, "CF1DEN", den)
    if chip == "bl0942":
        out = CFOutput(None)
        out._constant = lambda: 1e9 / out.cal["cf_uwh"]
        out.cal = cal
        return out
    raise ValueError("no scaled calibration for %r" % chip)


PROCEDURES = {"ade7953": ADE7953Procedure, "bl0942": BL0942Procedure}
