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
from util import Refused
from util import once

PREPAID_KEYS = ("tariff", "ledger", "policy", "supply", "tamper", "commit_wh", "commit_s")
REMOTE = ("prepaid", "language", "statement_hour", "reading_period_s")
LANGUAGES = ("fr", "ar", "en")


def _stored(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check(path, args):
    """The new settings file contents; Refused (with the reason) if any value is wrong."""
    if not isinstance(args, dict) or not args:
        raise Refused("settings expected, e.g. {\"prepaid\": {\"tariff\": {...}}}")
    for k in args:
        if k not in REMOTE:
            raise Refused("%s cannot be set remotely (one of %s)" % (k, ", ".join(REMOTE)))
    data = _stored(path)
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


def set_config(path, settings, prepaid, args, emit):
    """Put `args` in force: the settings file at `path` rewritten, `settings` (the running dict)
    updated, the prepaid core rebuilt on the merged prepaid settings. The keys applied; Refused with
    nothing changed if any value is wrong."""
    data = _check(path, args)
    parts = None
    if "prepaid" in args:
        assemble = once("prepaid.assemble")
        try:
            parts = assemble.build(prepaid, data["prepaid"])   # every part checked before anything changes
        except ValueError as e:
            raise Refused(str(e))
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)
    if parts is not None:
        # A limit set by an STS token stays until the utility sets one.
        assemble.use(prepaid, parts, keep_limit="max_power_w" not in args["prepaid"].get("supply", {}))
        settings["prepaid"] = data["prepaid"]
    for k in ("language", "statement_hour", "reading_period_s"):
        if k in args:
            settings[k] = args[k]
    applied = sorted(args)
    emit("config_changed", {"keys": applied})
    return applied
