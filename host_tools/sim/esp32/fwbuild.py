"""The firmware tree a simulated meter runs: every firmware and sim-board module compiled to .mpy (as on a
board without frozen modules), main.py as source, board.json beside them. Rebuilt only where sources changed.

The frozen layout (`frozen_layout`): the same compiled tree stands for the modules frozen into the
production firmware and goes on the search path AFTER a data-only directory standing for the file system
(main.py, board.json), as the ESP32's `sys.path` is `['', '.frozen', ...]`."""
import json
import os
import tempfile
from pathlib import Path

from host_tools.build.compile import compile_source
from host_tools.paths import BUILD, FIRMWARE, board_dir


def sources(board="sim"):
    """(source path, path on the device) for the application and the board module."""
    out = []
    for p in sorted(FIRMWARE.rglob("*.py")):
        rel = p.relative_to(FIRMWARE).as_posix()
        out.append((p, rel))
    out.append((board_dir(board) / "board.py", "board.py"))
    return out


def _atomic_write(dst, data):
    """Several test workers may build the same tree at once: never let one see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=str(dst.parent), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dst)


def build_tree(board="sim", out=None, mpy=True):
    """Return the directory holding the runnable tree (compiled when mpy=True, else sources)."""
    out = Path(out or BUILD / ("fw-%s-%s" % (board, "mpy" if mpy else "src")))
    out.mkdir(parents=True, exist_ok=True)
    info = json.loads((board_dir(board) / "board.json").read_text())
    arch = info.get("arch")
    wanted = set()
    for src, rel in sources(board):
        if rel == "main.py" or not mpy:
            dst = out / rel
            wanted.add(dst)
            if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
                dst.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(dst, src.read_bytes())
            continue
        dst = out / (rel[:-3] + ".mpy")
        wanted.add(dst)
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(dst, compile_source(src, rel, None if arch == "host" else arch))
    _atomic_write(out / "board.json", (board_dir(board) / "board.json").read_bytes())
    wanted.add(out / "board.json")
    for p in out.rglob("*"):       # drop modules whose sources are gone
        if p.is_file() and p not in wanted and not p.name.startswith(".tmp-"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    return out


def frozen_layout(board="sim", out=None):
    """Return (fs_dir, frozen_dir): fs_dir holds what `meterkit build --frozen` puts on the file system
    (data only), frozen_dir the compiled application standing for `.frozen`."""
    from host_tools.build.builder import collect_frozen_files
    frozen_dir = build_tree(board, mpy=True)
    fs_dir = Path(out or BUILD / ("fw-%s-frozen-fs" % board))
    fs_dir.mkdir(parents=True, exist_ok=True)
    files, _meta, _warnings = collect_frozen_files(board)
    for name, data in files.items():
        dst = fs_dir / name.lstrip("/")
        if not dst.exists() or dst.read_bytes() != data:
            _atomic_write(dst, data)
    return fs_dir, frozen_dir


def search_path(fs_dir, frozen_dir=None):
    """MICROPYPATH for a meter whose file system is fs_dir (the unix port puts the script's folder,
    fs_dir, first): with frozen_dir, the path is [fs_dir, '.frozen', frozen_dir] as on the chip."""
    return ".frozen:" + str(frozen_dir or fs_dir)
