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
                                                  ("esp32_bl0942", "$(PORT_DIR)/boards/manifest.py"),
                                                  ("sim", "$(PORT_DIR)/variants/manifest.py")])
def test_board_manifest_freezes_every_firmware_module_and_the_board(board, port_manifest):
    tool = FakeManifestTool()
    tool.run(ROOT / "boards" / board / "manifest.py")
    assert tool.port_includes == [port_manifest]
    fw = {p for p in firmware_modules() if not (p.name == "main.py" and p.parent == (ROOT / "firmware").resolve())}
    missing_from_manifest = sorted(str(p.relative_to(ROOT)) for p in fw - tool.frozen)
    assert not missing_from_manifest, f"add these to boards/app_manifest.py: {missing_from_manifest}"
    assert (ROOT / "firmware/main.py").resolve() not in tool.frozen
    board_py = (ROOT / "boards" / board).resolve() / "board.py"   # esp32_bl0942 links it: the link is frozen
    if board_py.exists():
        assert board_py in tool.frozen
    else:  # the board module is being written by its owner; the manifest already names it
        assert tool.missing == [board_py]


def test_no_board_file_depends_on_host_tools():
    import re
    uses = re.compile(r"^\s*(import|from)\s+host_tools|[\"'][^\"'\n]*host_tools[^\"'\n]*[\"']", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "boards").rglob("*")
                 if p.is_file() and uses.search(p.read_text(errors="replace"))]
    assert not offenders, f"board files importing or including from host_tools/: {offenders}"
    assert uses.search('include("../../host_tools/build/app_manifest.py")')  # what the check catches


@pytest.mark.parametrize("board", ["esp32_atm90e26", "esp32_bl0942"])
def test_the_esp32_board_is_a_complete_micropython_board_definition(board):
    import json

    from host_tools.flash import parttable
    d = ROOT / "boards" / board
    for name in ("mpconfigboard.cmake", "mpconfigboard.h", "sdkconfig.board", "manifest.py", "partitions.csv"):
        assert (d / name).is_file(), f"boards/{board}/{name} is missing"
    cmake = (d / "mpconfigboard.cmake").read_text()
    assert "set(IDF_TARGET esp32)" in cmake and "MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py" in cmake
    info = json.loads((d / "board.json").read_text())
    parts = parttable.parse(parttable.build(parttable.from_csv((d / "partitions.csv").read_text())))
    by = {p.name: p for p in parts}
    assert by["ota_0"].offset == 0x10000 and by["ota_0"].size == by["ota_1"].size == 0x180000
    vfs = by["vfs"]
    assert vfs.encrypted and (vfs.offset, vfs.size) == (info["flash"]["vfs_offset"], info["flash"]["vfs_size"])
    assert max(p.end for p in parts) <= info["flash"]["size"]
    assert info["micropython"]["variant"] == "OTA" and info["micropython"]["psram"] is False
