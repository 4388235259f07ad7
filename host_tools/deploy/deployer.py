"""Copy the built application tree (build/<board>/app/) onto a running board with mpremote's serial
transport, in-process. Never soft-resets: on the unix port a soft reset ends the interpreter, and on
a board the developer decides when to reboot. Files whose SHA-256 already matches are skipped."""
import hashlib
import json
from pathlib import Path

from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from host_tools import paths
from host_tools.build.builder import MANIFEST_NAME, TREE_NAME
from host_tools.errors import DeviceError, UsageError


def find_build(board=None, build_root=None):
    """The build folder for `board`, or the only build there is when no board is named."""
    root = Path(build_root) if build_root else paths.BUILD
    if board:
        d = root / board
        if not (d / MANIFEST_NAME).exists():
            raise UsageError(f"no build for board {board!r} in {root}", hint=f"run `meterkit build --board {board}`")
        return d
    builds = sorted(p for p in root.glob("*") if (p / MANIFEST_NAME).exists()) if root.exists() else []
    if len(builds) != 1:
        raise UsageError(f"{len(builds)} builds in {root}: cannot tell which to deploy",
                         hint="pass --board NAME (and build it first with `meterkit build`)")
    return builds[0]


def _remote(dest, rel):
    return f"{dest.rstrip('/')}/{rel}" if dest else rel


def deploy(port, board=None, build_dir=None, dest="", force=False, on_file=None):
    """Copy the app tree to `dest` on the board at `port` (or "auto": the one meter attached; "" = the
    board's current directory, which is the flash root on an ESP32). Returns {"copied": [...], "unchanged": [...], "bytes": n}."""
    build = Path(build_dir) if build_dir else find_build(board)
    tree = build / TREE_NAME
    if not tree.is_dir():
        raise UsageError(f"{build} has no {TREE_NAME}/ tree", hint="rebuild with `meterkit build`")
    manifest = json.loads((build / MANIFEST_NAME).read_text())
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    dirs = sorted({p.parent.relative_to(tree).as_posix() for p in files} - {"."},
                  key=lambda s: s.count("/"))
    from host_tools.device.ports import reason, resolve
    port = resolve(port)                    # `auto`: the one meter attached
    try:
        t = SerialTransport(port, baudrate=115200)
    except TransportError as e:
        raise DeviceError(f"cannot open the port {port}: {reason(e, port)}",
                          hint="check the port name (`meterkit devs` lists them) and that nothing else has it open") from None
    copied, unchanged, nbytes = [], [], 0
    try:
        t.enter_raw_repl(soft_reset=False)  # `resume` semantics
        for d in dirs:
            r = _remote(dest, d)
            if not t.fs_exists(r):
                t.fs_mkdir(r)
        for p in files:
            rel = p.relative_to(tree).as_posix()
            r = _remote(dest, rel)
            data = p.read_bytes()
            if not force and t.fs_exists(r):
                try:
                    same = t.fs_hashfile(r, "sha256") == hashlib.sha256(data).digest()
                except (TransportError, TransportExecError, OSError):
                    same = False
                if same:
                    unchanged.append(rel)
                    continue
            t.fs_writefile(r, data)
            copied.append(rel)
            nbytes += len(data)
            if on_file:
                on_file(rel, len(data))
        t.exit_raw_repl()
    except (TransportError, TransportExecError, OSError) as e:
        raise DeviceError(f"{port}: deploy failed: {e}", hint="is the board running MicroPython's REPL?") from None
    finally:
        try:
            t.close()
        except OSError:
            pass
    return {"board": manifest.get("board"), "port": port, "copied": copied, "unchanged": unchanged, "bytes": nbytes}
