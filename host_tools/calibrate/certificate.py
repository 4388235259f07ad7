"""Calibration certificates: per meter an HTML page (identity, bench, date, every test point with its
error and limit, pass/fail, the error curves embedded as a PNG), the PNG itself, a CSV of the points
and the full result as JSON. Files appear whole or not at all (written aside, then renamed)."""
import base64
import csv
import html
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from host_tools.calibrate import classes
from host_tools.errors import UsageError
from host_tools.paths import data_dir

FILES = {"html": "certificate.html", "csv": "certificate.csv", "json": "certificate.json",
         "png": "error_curve.png"}
# (column, source field, decimals): sensible precision, units in the names.
CSV_COLUMNS = (("point", "label", None), ("current_A", "current_a", 4), ("percent_Ib", "fraction_ib", 1),
               ("pf", "pf", 2), ("error_pct", "error_pct", 3), ("limit_pct", "limit_pct", 2),
               ("uncertainty_pct_k2", None, 3), ("result", "passed", None), ("pulses", "pulses", None),
               ("seconds", "seconds", 2), ("reference_Wh", "ref_wh", 5), ("note", "note", None))


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "meter"


def default_dir(meter, number=None):
    """certificates/<meter>/<certificate number>/ in $METERKIT_DATA or the working folder."""
    d = data_dir() / "certificates" / safe_name(meter)
    return d / safe_name(number) if number else d


