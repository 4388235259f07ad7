"""What a lab puts on every certificate besides the measurements: a unique certificate number (from the
lab's register), the operator, the date, the ambient conditions (entered, or reported by the bench), the
reference standard's identity, the calibration due date and the traceability statement.

Settings come from options, then the lab file (`lab.json` in $METERKIT_DATA or the working folder,
or --lab FILE), then the bench:
  {"name": "...", "operator": "...", "due_months": 12,
   "reference_standard": {"name": "...", "serial": "...", "class_pct": 0.02, "certificate": "...",
                          "calibrated_by": "...", "due": "YYYY-MM-DD"},
   "traceability": "...", "ambient": {"temperature_c": 23.0, "humidity_pct": 50}}"""
import datetime
import getpass
import json
import os
import sqlite3

from host_tools.errors import UsageError
from host_tools.paths import data_dir

LAB_FILE = "lab.json"
REGISTER = "lab-register.sqlite"


def load_lab_file(path=None):
    p = path or str(data_dir() / LAB_FILE)
    if not os.path.exists(p):
        if path:
            raise UsageError(f"no lab file {path}", hint="a JSON file: see docs/calibration.md, 'The certificate'")
        return {}
    try:
        d = json.load(open(p, encoding="utf-8"))
    except ValueError as e:
        raise UsageError(f"lab file {p} is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise UsageError(f"lab file {p} must hold a JSON object")
    return d


def next_number(register=None, now=None):
    """The next certificate number, CAL-<year>-<5 digits>, taken in one transaction (never twice)."""
    now = now or datetime.datetime.now()
    path = register or str(data_dir() / REGISTER)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS certificates (number TEXT PRIMARY KEY, year INTEGER, seq INTEGER,"
                   " meter TEXT, issued TEXT)")
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT MAX(seq) FROM certificates WHERE year=?", (now.year,)).fetchone()
        seq = (row[0] or 0) + 1
        number = "CAL-%d-%05d" % (now.year, seq)
        db.execute("INSERT INTO certificates (number, year, seq, issued) VALUES (?,?,?,?)",
                   (number, now.year, seq, now.isoformat(timespec="seconds")))
        db.execute("COMMIT")
    finally:
        db.close()
    return number


def _add_months(d, months):
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    m += 1
    for day in (d.day, 30, 29, 28):
        try:
            return d.replace(year=y, month=m, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def lab_info(bench_info, operator=None, temperature_c=None, humidity_pct=None, reference=None,
             traceability=None, due_months=None, lab_file=None, register=None, now=None):
    """The certificate's lab section (a dict), with a new certificate number."""
    lab = load_lab_file(lab_file)
    now = now or datetime.datetime.now().astimezone()
    amb_lab = lab.get("ambient") or {}
    amb_bench = bench_info.get("ambient") or {}
    t = temperature_c if temperature_c is not None else amb_lab.get("temperature_c", amb_bench.get("temperature_c"))
    h = humidity_pct if humidity_pct is not None else amb_lab.get("humidity_pct", amb_bench.get("humidity_pct"))
    if temperature_c is not None or humidity_pct is not None:
        source = "entered by the operator"
    elif amb_lab:
        source = "lab file"
    elif amb_bench:
        source = "reported by the bench"
    else:
        source = "not recorded"
    for v, what, lo, hi in ((t, "temperature", -20, 60), (h, "humidity", 0, 100)):
        if v is not None and not lo <= float(v) <= hi:
            raise UsageError(f"ambient {what} {v} outside {lo}..{hi}", hint="give the lab's conditions during the test")
    ref = dict(lab.get("reference_standard") or {})
    if reference:
        ref["name"] = reference
    ref.setdefault("name", bench_info.get("reference") or "not given")
    if bench_info.get("reference_class_pct") is not None:
        ref.setdefault("class_pct", bench_info.get("reference_class_pct"))
    months = int(due_months if due_months is not None else lab.get("due_months", 12))
    if not 1 <= months <= 120:
        raise UsageError(f"calibration interval {months} months outside 1..120", hint="e.g. --due-months 12")
    if traceability is None:
        traceability = lab.get("traceability")
    if traceability is None:
        if bench_info.get("kind") == "sim":
            traceability = ("Simulated bench: the reference standard is a model, so these results are not "
                            "traceable to national standards.")
        else:
            traceability = ("Traceable to national measurement standards (SI) through the reference standard "
                            "%s%s%s." % (ref["name"], (" s/n " + str(ref["serial"])) if ref.get("serial") else "",
                                         (", calibration certificate " + str(ref["certificate"]))
                                         if ref.get("certificate") else ""))
    return {"certificate_number": next_number(register, now), "lab": lab.get("name") or "",
            "operator": operator or lab.get("operator") or os.environ.get("METERKIT_OPERATOR") or getpass.getuser(),
            "issued": now.isoformat(timespec="seconds"),
            "due_date": _add_months(now.date(), months).isoformat(), "due_months": months,
            "ambient": {"temperature_c": t, "humidity_pct": h, "source": source},
            "reference_standard": ref, "traceability": traceability}
