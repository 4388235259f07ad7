"""Simulated lab instruments with real physics: the pyvisa-sim generic source and meter
(`sim_instruments.yaml`) coupled to a simulated meter's world, so `VisaBench` can calibrate a simulated
meter end to end through real PyVISA sessions.

What is real here: PyVISA, the pyvisa-sim message sessions (terminations, command matching, the
instruments' ranges and error queues, timeouts), the VisaBench driver and its profiles. What is
simulated: the instruments' physics. Every message the driver sends goes to pyvisa-sim first; then a
hook makes the world follow what the instrument accepted (the source's output is read back from the
instrument's own settings, so a refused value changes nothing) and, before a readings query, puts the
world's measured values into the instrument's answer. The source and reference standard are those of
`SimBench` (same seeded source wander and class 0.02 reference), the pulse input is the chip's CF
output watched at every 1 ms step. Time is the world's (`SimClock`)."""
import math

from host_tools.calibrate.bench.base import BenchError
from host_tools.calibrate.bench.sim import SimBench
from host_tools.errors import UsageError

COUPLED_PROFILES = ("generic-scpi-source", "generic-scpi-meter")


class SimClock:
    """The bench's time is the simulated world's: sleeping runs the meter."""

    def __init__(self, sim_bench):
        self.sb = sim_bench

    def sleep(self, seconds):
        if seconds > 0:
            self.sb.run(seconds)

    def now(self):
        return self.sb.world.now_ms / 1000.0


def device_of(res):
    """The pyvisa-sim device behind an open resource."""
    return res.visalib.sessions[res.session].device


def _prop(device, name):
    return device._properties[name].get_value()


def _put(device, name, value):
    """Give the instrument's answer `name` the world's value; an instrument defined without that
    answer (the hung meter) stays silent."""
    if name in device._properties:
        device._properties[name].set_value(value)


class Coupled:
    """A pyvisa-sim resource that tells `hook` about each message: written(msg) after the instrument
    took it, asking(msg) before a query is sent (so the answer can carry the world's values)."""

    def __init__(self, res, hook):
        object.__setattr__(self, "_res", res)
        object.__setattr__(self, "_hook", hook)

    def __getattr__(self, name):
        return getattr(self._res, name)

    def __setattr__(self, name, value):
        setattr(self._res, name, value)

    def write(self, msg):
        n = self._res.write(msg)
        self._hook.written(msg.strip())
        return n

    def query(self, msg):
        self._hook.asking(msg.strip())
        return self._res.query(msg)

    def close(self):
        self._res.close()


class SourceHook:
    """The generic source's accepted settings drive SimBench's source."""

    def __init__(self, sim_bench, device):
        self.sb = sim_bench
        self.dev = device

    def written(self, msg):
        d = self.dev
        if _prop(d, "output") != "ON":
            self.sb.off()
            return
        phase = float(_prop(d, "phase_deg"))
        pf = math.cos(math.radians(phase))
        if abs(pf) < 1e-9:
            pf = 1e-9
        pf = abs(pf) if phase >= 0 else -abs(pf)
        if abs(phase) < 1e-9:
            pf = 1.0
        self.sb.set(float(_prop(d, "volts")), float(_prop(d, "amps")), pf, float(_prop(d, "freq_hz")))

    def asking(self, msg):
        pass