def plot_png(result):
    """The error against current for each power factor, with the class limits, as PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    colours = {1.0: "#1f77b4", 0.5: "#d62728", -0.8: "#2ca02c"}
    for pf in classes.TEST_POWER_FACTORS:
        pts = [p for p in result["points"] if p["pf"] == pf]
        if not pts:
            continue
        c = colours.get(pf, "black")
        xs = [p["fraction_ib"] * 100 for p in pts]
        ys = [p["error_pct"] if p["error_pct"] is not None else float("nan") for p in pts]
        ax.plot(xs, ys, "o-", color=c, label="PF " + classes.pf_label(pf))
        lim = [p["limit_pct"] for p in pts]
        ax.step(xs, lim, where="post", color=c, alpha=0.35, linestyle="--")
        ax.step(xs, [-x for x in lim], where="post", color=c, alpha=0.35, linestyle="--")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    # Ticks at the test currents, written as plain percentages of Ib (not 10^1..10^3).
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    ticks = sorted({round(p["fraction_ib"] * 100, 3) for p in result["points"]})
    if ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: ("%g" % v)))
    ax.set_xlabel("current, % of Ib")
    ax.set_ylabel("error, %")
    lab = result.get("lab") or {}
    when = (lab.get("issued") or result.get("date") or "")[:10]
    ax.set_title("%s, %s: error against current, class %s (dashed: limits)" % (
        result.get("meter"), when, result["class"]), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def _row(ok, *cells):
    """One table row; cells are already HTML."""
    return "<tr class='%s'>%s</tr>" % ("ok" if ok else "bad", "".join("<td>%s</td>" % c for c in cells))


def _bench_value(v):
    if isinstance(v, dict):
        return "(" + ", ".join("%s %s" % (k.replace("_", " "), _bench_value(x)) for k, x in sorted(v.items())) + ")"
    if isinstance(v, float):
        return "%g" % v
    return str(v)


def render_html(result, png):
    e = html.escape
    ident = result.get("identity", {})
    status = result["status"]
    verdict = {True: "pass", False: "FAIL"}
    rows = []
    budget_rows = []
    for p in result["points"]:
        err = "%+.3f" % p["error_pct"] if p["error_pct"] is not None else e(p["note"] or "-")
        u = p.get("uncertainty") or {}
        rows.append(_row(p["passed"], e(p["label"]), _fmt(p["current_a"], 3), _fmt(p["fraction_ib"] * 100, 1),
                         e(p["pf_label"]), err, "&plusmn;" + _fmt(u.get("expanded_pct"), 3),
                         "&plusmn;" + _fmt(p["limit_pct"], 1), verdict[p["passed"]]))
        c = u.get("components") or {}
        budget_rows.append("<tr>%s</tr>" % "".join("<td>%s</td>" % x for x in (
            e(p["label"]), _fmt(c.get("reference class"), 4), _fmt(c.get("source stability"), 4),
            _fmt(c.get("resolution"), 4), _fmt(c.get("repeatability"), 4) + " (n=%s)" % u.get("repeats", 0),
            _fmt(u.get("combined_pct"), 4), _fmt(u.get("expanded_pct"), 3))))
    extra = []
    st, cr = result.get("starting"), result.get("creep")
    if st:
        extra.append(_row(st["passed"], "Starting current", _fmt(st["current_a"], 3), _fmt(st["fraction_ib"] * 100, 2),
                          "1", "%d pulse(s) in %.1f s" % (st["pulses"], st["seconds"]), "&ge; 1 pulse",
                          verdict[st["passed"]]))
    if cr:
        extra.append(_row(cr["passed"], "No-load (creep) at %.1f V" % cr["volts"], "0", "0", "-",
                          "%d pulse(s) in %.1f s" % (cr["pulses"], cr["seconds"]), "&le; 1 pulse",
                          verdict[cr["passed"]]))
    cal = result.get("calibration", {})
    regs = result.get("registers_after") or {}
    reg_rows = "".join("<tr><td>%s</td><td>%d</td><td>0x%04X</td></tr>" % (e(k), v, v)
                       for k, v in sorted(regs.items()))
    unc = cal.get("uncalibrated_error_pct") or {}
    design = result.get("design", {})
    to = result.get("test_output", {})
    bench = result.get("bench", {})
    lab = result.get("lab") or {}
    amb = lab.get("ambient") or {}
    ref = lab.get("reference_standard") or {}
    amb_text = "%s, %s (%s)" % ("%.1f &deg;C" % amb["temperature_c"] if amb.get("temperature_c") is not None else "temperature not recorded",
                                "%.0f %% RH" % amb["humidity_pct"] if amb.get("humidity_pct") is not None else "humidity not recorded",
                                e(amb.get("source", "")))
    ref_text = ", ".join(e(str(x)) for x in (
        ref.get("name"), ("s/n %s" % ref["serial"]) if ref.get("serial") else None,
        ("class %s %%" % ref["class_pct"]) if ref.get("class_pct") is not None else None,
        ("certificate %s" % ref["certificate"]) if ref.get("certificate") else None,
        ("calibrated by %s" % ref["calibrated_by"]) if ref.get("calibrated_by") else None,
        ("due %s" % ref["due"]) if ref.get("due") else None) if x)
    lab_rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (k, v) for k, v in [
        ("Certificate number", e(str(lab.get("certificate_number", "-")))),
        ("Laboratory", e(lab.get("lab") or "-")), ("Operator", e(str(lab.get("operator", "-")))),
        ("Issued", e(str(lab.get("issued", result.get("date"))))),
        ("Calibration due", "%s (%s months)" % (e(str(lab.get("due_date", "-"))), lab.get("due_months", "-"))),
        ("Ambient conditions", amb_text), ("Reference standard", ref_text or "-"),
        ("Traceability", e(lab.get("traceability") or "-")),
    ])
    bench_text = ", ".join("%s %s" % (e(k.replace("_", " ")), e(_bench_value(v)))
                           for k, v in sorted(bench.items()) if k not in ("ambient",))
    ident_rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (e(k), e(str(v))) for k, v in [
        ("Meter", result.get("meter")),
        ("Serial / meter id", ident.get("serial") or ident.get("meter_id") or "not reported"),
        ("Board", ident.get("board")), ("Firmware", ident.get("firmware")),
        ("Rating", "Un %s V, Ib %s A, Imax %s A, %s Hz, %s imp/kWh" % (
            design.get("un_v"), design.get("ib_a"), design.get("imax_a"), design.get("f_hz"),
            design.get("meter_constant_imp_per_kwh"))),
        ("Accuracy class", "%s (%s)" % (result["class"], result.get("standard", ""))),
        ("Bench", bench_text),
        ("Test output", "%.0f imp/kWh (x%s of the meter constant, used for every point)" % (
            to.get("test_constant_imp_per_kwh", 0), to.get("factor"))),
        ("Date (UTC)", result.get("date")), ("Bench time", "%.1f s" % result.get("bench_seconds", 0)),
        ("Errors before calibration", "PF 1: %s %%, PF 0.5L: %s %% (at Ib, nominal registers)" % (
            _fmt(unc.get("pf1_pct"), 3), _fmt(unc.get("pf05l_pct"), 3))),
    ])
    reason = "<p class='bad'>%s</p>" % e(result["reason"]) if result.get("reason") else ""
    for w in cal.get("warnings", []):
        reason += "<p class='warn'>Note: %s</p>" % e(w)
    img = "<img alt='error curve' src='data:image/png;base64,%s'>" % base64.b64encode(png).decode() if png else ""
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Calibration certificate %(meter)s</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:0.2em 0.6em;text-align:left} tr.bad td{background:#fdd}
.status{font-size:1.6em;font-weight:bold} .PASSED{color:#080} .FAILED{color:#b00} p.bad{color:#b00} p.warn{color:#a60}</style>
</head><body>
<h1>Calibration certificate</h1>
<p class="status %(status)s">%(status)s</p>%(reason)s
<table>%(lab)s</table>
<table>%(ident)s</table>
<h2>Test points</h2>
<table><tr><th>Point</th><th>Current A</th><th>%% Ib</th><th>PF</th><th>Error %%</th><th>Uncertainty %% (k=2)</th><th>Limit %%</th><th>Result</th></tr>
%(rows)s
%(extra)s</table>
<p>Worst error: %(worst)s %%. Error = meter energy (test pulses) / reference energy &minus; 1, pulse-gated.</p>
%(img)s
<h2>Uncertainty budget (standard uncertainties, %% of the measured energy)</h2>
<table><tr><th>Point</th><th>Reference class</th><th>Source stability</th><th>Resolution</th><th>Repeatability</th><th>Combined u<sub>c</sub></th><th>Expanded U (k=2, about 95 %%)</th></tr>
%(budget)s</table>
<p>Reference class and resolution: rectangular distributions; source stability: the source's bounds averaged over the gate; repeatability: the spread of the point's consecutive gates (type A).</p>
<p>Signed by the laboratory's key (Ed25519, fingerprint %(fpr)s): see certificate.sig; check with <code>meterkit calibrate verify FOLDER --public-key LAB.pub.pem</code>.</p>
<h2>Calibration registers in the meter (%(stored)s)</h2>
<table><tr><th>Register</th><th>Value</th><th>Hex</th></tr>%(regs)s</table>
</body></html>
""" % {"meter": e(str(result.get("meter"))), "status": e(status), "reason": reason, "ident": ident_rows,
       "rows": "\n".join(rows), "extra": "\n".join(extra), "worst": _fmt(result.get("worst_error_pct"), 3),
       "img": img, "regs": reg_rows, "lab": lab_rows, "budget": "\n".join(budget_rows),
       "fpr": e(str(lab.get("signing_key_fingerprint", "-"))),
       "stored": "new calibration, stored" if result.get("stored_in_meter") else "unchanged: nothing stored"}


