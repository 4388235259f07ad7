"""Meter and tool results for people: the one host-side place that turns the firmware's integers into
units (V, A, W, kWh, money, local dates) in a stable field order, as rich tables. `--json` never
comes here: machines get the exact integers.

Money uses the firmware's own formatter (`ui/fmt.py`, integer arithmetic, truncated toward zero) so a
credit reads the same on the meter's display and on the technician's screen."""
import datetime
import os
import sys

from host_tools.fwimport import firmware_module

CURRENCY = os.environ.get("METERKIT_CURRENCY", "MRU")
MINOR_PER_MAJOR = int(os.environ.get("METERKIT_MINOR_PER_MAJOR", "100") or 100)

_fmt = None


def _fw():
    global _fmt
    if _fmt is None:
        _fmt = firmware_module("ui.fmt")
    return _fmt


def money(minor, per_major=None, currency=None):
    """'12.34 MRU' for 1234 minor units (the meter's formatter)."""
    if minor is None:
        return "-"
    return _fw().money(int(minor), per_major or MINOR_PER_MAJOR, currency or CURRENCY)


def major(amount, currency=None):
    """'25.00 MRU', '2.375 MRU' for an amount in major units (a Decimal, int or str): the currency's
    decimals at least, more only when the amount has them (nothing is rounded away)."""
    from decimal import Decimal
    d = Decimal(str(amount))
    places = Decimal(1).scaleb(-_fw().money_scale(MINOR_PER_MAJOR)[0])
    q = d.quantize(places)
    text = format(q if q == d else d.normalize(), "f")
    return "%s %s" % (text, currency or CURRENCY)


def token_amount(what, quantity):
    """A token's amount as the head-end keeps it ("kwh": tenths of kWh; "currency": 0.00001 currency
    units) in its unit: '2.5 kWh', '25.00 MRU'."""
    if not _is_num(quantity):
        return str(quantity)
    from decimal import Decimal
    if what == "kwh":
        return "%s kWh" % format((Decimal(int(quantity)) / 10).normalize(), "f")
    if what == "currency":
        return major(Decimal(int(quantity)) / 100000)
    return "%s %s" % (quantity, what)


def kwh(wh, decimals=3):
    """'1.234 kWh' for 1234 Wh (a float is fine: a register plus its remainder)."""
    if wh is None:
        return "-"
    return "%.*f kWh" % (decimals, wh / 1000.0)


def local_time(unix):
    """A Unix time as a local date and time with its zone: '2026-01-05 00:20:09 UTC'."""
    if unix in (None, 0):
        return "-"
    try:
        t = datetime.datetime.fromtimestamp(float(unix)).astimezone()
    except (OverflowError, OSError, ValueError):
        return str(unix)
    return t.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _scaled(div, nd, unit):
    def f(v):
        return ("%.*f %s" % (nd, v / div, unit)).strip() if isinstance(v, (int, float)) else str(v)
    return f


def _plain(unit):
    return lambda v: ("%s %s" % (v, unit)) if isinstance(v, (int, float)) else str(v)


