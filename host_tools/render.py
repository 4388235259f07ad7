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
]
_ORDER = {k: i for i, (k, _, _) in enumerate(FIELDS)}
_LABEL = {k: (lbl, f) for k, lbl, f in FIELDS}
# Plumbing the people need not see (the exact remainder is folded into the kWh figure instead).
HIDDEN = {"id", "ok", "pong", "import_rem", "export_rem", "rem_den"}


def _num(v):
    return "%s" % format(v, ".6g") if isinstance(v, float) else str(v)


# Units by a field's suffix, for fields not listed above (simulator results, tool summaries).
SUFFIXES = [
    ("_wh", lambda v: kwh(v, 4)), ("_bytes", _kib), ("_pct", lambda v: "%s %%" % _num(v)),
    ("_seconds", lambda v: "%s s" % _num(v)), ("_s", lambda v: "%s s" % _num(v)), ("_ms", lambda v: "%s ms" % _num(v)),
]


def _by_suffix(k):
    for suf, f in SUFFIXES:
        if k.endswith(suf):
            lbl = (k if suf == "_seconds" else k[:-len(suf)]).replace("_", " ")
            return lbl, (lambda v, f=f: f(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
    return k.replace("_", " "), None


def rows(reply, ordered=False):
    """[(label, text)] for a reply dict, in a stable order (known fields first, then by name; or as
    given with `ordered`), values in units."""
    r = dict(reply)
    # A meter in kWh mode keeps its credit in Wh, not in money (firmware/ui/display.py).
    in_kwh = r.get("mode") == "kwh"
    den = r.get("rem_den")
    if den:
        for k in ("import", "export"):
            if k + "_wh" in r and k + "_rem" in r:
                r[k + "_wh"] = r[k + "_wh"] + r[k + "_rem"] / den
    keys = [k for k in r if k not in HIDDEN]
    if not ordered:
        keys.sort(key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
    out = []
    for k in keys:
        v = r[k]
        lbl, f = _LABEL.get(k) or _by_suffix(k)
        if in_kwh and f is _money and isinstance(v, int) and not isinstance(v, bool):
            f = kwh
        if isinstance(v, dict):
            out.append((lbl, ""))
            out.extend(("  " + a, b) for a, b in rows(v))
            continue
        if v is None and k != "check":
            text = "-"
        elif f is not None:
            text = f(v)
        elif isinstance(v, bool):
            text = "yes" if v else "no"
        elif isinstance(v, (list, tuple)):
            text = _list(v)
        else:
            text = _num(v)
        if isinstance(v, bool) and f is str:
            text = "yes" if v else "no"
        out.append((lbl, text))
    return out


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


def events_table(events, title=None):
    """Service-port events [[seq, unix, kind, data], ...] as a table with local times."""
    from rich.table import Table
    t = Table(title=title, box=None, pad_edge=False)
    for c in ("#", "time", "event", "detail"):
        t.add_column(c)
    for e in events:
        seq, at, kind, data = (list(e) + [None] * 4)[:4]
        detail = ", ".join("%s %s" % kv for kv in sorted(data.items())) if isinstance(data, dict) else (
            "" if data in (None, {}) else str(data))
        t.add_row(str(seq), local_time(at) if at else "time unknown", str(kind), detail)
    return t
