"""The technician's service requests, shared by `meterkit device` and `meterkit console`: each one's
service command, how its words become arguments, whether it is privileged, and how its reply is shown.

A request is a name and words, e.g. `token 1234 5678 ...`, `relay open`, `set-time 2026-01-05T10:00`."""
import datetime
import time

from host_tools import render
from host_tools.errors import UsageError


def _no_args(words):
    if words:
        raise UsageError("this request takes no arguments (got %s)" % " ".join(words))
    return {}


def _token(words):
    digits = "".join(words).replace("-", "")
    if not digits:
        raise UsageError("token needs its digits", hint="e.g. token 5938 6323 4721 3742 6967")
    if not digits.isdigit() or len(digits) not in (9, 12, 15, 20):
        raise UsageError("token %r is not a token: STS has 20 digits, OpenPAYGO 9, 12 or 15" % "".join(words),
                         hint="type the digits as printed; spaces and dashes are fine")
    return {"digits": digits}


def _relay(words):
    if words not in (["open"], ["close"]):
        raise UsageError("relay needs open or close", hint="relay open (remote disconnect) / relay close (release it)")
    return {"open": words[0] == "open"}


def parse_time(text):
    """'now', Unix seconds or an ISO 8601 time (naive = local) -> Unix seconds 2020..2100."""
    if text == "now":
        return int(time.time())
    try:
        unix = int(text)
    except ValueError:
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError("time %r is neither Unix seconds nor ISO 8601" % text,
                             hint="e.g. set-time now, set-time 2026-01-05T10:00 or set-time 1767607200") from None
        if dt.tzinfo is None:
            dt = dt.astimezone()
        unix = int(dt.timestamp())
    if not 1577836800 <= unix < 4102444800:
        raise UsageError("time %s is outside 2020..2100" % text, hint="the meter accepts times from 2020 to 2100")
    return unix


def _set_time(words):
    if len(words) != 1:
        raise UsageError("set-time needs one time", hint="set-time now | UNIX | 2026-01-05T10:00")
    return {"unix": parse_time(words[0])}


def _events(words):
    if not words:
        return {}
    try:
        return {"since": int(words[0])}
    except ValueError:
        raise UsageError("events takes a sequence number", hint="events 120 (those after #120)") from None


# name -> (service command, words -> args, privileged, help)
REQUESTS = {
    "ping": ("ping", _no_args, False, "is it there: board, firmware, time"),
    "identity": ("identity", _no_args, False, "meter id, PAN, serial, key revision, factory mode"),
    "readings": ("readings", lambda w: dict(_no_args(w), fresh=True), False, "voltage, current, power, frequency"),
    "totals": ("totals", _no_args, False, "imported and exported energy"),
    "credit": ("credit", _no_args, False, "credit, debt, supply and why it is open"),
    "statement": ("statement", _no_args, False, "last closed month and this month so far"),
    "events": ("events", _events, False, "the event log [since SEQ]"),
    "status": ("status", _no_args, False, "heap, uptime, polls, faults"),
    "token": ("token", _token, False, "enter a token: token DIGITS (STS 20, OpenPAYGO 9/12/15)"),
    "emergency": ("emergency", _no_args, False, "ask for emergency credit (the customer's key)"),
    "reconnect": ("reconnect", _no_args, False, "reconnect after a credit cut (the customer's key)"),
    "relay": ("relay", _relay, True, "relay open|close: remote disconnect or release it"),
    "set-time": ("set_time", _set_time, True, "set-time now|UNIX|ISO: set the meter's clock"),
    "tamper-clear": ("clear_tamper", _no_args, True, "re-arm tamper detection, lift a tamper disconnect"),
    "config": ("cal_get", _no_args, True, "configuration: identity, broker, STS identifiers, calibration, the settings in force (tariff, limits, periods)"),
}


def build(name, words):
    """(service command, args, privileged) for a request; UsageError for an unknown one or bad words."""
    if name not in REQUESTS:
        raise UsageError("unknown request %r" % name, hint="one of: " + ", ".join(REQUESTS))
    cmd, parse, priv, _ = REQUESTS[name]
    return cmd, parse(list(words)), priv


def run(client, name, words, db=None):
    """Run one request on an open ServiceClient; returns (reply, ok) where ok says the meter did what was
    asked (a token the meter refused is not ok)."""
    from host_tools.provision.session import privileged_session
    cmd, args, priv = build(name, words)
    if name == "config":
        with privileged_session(client, db, "config") as s:
            cal = client.call("cal_get")
            running = client.call("settings")
        ident = s.ident
        reply = {k: v for k, v in ident.items() if k not in ("id", "ok")}
        reply["calibration"] = cal.get("cal")
        reply["calibrated"] = cal.get("calibrated")
        reply["settings"] = running.get("settings")
        return reply, True
    if priv:
        with privileged_session(client, db, name):
            reply = client.call(cmd, **args)
    else:
        reply = client.call(cmd, **args)
    reply = {k: v for k, v in reply.items() if k not in ("id", "ok")}
    ok = True
    if name in ("token", "emergency", "reconnect", "statement") and "mode" not in reply:
        try:   # the unit of the credit figures: money, or Wh on a meter in kWh mode
            reply["mode"] = client.call("credit").get("mode")
        except Exception:   # noqa: BLE001 - the reply stands without it
            pass
    if name == "token":
        ok = reply.get("result") == "accepted"
    if name == "emergency":
        ok = bool(reply.get("granted"))
    return reply, ok


def show(name, reply, file=None):
    """Print a reply for people."""
    con = render.console(file)
    if name == "events":
        con.print(render.events_table(reply.get("events") or []))
        if not reply.get("events"):
            con.print("no events" + (" after #%s" % reply.get("since") if reply.get("since") else ""))
        counts = reply.get("counts") or {}
        if counts:
            con.print("counts: " + ", ".join("%s %d" % kv for kv in sorted(counts.items())))
        return
    if name == "token":
        res = reply.get("result")
        if res == "accepted":
            added = reply.get("credit_added")
            amount = render.kwh(added) if reply.get("mode") == "kwh" else render.money(added)
            con.print("token accepted" + (": %s added" % amount if isinstance(added, int) else ""))
        else:
            con.print("token REFUSED: %s" % (res or reply.get("error")))
        rest = {k: v for k, v in reply.items() if k not in ("result",) and v is not None}
        if rest:
            con.print(render.table(rest))
        return
    if name == "statement":
        for part in ("last", "current"):
            v = reply.get(part)
            title = "last closed month" if part == "last" else "this month so far"
            if v is None:
                con.print("%s: not known yet" % title)
            else:
                con.print(render.table(dict(v, mode=reply.get("mode")), title=title))
        return
    con.print(render.table(reply))