def _cell(v, nd, scale=1.0):
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return "pass" if v else "FAIL"
    if nd is None or not isinstance(v, (int, float)):
        return v
    return "%.*f" % (nd, v * scale)


def render_csv(result):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c for c, _, _ in CSV_COLUMNS])
    for p in result["points"]:
        row = []
        for col, field, nd in CSV_COLUMNS:
            if col == "uncertainty_pct_k2":
                row.append(_cell((p.get("uncertainty") or {}).get("expanded_pct"), nd))
            else:
                row.append(_cell(p.get(field), nd, 100.0 if field == "fraction_ib" else 1.0))
        w.writerow(row)
    st, cr = result.get("starting"), result.get("creep")
    if st:
        w.writerow(["starting current", _cell(st["current_a"], 4), _cell(st["fraction_ib"] * 100, 2), "1.00", "", "",
                    "", _cell(st["passed"], None), st["pulses"], _cell(st["seconds"], 2), "", ">= 1 pulse"])
    if cr:
        w.writerow(["no-load creep", "0", "0", "", "", "", "", _cell(cr["passed"], None), cr["pulses"],
                    _cell(cr["seconds"], 2), "", "<= 1 pulse at %.1f V" % cr["volts"]])
    return buf.getvalue()


def write_certificate(result, report_dir=None, lab=None):
    """Write the files into report_dir (default certificates/<meter>/<number>/ in the data folder) with
    the lab's section (labinfo.lab_info(**lab): number, operator, ambient, reference, due date,
    traceability) and a detached signature by the lab's key (lab["key"], default
    lab-signing-key.pem in the data folder). Returns their paths (and `record` paths when the meter
    has a manufacturing record)."""
    from host_tools.calibrate import labinfo, signing
    lab = dict(lab or {})
    key_path = lab.pop("key", None)
    key, pub, made = signing.load_or_make_key(key_path)
    result["lab"] = labinfo.lab_info(result.get("bench") or {}, **lab)
    result["lab"]["signing_key_fingerprint"] = signing.fingerprint(pub)
    result["lab"]["signing_key_made"] = made
    number = result["lab"]["certificate_number"]
    out = Path(report_dir) if report_dir else default_dir(result.get("meter", "meter"), number)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError("cannot create the report folder %s: %s" % (out, e),
                         hint="choose a writable --report DIR") from None
    png = plot_png(result) if result["points"] else b""
    data = {"html": render_html(result, png).encode(), "csv": render_csv(result).encode(),
            "json": (json.dumps(result, indent=2, sort_keys=True, default=str) + "\n").encode()}
    if png:
        data["png"] = png
    paths = {}
    tmp = tempfile.mkdtemp(prefix=".cert-", dir=str(out))
    try:
        for kind, blob in data.items():
            with open(os.path.join(tmp, FILES[kind]), "wb") as f:
                f.write(blob)
        signing.sign_folder(tmp, [FILES[k] for k in data], number, key)
        for kind in list(data) + ["sig"]:
            name = FILES[kind] if kind != "sig" else signing.SIG_FILE
            dst = out / name
            os.replace(os.path.join(tmp, name), dst)
            paths[kind] = str(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec = attach_to_record(result.get("meter"), paths)
    if rec:
        paths["record"] = rec
    return paths


# Functions fn(meter, paths) -> list of stored paths, added by the manufacturing-record code (factory).
RECORD_HOOKS = []


def record_db_hook(db_path):
    """A RECORD_HOOKS entry that keeps certificates with the factory's manufacturing records
    (`meterkit provision`'s SQLite DB)."""
    def hook(meter, paths):
        from host_tools.provision.records import RecordDB
        db = RecordDB(db_path)
        try:
            return db.attach_certificate(meter, paths)
        finally:
            db.close()
    return hook


def attach_to_record(meter, paths, records_root=None):
    """Store the certificate next to the meter's manufacturing record when one exists. The factory's
    record DB registers itself in RECORD_HOOKS; until then a folder records/<meter>/ in the data folder (if present)
    receives a copy under calibration/. Returns the stored paths (empty when there is no record)."""
    stored = []
    for hook in RECORD_HOOKS:
        stored += list(hook(meter, paths) or [])
    root = Path(records_root) if records_root else data_dir() / "records"
    rec = root / safe_name(meter)
    if meter and rec.is_dir():
        dst = rec / "calibration"
        dst.mkdir(exist_ok=True)
        for p in paths.values():
            shutil.copy2(p, dst / Path(p).name)
            stored.append(str(dst / Path(p).name))
    return stored
