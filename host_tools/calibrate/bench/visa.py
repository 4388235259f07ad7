"""The lab's real bench: a programmable AC source and a reference power meter speaking SCPI through
PyVISA (serial `ASRL...`, USB-TMC `USB0::...` or LAN `TCPIP0::...` resources), each model's command
set in one profile (`bench/profiles/*.json`).

`--bench visa:SOURCE_RESOURCE,METER_RESOURCE[,SOURCE_PROFILE+METER_PROFILE]`; without profiles each
instrument is identified by its *IDN? answer. Every command is followed by the instrument's error
queue (`SYST:ERR?` or the profile's query): an entry is a BenchError naming the instrument, the
command and the entry. A VISA timeout is a BenchError saying which instrument did not answer what.
On every failure path the source's output is switched off before the error goes on.

Time on a real bench is the wall clock (`WallClock`); a test couples the instruments to a simulated
meter's world and passes that world's clock instead (`bench/visa_sim.py`).
"""
import math
import re
import time
from pathlib import Path

from host_tools.calibrate.bench import profiles as P
from host_tools.calibrate.bench.base import Bench, BenchError, InstrumentError, PulseGate, pf_to_phi
from host_tools.errors import UsageError

DEFAULT_TIMEOUT_MS = 5000
_MAX_ERRORS = 16          # entries drained from an error queue at most (a queue that never empties)
_POLL_S = 0.05            # how often a running gate or a counter is asked about


class WallClock:
    """The bench's time on a real bench."""

    def __init__(self):
        self._t0 = time.monotonic()

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds)

    def now(self):
        return time.monotonic() - self._t0


class Instrument:
    """One instrument: a PyVISA message resource plus its profile. `write` checks the error queue after
    the command; `query` turns a timeout into a BenchError. `role` is "source" or "reference meter"."""

    def __init__(self, resource, profile, role, name):
        self.res = resource
        self.profile = profile
        self.role = role
        self.name = name
        self.idn = None
        self._no_error = re.compile(profile["no_error"])

    def label(self):
        return "%s %s (%s)" % (self.role, self.profile.get("model", "?"), self.name)

    def _visa_error(self, e, cmd):
        from pyvisa import constants, errors
        if isinstance(e, errors.VisaIOError) and e.error_code == constants.StatusCode.error_timeout:
            ms = getattr(self.res, "timeout", None)
            return InstrumentError("the %s did not answer %r within %s ms" % (self.label(), cmd, ms),
                              hint="check its cable, resource string and remote mode; a command it does not "
                                   "know can also leave it silent (is the profile the right model?)")
        return InstrumentError("the %s failed on %r: %s" % (self.label(), cmd, e),
                          hint="check the connection and that no other program holds the instrument")

    def raw_query(self, cmd):
        try:
            return self.res.query(cmd).strip()
        except Exception as e:          # pyvisa raises VisaIOError, OSError or serial errors by backend
            raise self._visa_error(e, cmd) from None

    def errors(self):
        """Drain the error queue: the entries that are not "no error"."""
        out = []
        for _ in range(_MAX_ERRORS):
            entry = self.raw_query(self.profile["error_query"])
            if self._no_error.search(entry):
                return out
            out.append(entry)
        out.append("(more: the queue did not empty after %d reads)" % _MAX_ERRORS)
        return out

    def check(self, after):
        errs = self.errors()
        if errs:
            raise InstrumentError("the %s reported %s after %r" % (self.label(), "; ".join(errs), after),
                             hint="the instrument refused the command: a value out of its range, a wrong "
                                  "profile, or the instrument in local mode")

    def write(self, cmd):
        try:
            self.res.write(cmd)
        except Exception as e:
            raise self._visa_error(e, cmd) from None
        self.check(cmd)

    def write_all(self, cmds, **values):
        for c in cmds:
            self.write(c.format(**values))

    def query(self, cmd):
        """A query's answer; the error queue is read only when the query did not answer."""
        try:
            return self.raw_query(cmd)
        except BenchError as e:
            try:
                errs = self.errors()
            except BenchError:
                errs = []
            if errs:
                e.message += "; its error queue holds: " + "; ".join(errs)
            raise e from None

    def numbers(self, cmd, fields):
        """Query and parse a comma-separated answer into {field: float} (None fields are skipped)."""
        text = self.query(cmd)
        parts = [p.strip() for p in text.split(",")]
        if len(parts) < len(fields):
            raise InstrumentError("the %s answered %r to %r: %d value(s), %d expected" % (
                self.label(), text, cmd, len(parts), len(fields)), hint="is the profile the right model?")
        out = {}
        for name, part in zip(fields, parts):
            if name is None:
                continue
            try:
                out[name] = float(part.split()[-1]) if part else float("nan")
            except ValueError:
                raise InstrumentError("the %s answered %r to %r: %r is not a number" % (self.label(), text, cmd, part),
                                 hint="is the profile the right model, with headers off?") from None
        return out

    def close(self):
        try:
            self.res.close()
        except Exception:       # closing a resource that is already gone must not hide the real error
            pass


