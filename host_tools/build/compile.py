"""Compile one MicroPython source file to .mpy with mpy-cross, picking -march only where native code needs it."""
import re
import subprocess
import tempfile
from pathlib import Path

from host_tools.errors import UsageError
from host_tools.paths import mpy_cross_bin

# Bytecode is portable; only emitters that produce machine code need the board's architecture.
_NATIVE = re.compile(rb"^\s*@micropython\.(native|viper)\b", re.M)


def needs_arch(source):
    """True if the source (bytes) has a @micropython.native or @micropython.viper function."""
    return bool(_NATIVE.search(source))


def mpy_cross_version():
    proc = subprocess.run([mpy_cross_bin(), "--version"], capture_output=True, text=True)
    return proc.stdout.strip()


# (source bytes, display name, arch) -> .mpy bytes: the output depends only on these, so a process that
# builds the same tree again (a test session, a bench) reuses what it compiled.
_compiled = {}


def compile_source(src_path, display_name, arch=None):
    """Return the .mpy bytes for `src_path`. `display_name` is the path recorded in tracebacks
    (the file's place on the device), so builds do not depend on where the tree was checked out.
    `arch` is used only when the file contains native/viper code."""
    src_path = Path(src_path)
    source = src_path.read_bytes()
    arch = arch if arch and needs_arch(source) else None
    key = (source, display_name, arch)
    if key in _compiled:
        return _compiled[key]
    args = [mpy_cross_bin(), "-s", display_name]
    if arch:
        args.append(f"-march={arch}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mpy"
        proc = subprocess.run(args + ["-o", str(out), str(src_path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UsageError(
                f"mpy-cross failed on {display_name}: {proc.stderr.strip() or proc.stdout.strip()}",
                hint="fix the syntax (MicroPython lacks some CPython features) and build again",
            )
        data = out.read_bytes()
    if len(_compiled) >= 2048:
        _compiled.clear()
    _compiled[key] = data
    return data
