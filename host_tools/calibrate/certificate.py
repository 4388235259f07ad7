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
from host_tools.paths import BUILD

FILES = {"html": "certificate.html", "csv": "certificate.csv", "json": "certificate.json",
         "png": "error_curve.png"}
CSV_COLUMNS = ("label", "current_a", "fraction_ib", "pf", "error_pct", "limit_pct", "passed", "pulses",
               "seconds", "ref_wh", "note")


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "meter"


def default_dir(meter):
    return BUILD / "certificates" / safe_name(meter)


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
    ax.set_xlabel("current, % of Ib")
    ax.set_ylabel("error, %")
    ax.set_title("Class %s: error against current (dashed: limits)" % result["class"])
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


def render_html(result, png):
    e = html.escape
    ident = result.get("identity", {})
    status = result["status"]
    verdict = {True: "pass", False: "FAIL"}
    rows = []
    for p in result["points"]:
        err = "%+.3f" % p["error_pct"] if p["error_pct"] is not None else e(p["note"] or "-")
        rows.append(_row(p["passed"], e(p["label"]), _fmt(p["current_a"], 3), _fmt(p["fraction_ib"] * 100, 1),
                         e(p["pf_label"]), err, "&plusmn;" + _fmt(p["limit_pct"], 1), verdict[p["passed"]]))
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
    ident_rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (e(k), e(str(v))) for k, v in [
        ("Meter", result.get("meter")),
        ("Serial / meter id", ident.get("serial") or ident.get("meter_id") or "not reported"),
        ("Board", ident.get("board")), ("Firmware", ident.get("firmware")),
        ("Rating", "Un %s V, Ib %s A, Imax %s A, %s Hz, %s imp/kWh" % (
            design.get("un_v"), design.get("ib_a"), design.get("imax_a"), design.get("f_hz"),
            design.get("meter_constant_imp_per_kwh"))),
        ("Accuracy class", "%s (%s)" % (result["class"], result.get("standard", ""))),
        ("Bench", ", ".join("%s: %s" % (k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                            for k, v in sorted(bench.items()))),
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
<table>%(ident)s</table>
<h2>Test points</h2>
<table><tr><th>Point</th><th>Current A</th><th>%% Ib</th><th>PF</th><th>Error %%</th><th>Limit %%</th><th>Result</th></tr>
%(rows)s
%(extra)s</table>
<p>Worst error: %(worst)s %%. Error = meter energy (test pulses) / reference energy &minus; 1, pulse-gated.</p>
%(img)s
<h2>Calibration registers in the meter (%(stored)s)</h2>
<table><tr><th>Register</th><th>Value</th><th>Hex</th></tr>%(regs)s</table>
</body></html>
""" % {"meter": e(str(result.get("meter"))), "status": e(status), "reason": reason, "ident": ident_rows,
       "rows": "\n".join(rows), "extra": "\n".join(extra), "worst": _fmt(result.get("worst_error_pct"), 3),
       "img": img, "regs": reg_rows,
       "stored": "new calibration, stored" if result.get("stored_in_meter") else "unchanged: nothing stored"}


def render_csv(result):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for p in result["points"]:
        w.writerow([p.get(c) for c in CSV_COLUMNS])
    st, cr = result.get("starting"), result.get("creep")
    if st:
        w.writerow(["starting current", st["current_a"], st["fraction_ib"], 1.0, None, None, st["passed"],
                    st["pulses"], st["seconds"], None, ">= 1 pulse"])
    if cr:
        w.writerow(["no-load creep", 0, 0, None, None, None, cr["passed"], cr["pulses"], cr["seconds"], None,
                    "<= 1 pulse at %.1f V" % cr["volts"]])
    return buf.getvalue()


def write_certificate(result, report_dir=None):
    """Write the four files into report_dir (default build/certificates/<meter>/); returns their paths
    (and `record` paths when the meter has a manufacturing record)."""
    out = Path(report_dir) if report_dir else default_dir(result.get("meter", "meter"))
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
        for kind in data:
            dst = out / FILES[kind]
            os.replace(os.path.join(tmp, FILES[kind]), dst)
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
    record DB registers itself in RECORD_HOOKS; until then a folder build/records/<meter>/ (if present)
    receives a copy under calibration/. Returns the stored paths (empty when there is no record)."""
    stored = []
    for hook in RECORD_HOOKS:
        stored += list(hook(meter, paths) or [])
    root = Path(records_root) if records_root else BUILD / "records"
    rec = root / safe_name(meter)
    if meter and rec.is_dir():
        dst = rec / "calibration"
        dst.mkdir(exist_ok=True)
        for p in paths.values():
            shutil.copy2(p, dst / Path(p).name)
            stored.append(str(dst / Path(p).name))
    return stored