class VisaBench(Bench):
    """A bench of two SCPI instruments: `source` (drives the meter) and `meter` (the reference power
    meter; with a pulse input it also gates and counts the meter's test pulses)."""

    kind = "visa"

    def __init__(self, source, meter, clock=None, settle_s=0.0):
        self.source = source
        self.meter = meter
        self.clock = clock or WallClock()
        self.settle_s = settle_s
        self._t0 = self.clock.now()
        self._on = False
        self._energy_wh = 0.0
        self.on_close = []            # called after the connections are released (a coupled simulation)
        self.simulated = None         # what is simulated, for the certificate (bench/visa_sim.py)
        self.state = {"volts": 0.0, "amps": 0.0, "pf": 1.0, "freq_hz": 50.0}
        try:
            for inst in (source, meter):
                inst.idn = inst.raw_query("*IDN?")
            source.write_all(source.profile.get("init", []))
            self._write_off()
            meter.write_all(meter.profile.get("init", []))
        except BaseException:
            self._safe_off()
            source.close()
            meter.close()
            raise

    # -- source ---------------------------------------------------------------------------------------
    def set(self, volts, amps, pf=1.0, freq_hz=50.0):
        prof = self.source.profile
        try:
            phi = pf_to_phi(pf)
        except ValueError as e:
            self._safe_off()
            raise BenchError(str(e), hint="use a signed power factor: 0.5 inductive, -0.8 capacitive") from None
        lim = prof["limits"]
        for name, value in (("volts", volts), ("amps", amps), ("freq_hz", freq_hz)):
            lo, hi = lim.get(name, (0, float("inf")))
            if not lo <= value <= hi:
                self._safe_off()
                raise InstrumentError("the source %s cannot produce %s = %g (its range %g..%g)" % (
                    prof["model"], name, value, lo, hi),
                    hint="choose a bench whose source covers the meter's Un, Imax and frequency")
        # Templates may use the angle (phase_deg, signed by the profile's phase_sign) or the power factor
        # with a word for its sign (pf_abs, lag_lead: LAG = the current lags = inductive).
        values = {"volts": float(volts), "amps": float(amps), "freq_hz": float(freq_hz),
                  "phase_deg": math.degrees(phi) * prof.get("phase_sign", 1),
                  "pf_abs": abs(float(pf)), "lag_lead": "LAG" if 0 < pf < 1 else "LEAD"}
        try:
            cmds = prof["set"] if amps > 0 or "set_voltage_only" not in prof else prof["set_voltage_only"]
            self.source.write_all(cmds, **values)
            if not self._on or prof.get("on_after_every_set"):
                self.source.write_all(prof["on"])
                self._on = True
        except BaseException:               # an instrument error, or Ctrl-C half way through a setting
            self._safe_off()
            raise
        self.state = {"volts": float(volts), "amps": float(amps), "pf": float(pf), "freq_hz": float(freq_hz)}
        if self.settle_s:
            self.clock.sleep(self.settle_s)

    def _write_off(self):
        self.source.write_all(self.source.profile["off"])
        self._on = False

    def off(self):
        try:
            self._write_off()
        except BenchError:
            self._safe_off()
            raise

    def _safe_off(self):
        """Output off without the error check (a failure path): every off command is sent even if one
        fails, and nothing raised here hides the error that brought us here."""
        for cmd in self.source.profile["off"]:
            try:
                self.source.res.write(cmd)
            except Exception:       # the instrument may be gone; the operator is told by the real error
                pass
        self._on = False

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except BaseException:
            self._safe_off()
            raise

    # -- time ----------------------------------------------------------------------------------------
    def run(self, seconds):
        self._guard(self.clock.sleep, seconds)

    def elapsed_s(self):
        return self.clock.now() - self._t0

    # -- reference -----------------------------------------------------------------------------------
    def reference(self, seconds):
        return self._guard(self._reference, seconds)

    def _reference(self, seconds):
        if seconds <= 0:
            raise InstrumentError("a reference reading needs time to pass", hint="ask for seconds > 0")
        prof = self.meter.profile
        integ = prof.get("integrator")
        t0 = self.clock.now()
        if integ:
            self.meter.write_all(integ["start"])
        self.clock.sleep(seconds)
        if integ:
            self.meter.write_all(integ["stop"])
        t = self.clock.now() - t0
        m = prof["measure"]
        r = self.meter.numbers(m["query"], m["fields"])
        if integ:
            r.update(self.meter.numbers(integ["query"], integ["fields"]))
        t_inst = r.pop("seconds", None)
        if t_inst is not None:
            if not t_inst > 0:
                raise InstrumentError("the %s's integrator reports %r s after %.3f s of integration" % (
                    self.meter.label(), t_inst, t), hint="did its integration start? check the profile's integrator "
                                                         "commands and the instrument's integration mode")
            t = t_inst
        if "wh" not in r:
            r["wh"] = r["watts"] * t / 3600.0
        else:
            r["watts"] = r["wh"] * 3600.0 / t        # the integrator's mean power over exactly the interval
        p, q = r["watts"], r.get("vars", 0.0)
        s = math.hypot(p, q)
        r["pf"] = (p / s if s > 0 else 1.0) * (-1 if q < 0 else 1)
        r["seconds"] = t
        self._energy_wh += r["wh"]
        self._check_phase(r)
        return r

    def _check_phase(self, r):
        """A source whose phase convention is the other way round gives capacitive points for inductive
        ones: caught on the first reading at a reactive point, never calibrated against."""
        pf = self.state["pf"]
        if self.state["amps"] > 0 and abs(pf) < 0.95 and abs(r["pf"]) < 0.99:
            if (pf > 0) != (r.get("vars", 0.0) > 0):
                raise InstrumentError("asked for PF %+g but the reference meter measures %+.3f (vars %.1f): the source "
                                 "profile's phase sign is reversed" % (pf, r["pf"], r.get("vars", 0.0)),
                                 hint="set phase_sign to %d in the source profile %s" % (
                                     -self.source.profile.get("phase_sign", 1), self.source.profile["model"]))

    def reference_energy_wh(self):
        """The energy the reference integrated over this bench's reference readings and gates."""
        return self._energy_wh

    # -- the meter's test pulses ----------------------------------------------------------------------
    def _pulse_instrument(self, what):
        for inst in (self.meter, self.source):
            if inst.profile.get(what):
                return inst
        raise InstrumentError("neither the %s nor the %s has a pulse input (%s)" % (
            self.source.label(), self.meter.label(), what),
            hint="the meter's test output must go to a reference standard with a scanning-head input "
                 "(e.g. the generic-scpi-meter profile); see docs/lab-bench.md")

    def gate(self, min_seconds, min_pulses=1, timeout_s=60.0):
        return self._guard(self._gate, min_seconds, min_pulses, timeout_s)

    def _gate(self, min_seconds, min_pulses, timeout_s):
        inst = self._pulse_instrument("gate")
        g = inst.profile["gate"]
        inst.write_all(g["arm"], min_seconds=float(min_seconds), min_pulses=int(min_pulses),
                       timeout_s=float(timeout_s))
        running, timed_out = re.compile(g["running"]), re.compile(g["timed_out"])
        deadline = self.clock.now() + timeout_s + min_seconds + 5.0
        while True:
            state = inst.query(g["state"])
            if timed_out.search(state):
                raise BenchError("no meter test pulses: the %s's gate timed out after %.1f s" % (inst.label(), timeout_s),
                                 hint="the meter does not register at this load (check the scanning head, "
                                      "the connection, the start-up threshold)")
            if not running.search(state):
                break
            if self.clock.now() > deadline:
                raise InstrumentError("the %s's gate still runs %.0f s after its own timeout" % (inst.label(), timeout_s),
                                 hint="check the instrument")
            self.clock.sleep(_POLL_S)
        r = inst.numbers(g["query"], g["fields"])
        self._energy_wh += r["wh"]
        return PulseGate(int(round(r["pulses"])), r["wh"], r["seconds"], self.elapsed_s())

    def count_pulses(self, seconds):
        return self._guard(self._count, seconds)

    def _count(self, seconds):
        inst = self._pulse_instrument("counter")
        c = inst.profile["counter"]
        inst.write_all(c["start"])
        self.clock.sleep(seconds)
        inst.write_all(c.get("stop", []))
        return int(round(inst.numbers(c["query"], ["pulses"])["pulses"]))

    # -- bookkeeping ----------------------------------------------------------------------------------
    def info(self):
        ref = self.meter.profile
        edge = (ref.get("gate") or {}).get("edge_resolution_s")
        d = {"kind": "visa", "reference": "%s (%s)" % (self.meter.idn or ref["model"], self.meter.name),
             "reference_class_pct": ref.get("class_pct"),
             "source": "%s (%s)" % (self.source.idn or self.source.profile["model"], self.source.name),
             "profiles": {"source": self.source.profile["model"], "meter": ref["model"]},
             "scanning_head": "pulse input of the %s" % self._pulse_owner()}
        if edge:
            d["edge_resolution_s"] = edge
        if self.simulated:
            d["simulated"] = dict(self.simulated)
            d["source_jitter"] = self.simulated.get("source_jitter")
            d["edge_resolution_s"] = self.simulated.get("edge_resolution_s", d.get("edge_resolution_s"))
        return d

    def _pulse_owner(self):
        for inst in (self.meter, self.source):
            if inst.profile.get("gate"):
                return inst.role
        return "none"

    def close(self):
        """Output off (checked when the source still answers), then both connections released."""
        try:
            self.off()
        except BenchError:
            pass
        finally:
            self.source.close()
            self.meter.close()
            for fn in self.on_close:
                fn()