class MeterHook:
    """The generic meter reads SimBench's reference standard: readings averaged over the last
    integration interval (its instantaneous values when none has run since the source changed), an
    integrator, a pulse gate and a pulse counter on the chip's CF output."""

    def __init__(self, sim_bench, device):
        self.sb = sim_bench
        self.dev = device
        self.world = sim_bench.world
        self._integ = [0.0, 0.0]                 # Wh, seconds
        self._from = None                        # (ms, integrals) at INTEG:STAR
        self._window = None                      # ((ms, integrals), (ms, integrals)) of the last interval
        self._count_from = self._count_to = None

    def _snapshot(self):
        return self.world.now_ms, self.sb.integrals()

    def _readings(self):
        sb = self.sb
        if self._window is None:
            v, i, phi, f = sb.signals()
            return (v * sb.ref_v_gain, i * sb.ref_i_gain, v * i * math.cos(phi) * sb.ref_gain,
                    v * i * math.sin(phi) * sb.ref_gain, f)
        (t0, a0), (t1, a1) = self._window
        t = (t1 - t0) / 1000.0
        d = [x - y for x, y in zip(a1, a0)]
        return (math.sqrt(max(d[4], 0) / t) * sb.ref_v_gain, math.sqrt(max(d[5], 0) / t) * sb.ref_i_gain,
                d[0] / t * sb.ref_gain, d[1] / t * sb.ref_gain, sb.freq_hz)

    def written(self, msg):
        sb, w = self.sb, self.world
        if msg == "INTEG:RES":
            self._integ = [0.0, 0.0]
            self._from = self._window = None
        elif msg == "INTEG:STAR":
            self._from = self._snapshot()
        elif msg == "INTEG:STOP" and self._from:
            end = self._snapshot()
            if end[0] > self._from[0]:
                self._window = (self._from, end)
                self._integ[0] += (end[1][0] - self._from[1][0]) * sb.ref_gain / 3600.0
                self._integ[1] += (end[0] - self._from[0]) / 1000.0
            self._from = None
        elif msg == "GATE:INIT":
            # The instrument gates in hardware while the host polls; here the world runs the gate now.
            try:
                g = sb.gate(float(_prop(self.dev, "gate_time")), int(_prop(self.dev, "gate_pulses")),
                            float(_prop(self.dev, "gate_timeout")))
            except BenchError:
                _put(self.dev, "gate_state", "TOUT")
                return
            _put(self.dev, "gate_data", "%d,%.9f,%.6f" % (g.pulses, g.ref_wh, g.seconds))
            _put(self.dev, "gate_state", "DONE")
        elif msg == "PULS:COUN:RES":
            self._count_from = self._count_to = None
        elif msg == "PULS:COUN:STAR":
            self._count_from, self._count_to = w.chip.cf_pulses, None
        elif msg == "PULS:COUN:STOP" and self._count_from is not None:
            self._count_to = w.chip.cf_pulses

    def asking(self, msg):
        if msg == "MEAS:ALL?":
            v, i, p, q, f = self._readings()
            s = math.hypot(p, q)
            pf = (p / s if s > 0 else 1.0) * (-1 if q < 0 else 1)
            _put(self.dev, "measure", "%.6f,%.7f,%.6f,%.6f,%.6f,%.4f" % (v, i, p, q, pf, f))
        elif msg == "INTEG:DATA?":
            _put(self.dev, "integ", "%.9f,%.6f" % tuple(self._integ))
        elif msg == "PULS:COUN?":
            c0 = self._count_from
            c1 = self._count_to if self._count_to is not None else self.world.chip.cf_pulses
            _put(self.dev, "count", 0 if c0 is None else c1 - c0)


def open_coupled(argument, meter, library, seed=0, timeout_ms=2000):
    """A VisaBench over pyvisa-sim's generic source and meter, coupled to `meter`'s world (an in-process
    SimMeter or any object with `.world` and `.run_for(seconds)`)."""
    from host_tools.calibrate.bench.visa import open_visa_bench, resource_manager
    sb = SimBench(meter, seed=seed)
    bench = open_visa_bench(argument, rm=resource_manager(library), clock=SimClock(sb), timeout_ms=timeout_ms,
                            wrap_source=lambda res: Coupled(res, SourceHook(sb, device_of(res))),
                            wrap_meter=lambda res: Coupled(res, MeterHook(sb, device_of(res))))
    models = (bench.source.profile["model"], bench.meter.profile["model"])
    if models != COUPLED_PROFILES:
        bench.close()
        sb.detach()
        raise UsageError("simulated instruments are coupled to a simulated meter only as %s, not %s"
                         % (" + ".join(COUPLED_PROFILES), " + ".join(models)),
                         hint="use the generic resources of sim_instruments.yaml (ASRL1::INSTR, ASRL2::INSTR)")
    bench.on_close.append(sb.detach)
    bench.simulated = {"instruments": "pyvisa-sim (%s)" % library, "physics": "SimBench on the simulated meter",
                       "source_jitter": dict(sb.jitter), "seed": seed,
                       "edge_resolution_s": 0.001}
    return bench
