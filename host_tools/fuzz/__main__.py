"""`python -m host_tools.fuzz run TARGET [-n N] [--seed S] [--guided F]` fuzzes one target and prints
its figures as JSON; `replay FILE` runs a failure saved in build/fuzz-failures again on a fresh target
and prints the outcome (or the exception). `list` names the targets."""
import argparse
import json
import sys
import tempfile
import traceback

from host_tools.fuzz import TARGETS, harness, make, quiet_gc


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host_tools.fuzz")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("target", choices=sorted(TARGETS))
    r.add_argument("-n", type=int, default=10000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--guided", type=float, default=0.1, help="share of the run traced for new coverage")
    rp = sub.add_parser("replay")
    rp.add_argument("file")
    sub.add_parser("list")
    a = p.parse_args(argv)
    if a.what == "list":
        print("\n".join(sorted(TARGETS)))
        return 0
    quiet_gc()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as d:
        if a.what == "run":
            t = make(a.target, d)
            s = harness.run(t, a.n, a.seed, guided=a.guided, reset_every=2000)
            print(json.dumps(s, indent=1, default=str))
            return 1 if s["escapes"] or s["violations"] else 0
        try:
            saved = json.load(open(a.file))
        except (OSError, ValueError) as e:
            print("cannot read %s: %s" % (a.file, e), file=sys.stderr)
            return 2
        t = make(saved["target"], d)
        try:
            print("outcome:", harness.replay(t, saved["input"]))
            return 0
        except Exception:
            traceback.print_exc()
            return 1


if __name__ == "__main__":
    sys.exit(main())
