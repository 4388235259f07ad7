"""Run code under the real MicroPython unix port with a heap cap, with firmware/ on its path."""
import json
import os
import subprocess
from pathlib import Path

from host_tools.paths import micropython_bin  # noqa: F401  (the launcher the tools use; tests import it here)

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
MPY_SUPPORT = ROOT / "tests" / "mpy_support"


def run_micropython(code, heap="96k", path=(), timeout=120, check=True, env=None):
    """Run `code` (source text) under micropython; return stdout. Fails the test on a non-zero exit."""
    mpath = [".frozen", str(FIRMWARE), str(MPY_SUPPORT)] + [str(p) for p in path]
    e = dict(os.environ, MICROPYPATH=":".join(mpath))
    if env:
        e.update(env)
    proc = subprocess.run(
        [micropython_bin(), "-X", f"heapsize={heap}", "-c", code],
        capture_output=True, text=True, timeout=timeout, env=e,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"micropython exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc.stdout


def run_reported(code, **kw):
    """Run `code` (which reports with `report(name, value)`, tests/mpy_support/report.py); return
    {name: value} and the whole output (for messages)."""
    out = run_micropython("from report import report\n" + code, **kw)
    return reported(out), out


def reported(out):
    """{name: value} of the `report` lines in MicroPython's output."""
    got = {}
    for line in out.splitlines():
        if line.startswith("REPORT "):
            name, value = json.loads(line[7:])
            got[name] = value
    return got


def expect(got, want, out=""):
    """Fail naming every value that differs from `want` ({name: value}), with what MicroPython said."""
    bad = ["%s: got %r, want %r" % (k, got.get(k, "<not reported>"), v) for k, v in want.items()
           if got.get(k, "<not reported>") != v]
    assert not bad, "under MicroPython:\n  " + "\n  ".join(bad) + "\n--- output ---\n" + out[-2000:]