# ---- opening a bench from `--bench visa:...` ------------------------------------------------------------

def parse_spec(argument):
    """"SRC,METER[,SRCPROFILE+METERPROFILE]" -> (source resource, meter resource, source profile or None,
    meter profile or None). A single profile name is accepted when it names either kind."""
    parts = [p.strip() for p in (argument or "").split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError("--bench visa needs two VISA resources: visa:SOURCE,METER[,PROFILES]",
                         hint="e.g. visa:TCPIP0::192.168.1.20::INSTR,ASRL/dev/ttyUSB1::INSTR,"
                              "generic-scpi-source+generic-scpi-meter (profiles: %s)" % ", ".join(P.names()))
    src_prof = met_prof = None
    if len(parts) == 3:
        names = parts[2].split("+")
        if len(names) > 2:
            raise UsageError("too many profiles in %r" % parts[2], hint="SOURCE_PROFILE+METER_PROFILE")
        for n in names:
            prof = P.load(n)
            if prof["kind"] == "source":
                src_prof = prof
            else:
                met_prof = prof
    return parts[0], parts[1], src_prof, met_prof


def open_instrument(rm, resource, profile, kind, timeout_ms=DEFAULT_TIMEOUT_MS, wrap=None):
    """Open one resource and give it its profile (the one named, else the one its *IDN? matches)."""
    role = "source" if kind == "source" else "reference meter"
    try:
        res = rm.open_resource(resource)
    except Exception as e:
        raise InstrumentError("cannot open the %s at %s: %s" % (role, resource, e),
                         hint="list the resources with `python -m pyvisa info` / your VISA's tools; serial "
                              "ASRL/dev/ttyUSB0::INSTR, USB-TMC USB0::0x...::INSTR, LAN TCPIP0::HOST::INSTR "
                              "or TCPIP0::HOST::5025::SOCKET") from None
    try:
        res.timeout = timeout_ms
        term = (profile or {}).get("termination", {})
        res.write_termination = term.get("write", "\n")
        res.read_termination = term.get("read", "\n")
        if resource.upper().startswith("ASRL"):
            # A serial instrument: the profile's line settings (the instrument's menu must agree).
            for key, value in ((profile or {}).get("serial") or {"baud_rate": 9600}).items():
                setattr(res, key, value)
        if wrap:
            res = wrap(res)
        if profile is None:
            inst = Instrument(res, {"no_error": "^$", "error_query": "SYST:ERR?", "model": "unidentified"}, role,
                              resource)
            idn = inst.raw_query("*IDN?")
            if not idn:
                raise InstrumentError("no instrument answered *IDN? as the %s at %s" % (role, resource),
                                 hint="check the resource string, the cable and the instrument's interface settings")
            profile = P.identify(idn, kind)
            if profile is None:
                raise UsageError("the %s at %s answers *IDN? with %r, which no %s profile knows" % (
                    role, resource, idn, kind),
                    hint="name the profiles: visa:SOURCE,METER,SOURCE_PROFILE+METER_PROFILE (known: %s)"
                         % ", ".join(P.names(kind)))
        return Instrument(res, profile, role, resource)
    except BaseException:
        try:
            res.close()
        except Exception:
            pass
        raise


SIM_INSTRUMENTS = Path(__file__).resolve().with_name("sim_instruments.yaml")


def sim_library(library):
    """"sim" (or "@sim") is short for the simulated instruments shipped here (sim_instruments.yaml@sim)."""
    return "%s@sim" % SIM_INSTRUMENTS if library in ("sim", "@sim") else library


def resource_manager(library=None):
    """A pyvisa ResourceManager: `library` (or $METERKIT_VISA_LIBRARY) such as "@py" (pyvisa-py, the
    default), a vendor VISA's path, or "FILE.yaml@sim" (pyvisa-sim, simulated instruments)."""
    import os
    try:
        import pyvisa
    except ImportError:
        raise UsageError("pyvisa is not installed", hint="make venv (it is pinned in requirements.txt)") from None
    library = sim_library(library or os.environ.get("METERKIT_VISA_LIBRARY") or "@py")
    try:
        return pyvisa.ResourceManager(library)
    except Exception as e:
        raise UsageError("cannot load the VISA library %r: %s" % (library, e),
                         hint="use @py (pyvisa-py), a vendor VISA's path, or FILE.yaml@sim") from None


def open_visa_bench(argument, rm=None, clock=None, timeout_ms=DEFAULT_TIMEOUT_MS, wrap_source=None,
                    wrap_meter=None, settle_s=0.0):
    src_res, met_res, src_prof, met_prof = parse_spec(argument)
    rm = rm or resource_manager()
    source = open_instrument(rm, src_res, src_prof, "source", timeout_ms, wrap_source)
    try:
        meter = open_instrument(rm, met_res, met_prof, "meter", timeout_ms, wrap_meter)
    except BaseException:
        for cmd in source.profile["off"]:
            try:
                source.res.write(cmd)
            except Exception:
                pass
        source.close()
        raise
    bench = VisaBench(source, meter, clock=clock, settle_s=settle_s)
    if bench._pulse_owner() == "none":
        bench.close()
        raise UsageError("neither %s nor %s counts the meter's test pulses" % (source.profile["model"],
                                                                              meter.profile["model"]),
                         hint="a calibration needs a reference standard with a scanning-head input "
                              "(e.g. generic-scpi-meter); see docs/lab-bench.md")
    return bench


def open_bench(argument, meter=None, seed=0):
    """`--bench visa:SRC,METER[,PROFILES]`. With `meter` (an in-process simulated meter) and a pyvisa-sim
    library, the simulated instruments act on that meter's world (bench/visa_sim.py)."""
    import os
    library = sim_library(os.environ.get("METERKIT_VISA_LIBRARY") or "@py")
    if meter is not None and library.endswith("@sim"):
        from host_tools.calibrate.bench.visa_sim import open_coupled
        return open_coupled(argument, meter, library, seed=seed)
    return open_visa_bench(argument, rm=resource_manager(library))
