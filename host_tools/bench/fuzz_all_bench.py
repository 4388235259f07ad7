"""`make bench` and `make bench-long`: every fuzz target of host_tools/fuzz/ (issue 19) with its inputs, inputs/s, escapes and
violations (0 is the target), the corpus it grew in its coverage-guided stretch (the first 10% of
inputs traced) and the lines of code under test that stretch reached. `make bench-long` (`run_long`):
10^5 inputs per target, except the keypad (each input is a sequence of up to 120 key presses, each
redrawing the display: 2*10^4) and the CLI (each input runs a whole `meterkit` verb: 5*10^3); about
45 min here. `make bench` (`run`): a twentieth of each (5*10^3, 10^3, 250). FUZZ_ALL_N overrides
every count. Failing
inputs are saved under build/fuzz-failures/<target>/. Keys: fuzz_<target>_{inputs,per_s,escapes,
violations,corpus,lines}."""
import os
import tempfile

from host_tools.fuzz import TARGETS, harness, make, quiet_gc

N = {"keypad": 20_000, "cli": 5_000}
DEFAULT_N = 100_000
QUICK = 20          # make bench runs 1/QUICK of each count


def run_long(names=None):
    return run(names, 1)


def run(names=None, share=QUICK):
    out = {}
    undo = quiet_gc()
    try:
        for name in names or TARGETS:
            n = int(os.environ.get("FUZZ_ALL_N") or N.get(name, DEFAULT_N) // share)
            with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as d:
                t = make(name, d)
                s = harness.run(t, n, seed=19, guided=0.1, reset_every=2000)
                if hasattr(t, "close"):
                    t.close()
            for k in ("inputs", "per_s", "escapes", "violations", "corpus", "lines"):
                out["fuzz_%s_%s" % (name, k)] = s[k]
            print("   %-16s %d inputs, %d/s, %d escapes, %d violations" % (name, s["inputs"], s["per_s"], s["escapes"],
                                                                          s["violations"]), flush=True)
    finally:
        undo()
    bad = {k: v for k, v in out.items() if (k.endswith("_escapes") or k.endswith("_violations")) and v}
    if bad:
        raise RuntimeError("fuzzing found faults (saved in build/fuzz-failures/): %s" % bad)
    return out
