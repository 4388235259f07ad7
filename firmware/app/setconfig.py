"""`set_config` from the head-end: new settings checked in full, written to settings.json atomically
(a new file renamed over the old: a power cut leaves one or the other) and put in force at once,
without a restart. Loaded only while a command is handled.

Settable remotely: `prepaid` (its `tariff`, `ledger`, `policy`, `supply`, `tamper`, `commit_wh`,
`commit_s`: each given key replaces that whole part), `language`, `statement_hour` and
`reading_period_s`. The relay's timing, the metering period and the hardware settings are the
factory's. The running ledger, policy, supply and tamper state carry over unchanged; a tariff whose
rounding denominator differs moves the pending fraction across (credit.ledger). Tariff changes that
must start on a date are sent ahead as dated entries of the tariff list.
"""
import json
import os

from app import settings as config

PREPAID_KEYS = ("tariff", "ledger", "policy", "supply", "tamper", "commit_wh", "commit_s")
REMOTE = ("prepaid", "language", "statement_hour", "reading_period_s")
LANGUAGES = ("fr", "ar", "en")


class Refused(ValueError):
    pass


def _settings_path(app):
    return (app.root or "") + "/settings.json"


def _stored(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check(app, args):
    """The new settings file contents; Refused (with the reason) if any value is wrong."""
    if not isinstance(args, dict) or not args:
        raise Refused("settings expected, e.g. {\"prepaid\": {\"tariff\": {...}}}")
    for k in args:
        if k not in REMOTE:
            raise Refused("%s cannot be set remotely (one of %s)" % (k, ", ".join(REMOTE)))
    data = _stored(_settings_path(app))
    for k in args:
        v = args[k]
        if k == "prepaid":
            if not isinstance(v, dict) or not v:
                raise Refused("prepaid must be an object of parts")
            for part in v:
                if part not in PREPAID_KEYS:
                    raise Refused("prepaid %s cannot be set remotely (one of %s)" % (part, ", ".join(PREPAID_KEYS)))
            pp = dict(data.get("prepaid") or {})
            pp.update(v)
            data["prepaid"] = pp
        else:
            try:
                config.validate(k, v)
            except ValueError as e:
                raise Refused(str(e))
            if k == "language" and v not in LANGUAGES:
                raise Refused("language must be one of %s" % ", ".join(LANGUAGES))
            data[k] = v
    return data


def _build(app, pp):
    """The prepaid parts for the merged prepaid settings, carrying the running state over."""
    from prepaid.core import DEFAULTS
    from credit.tariff import Schedule
    from credit.ledger import Ledger
    from credit.policy import Policy
    from tamper.detector import Tamper
    from relay import relaycfg
    p = app.prepaid
    c = dict(DEFAULTS)
    c.update(pp)
    for k in ("commit_wh", "commit_s"):
        v = c[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 86400:
            raise ValueError("%s must be an integer 1..86400" % k)
    sch = Schedule(c["tariff"])
    led = Ledger(c["ledger"], sch, p.emit, p.ledger.state())
    pol = Policy(c["policy"], p.emit, p.policy.state())
    sup = relaycfg.supply(c["supply"])
    tp = Tamper(app.meter, p.clock, p.emit, p.supply, p.tamper.cover, c["tamper"], p.tamper.state())
    return c, sch, led, pol, sup, tp


def set_config(app, args):
    """(code, detail) for the protocol: done {applied}, or bad_args {why} with nothing changed."""
    try:
        data = _check(app, args)
        parts = _build(app, data["prepaid"]) if "prepaid" in args else None
    except ValueError as e:
        return "bad_args", {"why": str(e)}
    path = _settings_path(app)
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)
    p = app.prepaid
    if parts is not None:
        c, sch, led, pol, sup, tp = parts
        given_limit = "supply" in args["prepaid"] and "max_power_w" in args["prepaid"]["supply"]
        keep_limit = p.supply.limit_w
        p.cfg = c
        p.commit_wh = c["commit_wh"]
        p.commit_ms = c["commit_s"] * 1000
        p.schedule = sch
        p.ledger = led
        p.policy = pol
        s = p.supply
        (s.mode, s.key_mask, s.limit_w, s.over_ms, s.backoff_ms, s.backoff_max_ms, s.decay_ms, s.retry_ms) = sup
        if not given_limit:
            s.limit_w = keep_limit          # a limit set by an STS token stays until the utility sets one
        p.tamper = tp
        app.settings["prepaid"] = data["prepaid"]
        p.poll_supply()
        p.commit()
    for k in ("language", "statement_hour", "reading_period_s"):
        if k in args:
            app.settings[k] = args[k]
    cell = app.cellular
    if cell is not None:
        cell.statement_hour = app.settings["statement_hour"]
        link = cell.link
        if link.sms is not None:
            link.sms.lang = app.settings["language"]
        link.uplink.period_s = app.settings["reading_period_s"]
        link.uplink._next_reading = None
    app.events.emit("config_changed", {"keys": sorted(args)})
    return "done", {"applied": sorted(args)}
