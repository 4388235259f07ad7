"""Calibration benches behind one interface (`base.Bench`). `open_bench("sim")`, `open_bench("sim:ADDR")`;
a real bench is one module with a `Bench` subclass and `open_bench(argument, meter=None, seed=0)`,
named here by its scheme (`--bench <scheme>[:argument]`)."""
import importlib

from host_tools.calibrate.bench.base import Bench, BenchError, InstrumentError, PulseGate, pf_to_phi  # noqa: F401
from host_tools.errors import UsageError

# scheme -> module with open_bench(argument, meter=None, seed=0). One line per bench kind.
BENCH_KINDS = {
    "sim": "host_tools.calibrate.bench.sim",
    "visa": "host_tools.calibrate.bench.visa",
}


def open_bench(spec, meter=None, seed=0):
    """A Bench from a `--bench` value such as "sim" or "sim:127.0.0.1:40123"."""
    if not spec:
        raise UsageError("no bench given", hint="use --bench sim[:ADDRESS] or visa:SOURCE,METER[,PROFILES] "
                                                "(kinds: %s)" % ", ".join(BENCH_KINDS))
    scheme, _, argument = spec.partition(":")
    if scheme not in BENCH_KINDS:
        raise UsageError("unknown bench kind %r" % scheme, hint="known kinds: " + ", ".join(BENCH_KINDS))
    return importlib.import_module(BENCH_KINDS[scheme]).open_bench(argument, meter=meter, seed=seed)
