"""The firmware's memory on a 32-bit MicroPython (`make bench`): npm's WebAssembly port under Debian's
nodejs runs the firmware (the `.mpy` files a development image puts on the file system) against an
in-process board (`heap32/board.py`: virtual clock, the ATM90E26 driver on a register file, a
scripted modem and MQTT broker, RAM peripherals). Each run builds the app, runs a simulated hour of
polls, takes a token and a statement; the same runs on the 64-bit unix port give the figures beside.

Runs (one fresh interpreter each): `base` = metering, prepaid core, service port (what safe mode
keeps); `ui` = plus display and keypad; `full` = plus a provisioned meter's cellular side online
(MQTT session up, readings published); `imports` = only importing the modules resident in `full`,
grouped by subsystem. Reported per subsystem:
- heap_32bit_import_bytes_<group>: what importing that group's modules costs (bytecode, qstrs and
  module objects on the heap: in a frozen image most of this moves to flash);
- heap_32bit_live_bytes (the full run) and _run_<run>: heap in use after gc.collect() at the end of
  the run (the app's objects plus its imported code); per subsystem: _metering_prepaid_core (the
  base run), _ui and _cellular (what each adds);
- heap_32bit_peak_bytes (the full run) and _run_<run>: the most the heap held at any superloop step
  (garbage included, which the app's own gc job collects every few polls).
The wasm heap grows on demand, so no cap is tested here; the live figure is what must fit."""
import json
import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from host_tools.build.compile import compile_source
from host_tools.paths import BUILD, ROOT, board_dir, micropython_bin
from host_tools.sim.esp32.fwbuild import build_tree
from host_tools.bench import wasm32

HERE = Path(__file__).resolve().parent / "heap32"
BOARD = "esp32_atm90e26"
EPOCH = 1767571200           # the in-process board's clock starts here (2026-01-05)
RUNS = ("base", "ui", "full")
TARGET_LIVE = 96 * 1024      # .mpy mode must fit a PSRAM-less ESP32 (about 110 KB of heap) with room
STRETCH_LIVE = 64 * 1024


def provision_request():
    """A provision request (fixed keys: a measurement, not a meter) and an STS token its key accepts."""
    from host_tools.vend import sts_encode
    sts_key = bytes(range(1, 17))
    req = {"pan": "600727000000000009", "serial": 9, "meter_id": "600727000000000009", "sgc": "123457",
           "ti": 1, "krn": 1, "base_date": "14", "sts_key": sts_key.hex(), "message_key": "5a" * 31 + "a5",
           "service_key": "3c" * 31 + "c3", "customer": "+22236000001",
           "broker": {"host": "he.example", "port": 1883, "username": "600727000000000009",
                      "password": "s3cret-pass"}}
    tid = sts_encode.tid_from_time(datetime.fromtimestamp(EPOCH, timezone.utc), "14") - 10
    token = sts_encode.build(sts_key, 0, 4, sts_encode.random_rnd(), tid, sts_encode.encode_amount(500 * 1000))
    return req, token["token"]


def tree(work):
    """The firmware as a development image has it (.mpy), the in-process board, and board.json."""
    t = work / "tree"
    shutil.copytree(build_tree("sim", mpy=True), t)
    (t / "board.mpy").unlink()               # the sim board needs sockets: the in-process one replaces it
    (t / "main.py").unlink()
    (t / "heapboard.mpy").write_bytes(compile_source(HERE / "board.py", "heapboard.py"))
    shutil.copy(board_dir(BOARD) / "board.json", t / "board.json")
    return t


def _code(mode, root, info, prov, token, modules=(), seconds=3600):
    head = "MODE=%r\nROOT=%r\nINFO=%r\nPROV=%s\nTOKEN=%r\nMODULES=%s\nSECONDS=%d\n" % (
        mode, root, info, json.dumps(prov) if prov else "None", token, json.dumps(list(modules)), seconds)
    return head + (HERE / "run.py").read_text()