def _seconds(v):
    if not isinstance(v, (int, float)):
        return str(v)
    v = int(v)
    d, r = divmod(v, 86400)
    h, r = divmod(r, 3600)
    m, s = divmod(r, 60)
    return ("%dd " % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


def _kib(v):
    return "%.1f KiB" % (v / 1024.0) if isinstance(v, (int, float)) else str(v)


def _money(v):
    if isinstance(v, (list, tuple)):
        return _list(v)
    return money(v) if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _list(v):
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "none"
    return str(v) if v != "" else "none"


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yesno(v):
    """A flag (a bool, or a 0/1 setting) as yes/no."""
    if isinstance(v, bool) or v in (0, 1):
        return "yes" if v else "no"
    return str(v)


def _per_kwh(v):
    """A price in minor units per MWh as money per kWh, exact: 500000 -> '5.00 MRU/kWh'."""
    if not _is_num(v):
        return str(v)
    from decimal import Decimal
    return major(Decimal(int(v)) / 1000 / MINOR_PER_MAJOR) + "/kWh"


def _per_day(v):
    return _money(v) + "/day" if _is_num(v) else str(v)


def _bp(v):
    """Basis points as a percentage: 1600 -> '16.00 %'."""
    return "%.2f %%" % (v / 100.0) if _is_num(v) else str(v)


def _times(v):
    """A multiplier in basis points: 15000 -> 'x 1.50'."""
    return "x %.2f" % (v / 10000.0) if _is_num(v) else str(v)


def _hour(v):
    return "%02d:00 UTC" % v if _is_num(v) else str(v)


def _since(v):
    """A tariff's start: Unix seconds, 0 for always."""
    if not _is_num(v):
        return str(v)
    return "the start" if v == 0 else local_time(v)


def _signed_s(v):
    return "%+d s" % v if _is_num(v) else ("-" if v is None else str(v))


# firmware field -> (label, formatter), in the order people read them. Fields not listed follow, sorted.
FIELDS = [
    ("meter_id", "meter", str), ("pan", "PAN", str), ("serial", "serial", str), ("board", "board", str),
    ("firmware", "firmware", str), ("version", "firmware", str),
    ("result", "result", str), ("applied", "applied", str), ("granted", "granted", str),
    ("reconnected", "reconnected", str), ("reason", "reason", str),
    ("urms_cv", "voltage", _scaled(100, 2, "V")), ("irms_ma", "current", _scaled(1000, 3, "A")),
    ("irms_n_ma", "neutral current", _scaled(1000, 3, "A")), ("p_w", "active power", _plain("W")),
    ("q_var", "reactive power", _plain("var")), ("s_va", "apparent power", _plain("VA")),
    ("pf_milli", "power factor", _scaled(1000, 3, "")), ("freq_chz", "frequency", _scaled(100, 2, "Hz")),
    ("angle_dd", "phase angle", _scaled(10, 1, "deg")), ("health", "chip", str),
    ("import_wh", "imported", lambda v: kwh(v)), ("export_wh", "exported", lambda v: kwh(v)),
    ("mode", "mode", str), ("credit", "credit", _money), ("credit_added", "credit added", _money),
    ("balance", "balance", _money), ("debt", "debt", _money), ("emergency_owed", "emergency owed", _money),
    ("emergency", "emergency", str), ("opening", "opening credit", _money), ("topups", "top-ups", _money),
    ("debited", "debited", _money), ("cleared", "cleared", _money), ("cost", "cost", _money),
    ("days_left", "days left", str), ("supply", "supply", str), ("reasons", "open because", _list),
    ("tamper", "tamper", _list), ("check", "ledger check", lambda v: "conserved" if v is None else str(v)),
    ("time", "meter time", local_time), ("time_valid", "time valid", str), ("calibrated", "calibrated", str),
    ("provisioned", "provisioned", str), ("factory_mode", "factory mode", str),
    ("key_revision", "key revision (KRN)", str),
    ("uptime_s", "uptime", _seconds), ("heap_peak", "heap peak", _kib), ("heap_total", "heap", _kib), ("heap_live", "heap live", _kib),
    ("polls", "polls", str), ("faults", "faults", _list),
    ("provisioned_at", "provisioned at", local_time), ("arrears", "arrears", _money),
    # token and top-up amounts (event data): money, or Wh on a meter in kWh mode
    ("quantity", "amount", str), ("amt", "amount", _money), ("amount", "amount", _money), ("added", "added", _money),
    ("reg", "top-ups register", _money), ("ch", "channel", str), ("tid", "TID", str),
    ("ts", "at", local_time), ("unix", "time", local_time), ("drift", "drift", _signed_s),
    ("safe", "safe mode", _yesno),
    # settings in force (`device config`)
    ("opening_credit", "opening credit", _money), ("emergency_amount", "emergency credit", _money),
    ("minor_per_major", "minor units per major", str), ("tariffs", "tariffs", str),
    ("start", "from", _since), ("blocks", "blocks", str), ("price_per_mwh", "price", _per_kwh),
    ("upto_kwh", "up to", _plain("kWh this month")), ("standing_per_day", "standing charge", _per_day),
    ("tax_bp", "tax", _bp), ("mult_bp", "price", _times), ("from_hour", "from", _hour), ("to_hour", "to", _hour),
    ("commit_s", "commit at least every", _plain("s")), ("commit_wh", "commit after", _plain("Wh of use")),
    ("max_voltage_cv", "plausible voltage up to", _scaled(100, 2, "V")),
    ("statement_hour", "statement SMS at", _hour),
    ("sms_tokens_registered_only", "SMS tokens from registered numbers only", _yesno),
    ("sms_balance_registered_only", "SMS balance to registered numbers only", _yesno),
    ("ui", "display and keypad", _yesno),
]
_ORDER = {k: i for i, (k, _, _) in enumerate(FIELDS)}
_LABEL = {k: (lbl, f) for k, lbl, f in FIELDS}
# Plumbing the people need not see (the exact remainder is folded into the kWh figure instead).
HIDDEN = {"id", "ok", "pong", "import_rem", "export_rem", "rem_den"}


def _num(v):
    return "%s" % format(v, ".6g") if isinstance(v, float) else str(v)


# Units by a field's suffix, for fields not listed above (simulator results, tool summaries).
SUFFIXES = [
    ("_at", local_time), ("_wh", lambda v: kwh(v, 4)), ("_bytes", _kib), ("_pct", lambda v: "%s %%" % _num(v)),
    ("_seconds", lambda v: "%s s" % _num(v)), ("_s", lambda v: "%s s" % _num(v)), ("_ms", lambda v: "%s ms" % _num(v)),
]


def _by_suffix(k):
    for suf, f in SUFFIXES:
        if k.endswith(suf):
            lbl = (k if suf == "_seconds" else k[:-len(suf)]).replace("_", " ")
            return lbl, (lambda v, f=f: f(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
    return k.replace("_", " "), None


def _mode(r):
    """The credit mode a reply speaks of: its own `mode`, a topup event's `unit`, a result's `meter_mode`,
    or the tariff of the settings it carries; None when it does not say."""
    if not isinstance(r, dict):
        return None
    if r.get("mode") in ("money", "kwh"):
        return r["mode"]
    if r.get("unit") in ("wh", "minor"):
        return "kwh" if r["unit"] == "wh" else "money"
    if r.get("meter_mode") in ("money", "kwh"):
        return r["meter_mode"]
    for k in ("settings", "prepaid", "tariff"):
        m = _mode(r.get(k))
        if m:
            return m
    return None


def _value(k, v, in_kwh=False, f=None):
    """The text of one scalar or list value of field `k`."""
    if f is None:
        f = (_LABEL.get(k) or _by_suffix(k))[1]
    if in_kwh and f in (_money, _per_day) and _is_num(v):
        f = kwh
    if v is None and k != "check":
        return "-"
    if isinstance(v, str) and v == "" and f in (str, None):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)) and any(isinstance(x, (dict, list, tuple)) for x in v):
        return "; ".join(_inline(x, in_kwh) if isinstance(x, dict) else _value(k, x, in_kwh) for x in v)
    if f is not None:
        return f(v)
    if isinstance(v, (list, tuple)):
        return _list(v)
    return _num(v)


def _keys(r, ordered):
    keys = [k for k in r if k not in HIDDEN]
    if not ordered:
        keys.sort(key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
    return keys


def _labels(keys):
    """{key: label}; two fields that would read alike (commit_s, commit_wh by their suffixes) keep their
    whole names instead."""
    lbl = {k: (_LABEL.get(k) or _by_suffix(k))[0] for k in keys}
    seen = {}
    for k in keys:
        seen.setdefault(lbl[k], []).append(k)
    for same in seen.values():
        if len(same) > 1:
            for k in same:
                if k not in _LABEL:
                    lbl[k] = k.replace("_", " ")
    return lbl


def rows(reply, ordered=False, in_kwh=None):
    """[(label, text)] for a reply dict, in a stable order (known fields first, then by name; or as
    given with `ordered`), values in units. Nested dicts follow their label, indented; a list of
    dicts (tariffs, blocks) is numbered, one indented group each."""
    r = dict(reply)
    # A meter in kWh mode keeps its credit in Wh, not in money (firmware/ui/display.py).
    if in_kwh is None or _mode(r):
        in_kwh = _mode(r) == "kwh"
    den = r.get("rem_den")
    if den:
        for k in ("import", "export"):
            if k + "_wh" in r and k + "_rem" in r:
                r[k + "_wh"] = r[k + "_wh"] + r[k + "_rem"] / den
    keys = _keys(r, ordered)
    labels = _labels(keys)
    out = []
    for k in keys:
        v = r[k]
        lbl = labels[k]
        if isinstance(v, dict):
            inner = rows(v, in_kwh=in_kwh)
            out.append((lbl, "" if inner else "-"))
            out.extend(("  " + a, b) for a, b in inner)
            continue
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            out.append((lbl, ""))
            one = lbl[:-1] if lbl.endswith("s") else lbl          # tariffs -> tariff 1, tariff 2
            for i, x in enumerate(v, 1):
                if not any(isinstance(y, (dict, list, tuple)) for y in x.values()):
                    out.append(("  %s %d" % (one, i), detail(x, in_kwh) or "-"))     # a flat one on its line
                    continue
                out.append(("  %s %d" % (one, i), ""))
                out.extend(("    " + a, b) for a, b in rows(x, in_kwh=in_kwh))
            continue
        out.append((lbl, _value(k, v, in_kwh)))
    return out


# Nested dicts in an event's data whose fields read as the event's own (a meter event's `data`, a
# result's `detail`).
_FLATTEN = ("data", "detail")


def _inline(d, in_kwh=False):
    """A dict on one line: 'label value, label value' in units, in the stable order."""
    return detail(d, in_kwh=in_kwh)


def detail(data, in_kwh=None):
    """An event's data on one line for people: 'amount 25.00 MRU, channel remote, at 2026-01-05 ...',
    in units, flags as yes/no, nothing missing as '-', nested data inline. A token's `quantity` is said
    in its unit (`what`)."""
    if data is None or data == {} or data == "":
        return ""
    if not isinstance(data, dict):
        return _value("", data, bool(in_kwh)) if isinstance(data, (list, tuple)) else str(data)
    d = dict(data)
    for k in _FLATTEN:      # a meter event's data, a result's detail: its fields read as the event's
        if isinstance(d.get(k), dict) and not set(d[k]) & set(d):
            d.update(d.pop(k))
    mode = _mode(d)
    in_kwh = (mode == "kwh") if mode else bool(in_kwh)
    if "quantity" in d and d.get("what") in ("kwh", "currency"):
        d["quantity"] = token_amount(d.pop("what"), d["quantity"])
    if d.get("unit") in ("wh", "minor") and ("amt" in d or "amount" in d):
        d.pop("unit")       # said by the amount's own unit
    keys = _keys(d, False)
    labels = _labels(keys)
    parts = []
    for k in keys:
        v = d[k]
        if isinstance(v, dict):
            parts.append("%s (%s)" % (labels[k], detail(v, in_kwh) or "-"))
        else:
            parts.append("%s %s" % (labels[k], _value(k, v, in_kwh)))
    return ", ".join(parts)


def table(reply, title=None, ordered=False):
    from rich.table import Table
    t = Table(show_header=False, title=title, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for a, b in rows(reply, ordered):
        t.add_row(a, b)
    return t


def console(file=None):
    """A rich console; into a pipe or file it is wide (200 columns at least), so tables are not wrapped or
    cut at 80 columns."""
    from rich.console import Console
    f = file or sys.stdout
    width = None
    try:
        if not f.isatty():
            width = max(int(os.environ.get("COLUMNS") or 0), 200)
    except (AttributeError, ValueError):
        width = 200
    return Console(file=f, highlight=False, soft_wrap=True, width=width)


def show(reply, title=None, file=None):
    """Print a reply for people."""
    console(file).print(table(reply, title))


def events_table(events, title=None, in_kwh=None):
    """Service-port events [[seq, unix, kind, data], ...] as a table with local times, their data in
    units (render.detail)."""
    from rich.table import Table
    t = Table(title=title, box=None, pad_edge=False)
    for c in ("#", "time", "event", "detail"):
        t.add_column(c)
    for e in events:
        seq, at, kind, data = (list(e) + [None] * 4)[:4]
        t.add_row(str(seq), local_time(at) if at else "time unknown", str(kind), detail(data, in_kwh))
    return t
