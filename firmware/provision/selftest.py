"""The meter's self-test for the factory line and the field: each item passes or fails with a reason
a line operator can act on. Bounded: nothing here waits more than a few seconds of board clock."""
from micropython import const

from metering import chip as _chip

SCRATCH = "selftest"
_AT_TIMEOUT_MS = const(2000)
_AT_POLL_MS = const(20)
_CLOCK_SLEEP_MS = const(10)

ITEMS = ("metering_chip", "calibration", "relay", "modem", "flash", "clock")


def _item(name, ok, reason):
    return {"item": name, "pass": bool(ok), "reason": reason}


def check_chip(app):
    # One normal meter poll: probes the chip the way the superloop does, so no count is lost.
    app.meter.poll()
    h = app.meter.health
    if h == _chip.OK:
        return _item("metering_chip", True, "chip answers, probe ok")
    name = _chip.STATE_NAMES[h] if h is not None else "not started"
    return _item("metering_chip", False, "chip probe failed: %s" % name)


def check_calibration(app):
    if app.meter.health == _chip.CAL_ERROR:
        return _item("calibration", False, "the chip refused its calibration registers (checksum)")
    if not app.calibrated:
        return _item("calibration", False, "no calibration stored: board defaults in force, calibrate before shipping")
    return _item("calibration", True, "calibration loaded from flash and accepted by the chip")


def check_relay(app):
    relay = getattr(app, "relay", None)
    if relay is None:
        return _item("relay", False, "not wired: the firmware has no relay driver attached")
    was_closed = bool(getattr(relay, "closed", False))
    steps = []
    ok = True
    for want in (True, False):
        moved = relay.close() if want else relay.open()
        confirmed = getattr(relay, "confirmed", None)
        word = "close" if want else "open"
        if not moved:
            ok = False
            steps.append("%s: no feedback after retries" % word)
        elif confirmed is False:
            ok = False
            steps.append("%s: moved but not confirmed (no feedback)" % word)
        else:
            steps.append("%s: confirmed" % word)
    if was_closed:
        relay.close()  # leave the supply as it was found
    return _item("relay", ok, ", ".join(steps))


def check_modem(app):
    """The running link's state when there is one; else the modem answering AT (an engine the app
    holds, or one made here on the board's modem, powered since boot for this)."""
    cell = getattr(app, "cellular", None)
    if cell is not None:
        st = cell.link.status()
        state = st.get("state")
        ok = state not in (None, "off", "power", "boot", "dead")
        return _item("modem", ok, "link %s (rssi %s, attempts %s)" % (state, st.get("rssi"), st.get("attempts")))
    engine = getattr(app, "modem", None)
    tries = 1
    if engine is None:
        raw = getattr(app.board, "modem", None)
        if raw is None:
            return _item("modem", False, "not wired: the firmware has no modem attached")
        from comms.at import ATEngine
        engine = ATEngine(raw, app.clock)
        tries = 2              # a modem that has just booted may miss the first
    engine = getattr(engine, "at", engine)
    if getattr(engine, "data_mode", False):
        return _item("modem", True, "online (transparent data mode), not interrupted")
    if not (hasattr(engine, "send") and hasattr(engine, "poll")):
        return _item("modem", False, "the modem object has no AT engine (send/poll)")
    from comms.at import Cmd
    clock = app.clock
    for _ in range(tries):
        cmd = Cmd("AT", _AT_TIMEOUT_MS)
        engine.send(cmd)
        t0 = clock.ticks_ms()
        while not cmd.done() and clock.ticks_diff(clock.ticks_ms(), t0) < _AT_TIMEOUT_MS + 500:
            engine.poll()
            if not cmd.done():
                clock.sleep_ms(_AT_POLL_MS)
        if cmd.ok:
            return _item("modem", True, "answers AT with OK")
    return _item("modem", False, "AT: %s" % (cmd.result or "no answer"))


def check_flash(app):
    store = app.store
    if store is None:
        return _item("flash", False, "no file system mounted")
    value = {"ticks": app.clock.ticks_ms()}
    try:
        gen = store.commit(SCRATCH, value)
        back = store.load(SCRATCH)
    except Exception as e:
        return _item("flash", False, "scratch record: %s: %s" % (type(e).__name__, e))
    if back != value:
        return _item("flash", False, "scratch record read back different")
    return _item("flash", True, "scratch record written and read back (generation %d)" % gen)


def check_clock(app):
    clock = app.clock
    t0 = clock.ticks_ms()
    clock.sleep_ms(_CLOCK_SLEEP_MS)
    d = clock.ticks_diff(clock.ticks_ms(), t0)
    if d <= 0:
        return _item("clock", False, "ticks did not advance across a %d ms sleep" % _CLOCK_SLEEP_MS)
    if d < _CLOCK_SLEEP_MS:
        return _item("clock", False, "ticks advanced only %d ms across a %d ms sleep" % (d, _CLOCK_SLEEP_MS))
    return _item("clock", True, "ticks advanced %d ms across a %d ms sleep" % (d, _CLOCK_SLEEP_MS))


_CHECKS = (check_chip, check_calibration, check_relay, check_modem, check_flash, check_clock)


def run(app):
    """Every item in order; an item whose check raises fails with the exception, the rest still run."""
    items = []
    for i in range(len(_CHECKS)):
        try:
            items.append(_CHECKS[i](app))
        except Exception as e:
            items.append(_item(ITEMS[i], False, "check raised %s: %s" % (type(e).__name__, e)))
    return items


def cmd_selftest(pc, req):
    items = pc.selftest()
    failed = [i["item"] for i in items if not i["pass"]]
    pc.emit("selftest", {"failed": len(failed)})
    return {"items": items, "passed": not failed, "failed": failed}
