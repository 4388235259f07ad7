"""`make bench`: runs every benchmark module at a size that keeps the whole run within 30 minutes on this
2-core machine, prints a table and writes build/bench.json (a flat object). `make bench-long` (`--long`)
runs the long ones (the issue-sized runs: 100,000 power cuts, 10^5 fuzz inputs a parser, 10 chaos days,
the remote top-up matrices on three brokers; hours, not minutes) into the same file, saying first how
long each will take; each shows its progress.

Each entry is a module with `run() -> dict` of flat keys, or `module:function`; a failing benchmark is
reported, not fatal."""
import importlib
import json
import sys
import tempfile
import time
import traceback

from host_tools.paths import BUILD

BENCHES = [
    "host_tools.bench.tokens_bench",
    "host_tools.bench.keys_bench",
    "host_tools.bench.factory_bench",
    "host_tools.bench.factory_line_bench",
    "host_tools.bench.sim_bench",
    "host_tools.bench.headend_bench",
    "host_tools.bench.fleet_bench",
    "host_tools.bench.calibration_bench",
    "host_tools.bench.powercut_bench",
    "host_tools.bench.remote_bench",
    "host_tools.bench.agency_bench",
    "host_tools.bench.heap32_bench",
    "host_tools.bench.fuzz_bench",
    "host_tools.bench.fuzz_all_bench",
    "host_tools.bench.ota_bench",
    "host_tools.bench.ota_bench:run_campaign_small",
    "host_tools.bench.chips_bench",
    "host_tools.bench.chaos_bench",
]

# (entry, what it runs and how long it took here on 2 cores)
LONG = [
    ("host_tools.bench.sim_bench:run_long", "a simulated year at a 1-minute period, display on (about 12 min), "
                                            "then the lowest heap cap for 30 days (8 runs of about 1 min)"),
    ("host_tools.bench.powercut_bench:run_long",
     "100,000 power cuts with every fault kind, then 10,000 outages: about 0.1 s a cut a process, 1.5-2 h"),
    ("host_tools.bench.fuzz_all_bench:run_long", "10^5 inputs for each of 8 parsers (keypad 2*10^4, CLI 5*10^3): "
                                                 "about 45 min"),
    ("host_tools.bench.fuzz_bench:run_long", "10^5 head-end ingest and CSV inputs: about 3 min"),
    ("host_tools.bench.chaos_bench:run_long", "10 chaos days of 3 meters: about 30 min"),
    ("host_tools.bench.ota_bench:run_campaign", "an OTA campaign of 100 meters: about 9 min"),
    ("host_tools.bench.remote_bench:run_long", "the remote top-up matrix (13 x 1,000) on the in-process broker, "
                                               "amqtt and mosquitto: about 2 h"),
]


def main(argv=None):
    # One vending key module for every benchmark in this run: the configured one, else a throwaway
    # SoftHSM token that lives as long as the run.
    from host_tools.keys.softhsm import ensure_vending_module
    with tempfile.TemporaryDirectory(prefix="bench-hsm-") as d:
        ensure_vending_module(d)
        return _main(argv)


def _main(argv=None):
    names = list(argv if argv is not None else sys.argv[1:])
    if names == ["--long"]:
        names = [n for n, _ in LONG]
        print("make bench-long: about 6 hours on 2 cores, in this order:", flush=True)
        for n, what in LONG:
            print("   %-45s %s" % (n, what), flush=True)
    names = names or BENCHES
    results, failed = {}, []
    BUILD.mkdir(exist_ok=True)
    out = BUILD / "bench.json"
    if out.exists():
        try:
            results.update(json.loads(out.read_text()))
        except ValueError:
            pass
    for name in names:
        t0 = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            mod, _, fn = name.partition(":")
            got = getattr(importlib.import_module(mod), fn or "run")()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results.update(got)
        for k, v in got.items():
            print(f"   {k:45s} {v}")
        print(f"   ({time.monotonic() - t0:.1f} s)", flush=True)
        out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    from host_tools.testtime import bench_figures
    results.update(bench_figures())     # the last `make test` run here (build/make_test.json)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\n{'key':45s} value")
    for k in sorted(results):
        print(f"{k:45s} {results[k]}")
    print(f"\nwrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
