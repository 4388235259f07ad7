"""Build one board's file system image and a manifest of what went in. Two modes:

- development (default): every firmware module and the board module compiled to .mpy on the file
  system, for boards with PSRAM and for `mpremote` work;
- frozen (`--frozen`): the production layout. The application and board code are frozen into the
  MicroPython firmware (boards/<board>/manifest.py); the file system holds data only (main.py,
  board.json, defaults), so nothing on it can shadow a frozen module ('' precedes '.frozen' on the
  ESP32's sys.path).

Reproducible: the same sources give byte-identical outputs."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from host_tools import paths
from host_tools.build.compile import compile_source, mpy_cross_version, needs_arch
from host_tools.errors import UsageError

MODE_DEVELOPMENT, MODE_FROZEN = "development", "frozen"
IMAGE_NAME = "fs.img"
MANIFEST_NAME = "manifest.json"
TREE_NAME = "app"          # the image's files, unpacked, for `meterkit deploy`
SOURCE_FILES = ("main.py",)  # MicroPython runs main.py as source: never compiled
DEFAULTS = "defaults.json"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def load_board(name, source_root=None):
    """Return (board folder, parsed board.json) for a board name."""
    root = Path(source_root) if source_root else paths.ROOT
    d = root / "boards" / name
    if not (d / "board.json").exists():
        known = sorted(p.name for p in (root / "boards").glob("*") if (p / "board.json").exists())
        raise UsageError(f"no board named {name!r} under {root / 'boards'}",
                         hint=f"use one of: {', '.join(known) or '(none)'}")
    return d, json.loads((d / "board.json").read_text())


def tool_versions():
    try:
        mp = subprocess.run([paths.micropython_bin(), "-c", "import sys;print(sys.version)"],
                            capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        mp = "unavailable"
    return {
        "mpy_cross": mpy_cross_version(),
        "micropython_unix": mp,
        "littlefs_python": metadata.version("littlefs-python"),
    }


def frozen_module_names(board_name, source_root=None):
    """Module names the production firmware freezes (boards/app_manifest.py: every firmware module but
    main.py, plus the board module as `board`), with their packages."""
    root = Path(source_root) if source_root else paths.ROOT
    fw = root / "firmware"
    names = {"board"}
    for p in fw.rglob("*.py"):
        if "__pycache__" in p.parts:
            continue
        rel = p.relative_to(fw).with_suffix("")
        if rel.as_posix() == "main":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        for i in range(1, len(parts) + 1):
            names.add(".".join(parts[:i]))
    return names


def shadowing(files, frozen_names):
    """Files or folders in an image that an import would find before a frozen module of that name."""
    found = []
    for path in files:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            stem = parts[i - 1]
            if i == len(parts):
                if not stem.endswith((".py", ".mpy")):
                    break
                stem = stem.rsplit(".", 1)[0]
            name = ".".join(parts[:i - 1] + [stem])
            if name in frozen_names:
                found.append("/" + "/".join(parts[:i]))
                break
    return sorted(set(found))


OTA_TRUST = "/ota_trust.json"      # firmware/ota/wiring.py reads it at boot


def collect_frozen_files(board_name, source_root=None):
    """The data-only file system of a frozen image: main.py (the firmware's, as source: MicroPython runs
    main.py from the file system and it is never frozen), board.json, defaults.json."""
    root = Path(source_root) if source_root else paths.ROOT
    board_dir, _info = load_board(board_name, root)
    fw = root / "firmware"
    files, meta, warnings = {}, {}, []
    if (fw / "main.py").exists():
        files["/main.py"] = (fw / "main.py").read_bytes()
        meta["/main.py"] = {"source": "firmware/main.py", "kind": "source"}
    else:
        warnings.append("firmware/main.py is missing: the board will start to a REPL")
    files["/board.json"] = (board_dir / "board.json").read_bytes()
    meta["/board.json"] = {"source": f"boards/{board_name}/board.json", "kind": "json"}
    if (fw / DEFAULTS).exists():
        files["/" + DEFAULTS] = (fw / DEFAULTS).read_bytes()
        meta["/" + DEFAULTS] = {"source": f"firmware/{DEFAULTS}", "kind": "json"}
    clash = shadowing(files, frozen_module_names(board_name, root))
    if clash:
        raise UsageError(f"the frozen image's file system would shadow frozen modules: {', '.join(clash)}",
                         hint="keep application code out of the data-only file system")
    for p, data in files.items():
        meta[p]["size"] = len(data)
        meta[p]["sha256"] = sha256(data)
    return files, meta, warnings


def collect_files(board_name, source_root=None):
    """Return ({"/device/path": bytes}, {"/device/path": info}, warnings) for the application tree."""
    root = Path(source_root) if source_root else paths.ROOT
    board_dir, info = load_board(board_name, root)
    arch = info.get("arch")
    fw = root / "firmware"
    files, meta, warnings = {}, {}, []
    if not fw.is_dir():
        raise UsageError(f"no firmware tree at {fw}", hint="run from the project checkout or pass its root")
    sources = sorted(p for p in fw.rglob("*.py") if "__pycache__" not in p.parts)
    for src in sources:
        rel = src.relative_to(fw).as_posix()
        if rel in SOURCE_FILES:
            files["/" + rel] = src.read_bytes()
            meta["/" + rel] = {"source": f"firmware/{rel}", "kind": "source"}
            continue
        dev = "/" + rel[:-3] + ".mpy"
        native = needs_arch(src.read_bytes())
        files[dev] = compile_source(src, rel, arch)
        meta[dev] = {"source": f"firmware/{rel}", "kind": f"native-{arch}" if native else "bytecode"}
    board_py = board_dir / "board.py"
    if board_py.exists():
        native = needs_arch(board_py.read_bytes())
        files["/board.mpy"] = compile_source(board_py, "board.py", arch)
        meta["/board.mpy"] = {"source": f"boards/{board_name}/board.py",
                              "kind": f"native-{arch}" if native else "bytecode"}
    else:
        warnings.append(f"boards/{board_name}/board.py is missing: the image cannot boot without it")
    files["/board.json"] = (board_dir / "board.json").read_bytes()
    meta["/board.json"] = {"source": f"boards/{board_name}/board.json", "kind": "json"}
    if (fw / DEFAULTS).exists():
        files["/" + DEFAULTS] = (fw / DEFAULTS).read_bytes()
        meta["/" + DEFAULTS] = {"source": f"firmware/{DEFAULTS}", "kind": "json"}
    if "/main.py" not in files:
        warnings.append("firmware/main.py is missing: the board will start to a REPL")
    for p, data in files.items():
        meta[p]["size"] = len(data)
        meta[p]["sha256"] = sha256(data)
    return files, meta, warnings


def build(board_name, out_dir=None, source_root=None, versions=None, frozen=False, ota_keys=()):
    """Build `board_name` into `out_dir` (default build/<board>/); return the manifest dict.
    frozen=True writes the production layout (data only; the app is frozen into the firmware).
    `ota_keys`: paths of the manufacturer's update-signing public keys (`meterkit ota keygen`); the
    image carries them as /ota_trust.json, without which the meter refuses every update.
    Everything is made in memory first, then each output is swapped in whole, so a failed
    build leaves the previous one untouched."""
    from host_tools.build.image import make_image  # littlefs is only needed for a real build

    _board_dir, info = load_board(board_name, source_root)
    flash = info.get("flash") or {}
    for key in ("vfs_size", "block_size"):
        if key not in flash:
            raise UsageError(f"board {board_name!r} has no flash.{key} in board.json",
                             hint="add the vfs partition's size and block size to board.json")
    block_size, block_count = flash["block_size"], flash["vfs_size"] // flash["block_size"]
    collect = collect_frozen_files if frozen else collect_files
    files, meta, warnings = collect(board_name, source_root)
    if ota_keys:
        import json

        from host_tools.ota import keys as ota_keys_mod
        trust = json.dumps(ota_keys_mod.trust_entry_file([ota_keys_mod.load_public(k) for k in ota_keys]),
                           sort_keys=True).encode()
        files[OTA_TRUST] = trust
        meta[OTA_TRUST] = {"source": ", ".join(str(k) for k in ota_keys), "kind": "json", "size": len(trust),
                           "sha256": sha256(trust)}
    elif frozen:
        warnings.append("no --ota-key: the meter will refuse every firmware update (no trusted signing key)")
    image = make_image(files, block_size, block_count)
    out = Path(out_dir) if out_dir else paths.BUILD / board_name
    manifest = {
        "board": board_name,
        "mcu": info.get("mcu"),
        "arch": info.get("arch"),
        "mode": MODE_FROZEN if frozen else MODE_DEVELOPMENT,
        "frozen_manifest": f"boards/{board_name}/manifest.py" if frozen else None,
        "versions": versions if versions is not None else tool_versions(),
        "image": {"file": IMAGE_NAME, "size": len(image), "sha256": sha256(image),
                  "block_size": block_size, "block_count": block_count,
                  "vfs_offset": flash.get("vfs_offset")},
        "files": meta,
        "warnings": warnings,
    }
    _write_outputs(out, image, files, manifest)
    manifest["out"] = str(out)
    return manifest


def _write_outputs(out, image, files, manifest):
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        (tmp / IMAGE_NAME).write_bytes(image)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        tree = tmp / TREE_NAME
        for p, data in files.items():
            dest = tree / p.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        tree.mkdir(exist_ok=True)
        old_tree = out / TREE_NAME
        if old_tree.exists():
            shutil.rmtree(old_tree)
        os.replace(tree, old_tree)
        os.replace(tmp / IMAGE_NAME, out / IMAGE_NAME)
        os.replace(tmp / MANIFEST_NAME, out / MANIFEST_NAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