def _qstr_info(line):
    """{"n_qstr": .., "n_str_data_bytes": .., "n_total_bytes": ..} from micropython.qstr_info()'s line."""
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split(":", 1)[1].replace(",", " ").split())}


def _parse(proc, what):
    qstr = None
    per = {}           # imports run: group -> qstr_info after it
    group = None
    for line in proc.stdout.splitlines():
        if line.startswith("QSTR "):
            group = line[5:]
        elif line.startswith("qstr pool:"):
            qstr = _qstr_info(line)
            if group is not None:
                per[group] = qstr
                group = None
        elif line.startswith("HEAP32 "):
            out = json.loads(line[7:])
            out["qstr_bytes"] = qstr and qstr["n_total_bytes"]
            out["qstr_after"] = per
            return out
    raise RuntimeError("%s printed no result (exit %s):\n%s\n%s" % (what, proc.returncode, proc.stdout[-2000:],
                                                                    proc.stderr[-2000:]))


def run_wasm(tree, work, mode, prov, token, modules=(), seconds=3600):
    proc = wasm32.run(tree, _code(mode, "/flash", "/app/board.json", prov, token, modules, seconds), work,
                      8 * 1024 * 1024, then=wasm32.STEP_UNTIL_DONE, name="wasm-%s" % mode)
    return _parse(proc, "the 32-bit run (%s)" % mode)


def run_unix(tree, work, mode, prov, token, modules=(), seconds=3600):
    root = work / ("flash-%s" % mode)
    shutil.rmtree(root, ignore_errors=True)
    env = dict(os.environ, MICROPYPATH=str(tree))
    code = _code(mode, str(root), str(tree / "board.json"), prov, token, modules, seconds) + "\nwhile not tick():\n    pass\nfinish()\n"
    proc = subprocess.run([micropython_bin(), "-X", "heapsize=4m", "-c", code],
                          capture_output=True, text=True, timeout=1200, env=env)
    return _parse(proc, "the 64-bit run (%s)" % mode)


# Imported leaves first, so a group's figure is what it adds to the groups before it (app last: it
# imports everything).
ORDER = ("store", "metering", "prepaid", "provision", "tokens", "ui", "comms", "core")


def groups(modules):
    """Resident modules by subsystem (their top-level package; single modules by what they serve),
    in ORDER."""
    names = {"app": "core", "service": "core", "util": "core", "store": "store",
             "prepaid": "prepaid", "credit": "prepaid", "relay": "prepaid"}
    out = {}
    for m in modules:
        top = m.split(".")[0]
        if top in ("heapboard", "__main__", "micropython", "gc", "sys", "json", "os", "struct", "binascii",
                   "hashlib", "time", "random", "select", "io", "errno", "collections", "array", "re"):
            continue
        out.setdefault(names.get(top, top), []).append(m)
    rank = {g: i for i, g in enumerate(ORDER)}
    return sorted(([g, sorted(v, key=lambda n: (-n.count("."), n))] for g, v in out.items()),
                  key=lambda gv: (rank.get(gv[0], len(ORDER) - 1), gv[0]))


