"""The board manifests (MicroPython's manifest format, for freezing the app into a custom firmware)
name every firmware module, leave main.py to the file system, and point only at files that exist."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class FakeManifestTool:
    """Runs a manifest the way MicroPython's tools/manifestfile.py does: relative paths resolve from
    the file being executed; `$(PORT_DIR)` includes belong to the port and are only recorded."""

    def __init__(self):
        self.frozen = set()   # absolute paths of .py files that would be frozen
        self.port_includes = []
        self.missing = []
        self._dirs = []

    def run(self, path):
        path = Path(path).resolve()
        self._dirs.append(path.parent)
        g = {"include": self.include, "module": self.module, "package": self.package,
             "require": lambda *a, **k: None, "metadata": lambda *a, **k: None}
        exec(compile(path.read_text(), str(path), "exec"), g)
        self._dirs.pop()

    def _base(self, base_path):
        return (self._dirs[-1] / base_path).resolve()

    def include(self, p, **kw):
        if p.startswith("$("):
            self.port_includes.append(p)
        else:
            self.run(self._dirs[-1] / p)

    def module(self, name, base_path="."):
        f = self._base(base_path) / name
        (self.frozen.add(f) if f.exists() else self.missing.append(f))

    def package(self, name, files=None, base_path="."):
        for dirpath, _d, names in os.walk(self._base(base_path) / name):
            self.frozen.update(Path(dirpath, n).resolve() for n in names if n.endswith(".py"))


def firmware_modules():
    return {p.resolve() for p in (ROOT / "firmware").rglob("*.py") if "__pycache__" not in p.parts}


@pytest.mark.parametrize("board, port_manifest", [("esp32_atm90e26", "$(PORT_DIR)/boards/manifest.py"),
                                                  ("sim", "$(PORT_DIR)/variants/manifest.py")])
def test_board_manifest_freezes_every_firmware_module_and_the_board(board, port_manifest):
    tool = FakeManifestTool()
    tool.run(ROOT / "boards" / board / "manifest.py")
    assert tool.port_includes == [port_manifest]
    fw = {p for p in firmware_modules() if not (p.name == "main.py" and p.parent == (ROOT / "firmware").resolve())}
    missing_from_manifest = sorted(str(p.relative_to(ROOT)) for p in fw - tool.frozen)
    assert not missing_from_manifest, f"add these to boards/app_manifest.py: {missing_from_manifest}"
    assert (ROOT / "firmware/main.py").resolve() not in tool.frozen
    board_py = (ROOT / "boards" / board / "board.py").resolve()
    if board_py.exists():
        assert board_py in tool.frozen
    else:  # the board module is being written by its owner; the manifest already names it
        assert tool.missing == [board_py]
