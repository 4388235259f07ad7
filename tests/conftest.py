"""Shared test set-up: firmware/ and the CPython shims on sys.path so firmware modules import under pytest."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "tests" / "shims", ROOT / "firmware", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