def measure():
    """{interpreter: {run: result}} for the three runs and the import run, on both interpreters."""
    prov, token = provision_request()
    work = Path(tempfile.mkdtemp(prefix="heap32-", dir=str(BUILD) if BUILD.exists() else None))
    try:
        t = tree(work)
        out = {"wasm32": {}, "unix64": {}}
        for name, fn in (("wasm32", run_wasm), ("unix64", run_unix)):
            for mode in RUNS:
                out[name][mode] = fn(t, work, mode, prov if mode == "full" else None, token)
            mods = groups(out[name]["full"]["modules"])
            out[name]["imports"] = fn(t, work, "imports", None, token, mods)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def figures(m):
    """The flat bench keys from `measure()`."""
    res = {}
    for name, bits in (("wasm32", "32bit"), ("unix64", "64bit")):
        r = m[name]
        full = r["full"]
        if full.get("token") != "accepted" or full.get("link") != "up" or not full.get("statement"):
            raise RuntimeError("the %s full run did not complete: token %s, link %s, statement %s" % (
                name, full.get("token"), full.get("link"), full.get("statement")))
        res["heap_%s_live_bytes" % bits] = full["heap_live_bytes"]
        res["heap_%s_peak_bytes" % bits] = full["heap_peak_bytes"]
        res["heap_%s_import_bytes" % bits] = r["imports"]["import_total"]
        if full.get("qstr_bytes") is not None:     # the names interned by every module loaded in the run
            res["heap_%s_qstr_bytes" % bits] = full["qstr_bytes"]
        for g, v in sorted(r["imports"]["import_bytes"].items()):
            res["heap_%s_import_bytes_%s" % (bits, g)] = v
        for mode in RUNS:
            res["heap_%s_live_bytes_run_%s" % (bits, mode)] = r[mode]["heap_live_bytes"]
            res["heap_%s_peak_bytes_run_%s" % (bits, mode)] = r[mode]["heap_peak_bytes"]
        # per subsystem: what each run adds to the one before
        res["heap_%s_live_bytes_metering_prepaid_core" % bits] = r["base"]["heap_live_bytes"]
        res["heap_%s_live_bytes_ui" % bits] = r["ui"]["heap_live_bytes"] - r["base"]["heap_live_bytes"]
        res["heap_%s_live_bytes_cellular" % bits] = r["full"]["heap_live_bytes"] - r["ui"]["heap_live_bytes"]
    res["heap_32bit_mpy_live_target_met"] = res["heap_32bit_live_bytes"] <= TARGET_LIVE
    res["heap_32bit_mpy_live_stretch_met"] = res["heap_32bit_live_bytes"] <= STRETCH_LIVE
    return res


def run():
    return figures(measure())


def _source(mod):
    base = ROOT / "firmware" / mod.replace(".", "/")
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def _top_imports(mod):
    """The firmware modules `mod` imports when it is imported (module-level imports, packages too)."""
    import ast
    names = []
    for node in ast.parse(_source(mod).read_text()).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [node.module + "." + a.name for a in node.names]
    names += [mod]
    out = []
    for n in names:
        parts = n.split(".")
        out += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [n for n in out if n != mod and _source(n) is not None]


def per_module(modules=None):
    """{module: bytes its import adds} on the 32-bit interpreter, each module imported after the
    firmware modules it imports (so its figure is its own: bytecode, functions, names), for the
    modules resident after the full run (or `modules`)."""
    prov, token = provision_request()
    work = Path(tempfile.mkdtemp(prefix="heap32-", dir=str(BUILD) if BUILD.exists() else None))
    try:
        t = tree(work)
        if modules is None:
            modules = [m for _, ms in groups(run_wasm(t, work, "full", prov, token)["modules"]) for m in ms]
        order, seen = [], set()

        def visit(m):
            if m in seen or _source(m) is None:
                return
            seen.add(m)
            for d in _top_imports(m):
                visit(d)
            order.append(m)
        for m in modules:
            visit(m)
        r = run_wasm(t, work, "imports", None, token, [[m, [m]] for m in order])
        # The qstr pools grow by doubling: whichever module's names fill a pool pays for the next
        # one. Each module is charged its own names instead (text + 7 bytes of pool entry each).
        out, prev = {}, None
        for m in order:
            q = r["qstr_after"][m]
            d = r["import_bytes"][m]
            if prev is not None:
                d -= q["n_total_bytes"] - prev["n_total_bytes"]
                d += q["n_str_data_bytes"] - prev["n_str_data_bytes"] + 7 * (q["n_qstr"] - prev["n_qstr"])
            out[m] = d
            prev = q
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--modules"]:       # per-module import cost, largest first
        for name, b in sorted(per_module().items(), key=lambda kv: -kv[1]):
            print("%7d  %s" % (b, name))
    else:
        print(json.dumps(run(), indent=2, sort_keys=True))
