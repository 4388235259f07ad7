"""Shared by the CLI tests: run `meterkit` as a user does (a subprocess), and start/stop a realtime
simulated meter (`meterkit sim start --json`) so nothing is left running."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

METERKIT = str(Path(sys.executable).parent / "meterkit")


def mk(*argv, cwd=None, timeout=120, env=None):
    """Run meterkit; wide output (no wrapping), no factory DB from the caller's environment (`env` may
    give one)."""
    e = dict(os.environ, COLUMNS="160")
    e.pop("METERKIT_FACTORY_DB", None)
    e.update(env or {})
    return subprocess.run([METERKIT, *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=e)


def start(*argv, cwd=None):
    """Start a long-running meterkit verb in its own session; returns the Popen."""
    return subprocess.Popen([METERKIT, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=None if cwd is None else str(cwd))


def start_meter(*argv, cwd=None):
    """`meterkit sim start --json ARGV`: (Popen, its first JSON line)."""
    proc = start("sim", "start", "--json", *argv, cwd=cwd)
    line = proc.stdout.readline()
    try:
        return proc, json.loads(line)
    except ValueError:
        stop(proc)
        raise AssertionError("sim start printed no JSON: %r %s" % (line, proc.stderr.read())) from None


def stop(proc, sig=signal.SIGTERM):
    """Ask it to stop (SIGTERM by default), and kill its whole session if it does not within 30 s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
