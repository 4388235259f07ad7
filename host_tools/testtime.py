"""`make test` through a timer: run pytest with the given arguments, then record how long the whole
suite took in build/make_test.json (wall and CPU seconds, the outcome, the commit, when), which
`make bench` copies into build/bench.json as `make_test_*`. Exits with pytest's status.

    python -m host_tools.testtime [pytest arguments...]
"""
import datetime
import json
import resource
import subprocess
import sys
import time

from host_tools.paths import BUILD, ROOT

RECORD = BUILD / "make_test.json"


def _commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run(args, record=RECORD):
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = subprocess.call([sys.executable, "-m", "pytest", *args])
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec = {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
        "passed": rc == 0,
        "exit_status": rc,
        "args": list(args),
        "commit": _commit(),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(rec, indent=2) + "\n")
    print("make test: %.1f s wall, %.1f s CPU (%s), recorded in %s"
          % (rec["wall_seconds"], rec["cpu_seconds"], "passed" if rc == 0 else "failed, status %d" % rc, record))
    return rc


def bench_figures(record=RECORD):
    """The last recorded `make test`, as bench.json keys (none when it was never run here)."""
    try:
        rec = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return {"make_test_wall_seconds": rec.get("wall_seconds"), "make_test_cpu_seconds": rec.get("cpu_seconds"),
            "make_test_passed": rec.get("passed"), "make_test_commit": rec.get("commit"), "make_test_at": rec.get("at")}


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
