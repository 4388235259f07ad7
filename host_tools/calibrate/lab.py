"""One meter through the lab: calibrate, verify against the chosen class, store the calibration in the
meter (only when it passes), and write the certificate. The library entry point behind
`meterkit calibrate` and the calibration benchmark."""
import datetime

from host_tools.calibrate import classes
from host_tools.calibrate import formulas as F
from host_tools.calibrate import scaled
from host_tools.calibrate.procedure import Procedure
from host_tools.calibrate.target import HighRateOutput, MeterUnderTest
from host_tools.calibrate.verify import verify
from host_tools.errors import DeviceError, UsageError

DEFAULT_TEST_FACTOR = 64     # test output = 64 x the meter constant (3200 -> 204800 imp/kWh)


def run_lab(service, bench, accuracy_class="1", test_factor=DEFAULT_TEST_FACTOR, report_dir=None,
            meter_name=None, write_report=True, log=None, progress=None, procedure_settings=None,
            verify_settings=None, lab=None):
    """Calibrate and verify the meter behind `service` (call(cmd, **args)) on `bench`. Returns the
    result dict (see docs/calibration.md); writes the certificate unless write_report is False. `lab`:
    keyword arguments for calibrate.labinfo.lab_info (operator, ambient, reference, ...) and `key`
    (the lab's signing key file); None: the defaults (lab.json and lab-signing-key.pem in the data folder)."""
    log = log or (lambda msg: None)
    cls, spec = classes.get_class(accuracy_class)
    if not 1 <= int(test_factor) <= 256:
        raise UsageError("test factor %r out of range" % (test_factor,),
                         hint="use 1 (the meter's own constant) to 256; the default is %d" % DEFAULT_TEST_FACTOR)
    mut = MeterUnderTest(service)
    ident = mut.identity()
    cal0, design = mut.cal_get()
    cal0 = dict(cal0)
    chip = mut.chip
    if chip in scaled.PROCEDURES:
        out = scaled.output_for(chip, cal0, design, test_factor)
    else:
        normal_pl = F.pl_constant(design, cal0["MMode"])
        out = HighRateOutput(test_factor, normal_pl, design["meter_constant_imp_per_kwh"])
    t0 = bench.elapsed_s()
    result = {"class": cls, "standard": spec["standard"], "identity": ident, "design": design, "chip": chip,
              "bench": bench.info(), "test_output": out.info(),
              "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
              "registers_before": cal0}
    ver = None
    stored = False
    try:
        log("calibrating (class %s, test output x%d)" % (cls, out.factor))
        if chip in scaled.PROCEDURES:
            proc = scaled.PROCEDURES[chip](mut, bench, out, procedure_settings, log)
            out.cal = proc.regs                   # the BL0942's test constant follows its pulse energy
            cal = proc.run()
        else:
            cal = Procedure(mut, bench, out, spec["starting_fraction_ib"], procedure_settings, log).run()
        result["calibration"] = cal
        if cal["status"] == "CALIBRATED":
            log("verifying")
            ver = verify(bench, design, cls, out.test_constant, verify_settings, log, progress)
    finally:
        try:
            bench.off()
        finally:
            passed = bool(ver and ver["passed"])
            if passed:
                mut.cal_set(result["calibration"]["registers"], persist=True)
                back, _ = mut.cal_get()
                diff = {k: (v, back.get(k)) for k, v in result["calibration"]["registers"].items()
                        if back.get(k) != v}
                if diff:
                    raise DeviceError("the meter did not keep the calibration written: %s" % diff,
                                      hint="check the meter's flash and its cal_set command")
                stored = True
            else:
                # Never leave a failed (or interrupted) meter with test-mode or partial registers:
                # the calibration it had comes back, unstored changes are dropped.
                try:
                    mut.cal_set(cal0, persist=False)
                except DeviceError:
                    if ver is not None or "calibration" in result:
                        raise
    result["test_output"] = out.info()            # the factor may have been lowered on the way
    result["bench_seconds"] = bench.elapsed_s() - t0
    result["stored_in_meter"] = stored
    # What the meter runs with now: the new calibration, or (failed) the one it came with.
    result["registers_after"] = dict(result["calibration"]["registers"]) if stored else cal0
    cal = result["calibration"]
    if ver is None:
        result.update(passed=False, status="FAILED", reason=cal["reason"], points=[], starting=None,
                      creep=None, worst_error_pct=None)
    else:
        reason = None
        if not ver["passed"]:
            bad = [p["label"] for p in ver["points"] if not p["passed"]]
            if not ver["starting"]["passed"]:
                bad.append("starting current")
            if not ver["creep"]["passed"]:
                bad.append("no-load creep")
            reason = "outside class %s at: %s" % (cls, ", ".join(bad))
        result.update(passed=ver["passed"], status="PASSED" if ver["passed"] else "FAILED", reason=reason,
                      points=ver["points"], starting=ver["starting"], creep=ver["creep"],
                      worst_error_pct=ver["worst_error_pct"])
    from host_tools.calibrate.uncertainty import budget
    for p in result["points"]:
        p["uncertainty"] = budget(p, result["bench"])
    # A meter not yet provisioned has no id: it is named by its board and, on the certificate, by the
    # certificate's own number (unique in the lab's register).
    result["meter"] = str(meter_name or ident.get("meter_id") or ident.get("serial") or
                          "unprovisioned %s meter" % (ident.get("board") or "unknown"))
    result["meter_named_by"] = ("operator" if meter_name else "meter id" if ident.get("meter_id") else
                                "serial" if ident.get("serial") else "none (not provisioned)")
    if write_report:
        from host_tools.calibrate.certificate import write_certificate
        result["report"] = write_certificate(result, report_dir, lab=lab)
    return result


def summary(result):
    """The --json view: what the brief promises plus the reason and the report paths."""
    pts = [{"label": p["label"], "current_a": round(p["current_a"], 4), "pf": p["pf"],
            "error_pct": None if p["error_pct"] is None else round(p["error_pct"], 4),
            "limit_pct": p["limit_pct"], "passed": p["passed"]} for p in result["points"]]
    return {"passed": result["passed"], "class": result["class"], "status": result["status"],
            "reason": result["reason"], "meter": result["meter"],
            "worst_error_pct": None if result["worst_error_pct"] is None else round(result["worst_error_pct"], 4),
            "points": pts, "starting": result["starting"], "creep": result["creep"],
            "bench_seconds": round(result["bench_seconds"], 3), "report": result.get("report", {}),
            "uncalibrated_error_pct": result["calibration"].get("uncalibrated_error_pct"),
            "uncertainty_pct": [p.get("uncertainty", {}).get("expanded_pct") for p in result["points"]],
            "certificate_number": (result.get("lab") or {}).get("certificate_number"),
            "warnings": result["calibration"].get("warnings", []),
            "registers": result["registers_after"], "stored_in_meter": result["stored_in_meter"],
            "proposed_registers": None if result["stored_in_meter"] else result["calibration"]["registers"]}
