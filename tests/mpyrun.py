"""Run code under the real MicroPython unix port with a heap cap, with firmware/ on its path."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
MPY_SUPPORT = ROOT / "tests" / "mpy_support"


def micropython_bin():
    exe = Path(sys.executable).parent / "micropython"
    return os.environ.get("METER_MICROPYTHON") or str(exe)


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
