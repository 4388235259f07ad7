"""The app's own service commands (`ping`, `readings`, `totals`, `events`, `status`, `settings`),
loaded for each request and dropped after it (the service port's command modules): `ctx` is the App."""
import gc

from fwversion import VERSION

NAMES = ("ping", "readings", "totals", "events", "status", "settings")
PRIVILEGED = ()


def handle(app, cmd, req):
    return globals()["_" + cmd](app, req)


def _ping(app, req):
    return {"pong": True, "calibrated": app.calibrated, "board": app.board.info["name"], "version": VERSION,
            "time": app.clock.time(), "time_valid": app.clock.time_valid}


def _readings(app, req):
    if app.meter.polls == 0 or req.get("fresh"):
        app.meter.poll()
    return app.meter.readings()


def _totals(app, req):
    if req.get("fresh", True):
        app.meter.poll()
    out = app.meter.totals()
    out["readings"] = app.meter.readings()
    return out


def _events(app, req):
    since = req.get("since", 0)
    if not isinstance(since, int):       # a sequence number; "0" or null must not compare with ints
        raise ValueError("since must be an event sequence number (an integer)")
    return {"events": [list(e) for e in app.events.since(since)], "counts": app.events.counts,
            "seq": app.events.seq}


def _settings(app, req):
    """The settings the meter runs with (settings.json checked and completed by its defaults; no
    keys: those live in the store's records and are never answered)."""
    out = dict(app.settings)
    out["prepaid"] = app.prepaid.cfg          # with the prepaid core's defaults: what is in force
    return {"settings": out}


def _status(app, req):
    app._heap_sample()
    gc.collect()
    try:
        live = gc.mem_alloc()
    except AttributeError:
        live = 0
    return {"heap_peak": app.heap_peak, "heap_total": app.heap_total, "heap_live": live,
            "polls": app.meter.polls, "loop_ticks": app.sched.ticks, "jobs": app.sched.profile(),
            "uptime_s": app.clock.ticks_diff(app.clock.ticks_ms(), app.boot_ticks) // 1000,
            "health": app.meter.readings()["health"], "faults": app.meter.faults,
            "safe_mode": app.safe_mode, "boots": app.boot.boots, "resets_in_a_row": app.boot.resets,
            "console_locked": bool(getattr(app.board, "console_locked", False)),
            "firmware": app.ota.status() if app.ota else {"version": VERSION, "slot": None}}
