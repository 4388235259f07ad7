# The memory run (MicroPython), after the bench has set MODE ("base": metering, prepaid core and
# service port; "ui": plus display and keypad; "full": plus a provisioned meter's cellular side
# online; "imports": import the resident modules only), ROOT (the flash directory), INFO (board.json
# path), PROV (provision request dict, or None), TOKEN (an STS token PROV's key accepts), MODULES (for
# "imports": [[group, [module, ...]], ...]), SECONDS (of polls before the token: 3600 in the bench).
#
# The caller drives it: `tick()` until it returns True, then `finish()`, which prints one line
# "HEAP32 " + JSON. One superloop step per tick, with gc.collect() between ticks: the WebAssembly
# port only collects what the running call no longer holds, so each step is its own call there.
# Peak = the most the heap held after any step before its garbage was collected (an upper bound of
# what the step needed); live = after a collection at the end.
import gc
import json
import micropython
import sys


def used():
    gc.collect()
    return gc.mem_alloc()


out = {"mode": MODE, "word_bits": 32 if sys.maxsize < 2 ** 32 else 64}
start = used()
peak = 0
app = None
board = None


def imports():
    groups = {}
    for group, names in MODULES:
        before = used()
        for n in names:
            __import__(n)
        yield                       # measured in the next step: nothing of the import's call is held
        groups[group] = used() - before
        print("QSTR " + group)      # the names it interned (the bench reads the line that follows)
        micropython.qstr_info()
    out["import_bytes"] = groups
    out["import_total"] = used() - start


def build():
    global board, app
    import heapboard
    info = heapboard.load_info(INFO)
    settings = {"ui": 0 if MODE == "base" else 1, "prepaid": {"ledger": {"opening_credit": 500000}}}
    try:
        import os
        os.mkdir(ROOT)
    except OSError:
        pass
    with open(ROOT + "/settings.json", "w") as f:
        f.write(json.dumps(settings))
    pkt = None
    if MODE == "full":
        # A meter leaves the factory provisioned: identity and keys written as the line writes them.
        from store.records import Store
        from provision.request import records_from_request
        ident, keys = records_from_request(PROV, 1767571200)
        Store(ROOT).commit_many({"identity": ident, "keys": keys, "factory": {"locked": True}})
        for n in [k for k in sys.modules if k.startswith("provision") or k.startswith("store")]:
            del sys.modules[n]
        from comms import mqttpkt as pkt
    board = heapboard.Board(info, ROOT, pkt)
    yield
    out["board_bytes"] = used() - start
    from app.composition import App
    app = App(board)
    yield
    out["app_built_bytes"] = used() - start


def steps(until_ms, done=None):
    clock = board.clock
    while clock.now_ms < until_ms:
        app.sched.step()
        yield
        if done is not None and done():
            return


def request(obj):
    svc = board.service
    svc.lines = []
    svc.rx += json.dumps(obj).encode() + b"\n"
    for _ in steps(board.clock.now_ms + 5000, lambda: bool(svc.lines)):
        yield
    out[obj["cmd"]] = json.loads(svc.lines[-1]) if svc.lines else None


def script():
    if MODE == "imports":
        for _ in imports():
            yield
        return
    for _ in build():
        yield
    app.events.emit("boot", None)
    for _ in steps(SECONDS * 1000):              # a simulated hour of polls (the bench)
        yield
    out["link"] = app.cellular.link.status()["state"] if app.cellular is not None else None
    for _ in request({"id": 1, "cmd": "token", "digits": TOKEN}):
        yield
    for _ in request({"id": 2, "cmd": "statement"}):
        yield
    if MODE == "full":                            # readings to the head-end through the session
        for _ in steps(board.clock.now_ms + min(SECONDS, 900) * 1000):
            yield
        out["published"] = board.modem.published


_it = script()


def tick():
    global peak
    gc.collect()
    try:
        next(_it)
    except StopIteration:
        return True
    a = gc.mem_alloc()
    if a > peak:
        peak = a
    return False


def finish():
    if MODE != "imports":
        t = out.pop("token") or {}
        out["token"] = t.get("result")
        out["statement"] = bool((out.pop("statement") or {}).get("ok"))
        out["polls"] = app.meter.polls
        out["heap_live_bytes"] = used() - start
        out["heap_peak_bytes"] = peak - start
        out["modules"] = sorted(k for k in sys.modules)
    micropython.qstr_info()          # "qstr pool: ... n_total_bytes=N": interned names (heap in .mpy mode)
    print("HEAP32 " + json.dumps(out))
