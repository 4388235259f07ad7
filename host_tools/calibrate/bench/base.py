"""The calibration bench interface: a programmable source, a reference standard and a scanning head
(or the meter's test output), as the procedure and the verification use them.

A real bench is ONE new file in this folder: subclass `Bench`, implement the methods marked
"must", register its scheme in `bench/__init__.py` (`BENCH_KINDS`). Units: volts, amps, hertz,
watts, watt-hours, seconds. Power factor is signed: +0.5 = 0.5 inductive (current lags), -0.8 = 0.8
capacitive, 1.0 = resistive.
"""
import math

from host_tools.errors import DeviceError


class BenchError(DeviceError):
    """The bench could not do what was asked (source fault, no pulses, lost connection)."""


class InstrumentError(BenchError):
    """An instrument of the bench failed: it did not answer, refused a command, or cannot produce what
    was asked. A fault of the bench, never a verdict on the meter: the procedure stops (exit 3) rather
    than writing a FAILED certificate."""


class PulseGate:
    """One gated comparison: `pulses` whole meter test pulses between two pulse edges, and the
    reference standard's energy over exactly that gate (the classic pulse-gated error measurement)."""

    def __init__(self, pulses, ref_wh, seconds, started_at_s=None):
        self.pulses = pulses
        self.ref_wh = ref_wh
        self.seconds = seconds
        self.started_at_s = started_at_s

    def meter_wh(self, meter_constant):
        return self.pulses * 1000.0 / meter_constant

    def error(self, meter_constant):
        """Relative error of the meter (0.01 = 1 % high); None without energy or pulses."""
        if not self.pulses or self.ref_wh <= 0:
            return None
        return self.meter_wh(meter_constant) / self.ref_wh - 1

    def as_dict(self):
        return {"pulses": self.pulses, "ref_wh": self.ref_wh, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d):
        return cls(d["pulses"], d["ref_wh"], d["seconds"], d.get("started_at_s"))


def pf_to_phi(pf):
    """Signed power factor -> current lag angle in radians (+ inductive, - capacitive)."""
    if not -1.0 <= pf <= 1.0 or pf == 0:
        raise ValueError("power factor must be in [-1, 0) or (0, 1], got %r" % (pf,))
    phi = math.acos(abs(pf))
    return phi if pf > 0 else -phi


class Bench:
    """Abstract bench. Every method blocks until done; time on the bench passes only inside them."""

    kind = "abstract"

    # -- source -------------------------------------------------------------------------------------
    def set(self, volts, amps, pf=1.0, freq_hz=50.0):
        """Must: drive the meter at these values (amps 0 = voltage only). Returns when the source
        reports it has reached them (not when the meter has settled: use run())."""
        raise NotImplementedError

    def off(self):
        """Must: switch voltage and current off."""
        raise NotImplementedError

    # -- time ---------------------------------------------------------------------------------------
    def run(self, seconds):
        """Must: let `seconds` pass at the present source setting (settling, sampling intervals)."""
        raise NotImplementedError

    # -- reference standard -------------------------------------------------------------------------
    def reference(self, seconds):
        """Must: average the reference standard over the next `seconds`: a dict with volts, amps,
        watts, vars, pf (signed), freq_hz, wh (energy over the interval) and seconds."""
        raise NotImplementedError

    def reference_energy_wh(self):
        """Must: the reference standard's running active energy register (Wh, since bench start)."""
        raise NotImplementedError

    # -- scanning head / test output ----------------------------------------------------------------
    def gate(self, min_seconds, min_pulses=1, timeout_s=60.0):
        """Must: wait for a meter test pulse edge, then count whole pulses until the first edge at
        least `min_seconds` and `min_pulses` later; return a PulseGate with the reference energy over
        the same gate. Raises BenchError when no edge arrives within timeout_s (a meter that does
        not register)."""
        raise NotImplementedError

    def count_pulses(self, seconds):
        """Must: meter test pulses counted over the next `seconds` (starting and creep tests)."""
        raise NotImplementedError

    # -- bookkeeping --------------------------------------------------------------------------------
    def elapsed_s(self):
        """Must: bench time used since the bench was opened (seconds of the bench's own clock)."""
        raise NotImplementedError

    def info(self):
        """Identity for certificates: kind, reference class, serial numbers if known."""
        return {"kind": self.kind}

    def close(self):
        """Leave the source off and release the connection."""
        try:
            self.off()
        except (DeviceError, NotImplementedError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
