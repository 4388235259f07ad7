"""`meterkit calibrate`: calibrate a meter on a bench, verify it against an accuracy class and write its
certificate. Thin over host_tools.calibrate.lab.run_lab."""
import sys

from host_tools.calibrate import classes
from host_tools.calibrate.lab import DEFAULT_TEST_FACTOR, run_lab, summary
from host_tools.errors import UsageError
from host_tools.paths import factory_db


def register(sub):
    p = sub.add_parser("calibrate", help="calibrate a meter on a bench and write its signed certificate; "
                                         "`calibrate verify FOLDER` checks one")
    p.add_argument("action", nargs="?", choices=("verify",), help="verify: check a certificate's signature")
    p.add_argument("folder", nargs="?", help="verify: the certificate folder (or its certificate.sig)")
    p.add_argument("--public-key", help="verify: the lab's public key PEM (default: lab-signing-key.pub.pem in "
                                        "$METERKIT_DATA or the working folder)")
    p.add_argument("--port", help="the meter's service port (omit with --bench sim to simulate a meter here)")
    p.add_argument("--bench", help="sim (in-process), sim:ADDRESS (printed by `meterkit sim start --json`) or "
                                   "visa:SOURCE_RESOURCE,METER_RESOURCE[,SOURCE_PROFILE+METER_PROFILE] (a lab's SCPI "
                                   "instruments through PyVISA; docs/lab-bench.md)")
    p.add_argument("--visa-library", metavar="LIB", help="--bench visa: the VISA library: @py (pyvisa-py, default), a "
                                                        "vendor VISA's path, FILE.yaml@sim or sim (the simulated "
                                                        "instruments shipped; default $METERKIT_VISA_LIBRARY)")
    p.add_argument("--class", dest="accuracy_class", default="1", choices=sorted(classes.CLASSES, key=float),
                   help="accuracy class to verify against (default 1)")
    p.add_argument("--report", metavar="DIR", help="certificate folder (default certificates/<meter>/<number>/ in "
                                                  "$METERKIT_DATA or the working folder)")
    p.add_argument("--operator", help="who runs the test (default: lab.json, $METERKIT_OPERATOR or the login name)")
    p.add_argument("--temperature", type=float, metavar="C", help="ambient temperature during the test, deg C "
                                                                  "(default: lab.json, else what the bench reports)")
    p.add_argument("--humidity", type=float, metavar="PCT", help="ambient relative humidity during the test, %%")
    p.add_argument("--reference", help="the reference standard's identity (model and serial; default: lab.json "
                                       "or the bench's)")
    p.add_argument("--traceability", help="the traceability statement (default: lab.json, or built from the reference)")
    p.add_argument("--due-months", type=int, help="calibration interval in months (default 12)")
    p.add_argument("--lab", metavar="FILE", help="lab settings JSON (default lab.json in the data folder, if present)")
    p.add_argument("--lab-key", metavar="PEM", help="the lab's Ed25519 signing key (default lab-signing-key.pem in "
                                                    "the data folder; made on first use)")
    p.add_argument("--meter", help="name for the certificate when the meter reports no id")
    p.add_argument("--db", default=factory_db(),
                   help="the factory's manufacturing record DB: a provisioned meter is authenticated with the "
                        "service key it holds, and the certificate is kept with the meter's record (default "
                        "$METERKIT_FACTORY_DB, or factory-records.sqlite in the data folder)")
    p.add_argument("--test-factor", type=int, default=DEFAULT_TEST_FACTOR,
                   help="test output = this x the meter constant during the session (default %d)" % DEFAULT_TEST_FACTOR)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each meter reply (default 10)")
    p.add_argument("--seed", type=int, default=1, help="in-process simulated meter: the world's seed")
    p.add_argument("--afe", default="typical", help="in-process simulated meter: front-end profile (default typical)")
    p.add_argument("--chip", default=None, help="in-process simulated meter: its metering chip, atm90e26 (default), "
                                                "bl0942 or ade7953")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_calibrate)


def _open(args):
    """(service, bench, closers) for the arguments."""
    from host_tools.calibrate.bench import open_bench
    if not args.bench:
        raise UsageError("no bench given", hint="use --bench sim[:ADDRESS] or visa:SOURCE,METER[,PROFILES]")
    scheme, _, argument = args.bench.partition(":")
    if scheme == "visa":
        return _open_visa(args, argument)
    if args.port:
        return _with_port(args, open_bench(args.bench))   # a bench on its own connection
    if scheme != "sim" or argument:
        raise UsageError("--port is required with --bench %s" % args.bench,
                         hint="give the meter's service port; only --bench sim simulates a meter in-process")
    from host_tools.calibrate.bench.sim import SimBench
    from host_tools.calibrate.target import SimService
    meter = _sim_meter(args)
    try:
        bench = SimBench(meter, seed=args.seed)
    except Exception:
        meter.close()
        raise
    return SimService(meter), bench, [bench.close, meter.close]


def _with_port(args, bench):
    """(service, bench, closers) for a meter on --port and an open bench."""
    try:
        from host_tools.device.client import ServiceClient
        service = ServiceClient(args.port, timeout=args.timeout)
    except Exception:
        bench.close()
        raise
    return service, bench, [bench.close, service.close]


def _sim_meter(args):
    from host_tools.sim.esp32.runner import SimMeter
    if args.chip is not None:
        from host_tools.sim.world.chips import NAMES
        if args.chip not in NAMES:
            raise UsageError("unknown metering chip %r" % args.chip, hint="use one of: " + ", ".join(NAMES))
    meter = SimMeter(seed=args.seed, afe=args.afe, profile="constant", settings={"meter_period_s": 1},
                     chip=args.chip)
    try:
        meter.run_for(1)
    except Exception:
        meter.close()
        raise
    if not args.meter:
        args.meter = "sim-%s%s-seed%d" % ("%s-" % args.chip if args.chip else "", args.afe, args.seed)
    return meter


def _open_visa(args, argument):
    """--bench visa: real instruments and the meter on --port; or, with a pyvisa-sim library and no port,
    the simulated instruments coupled to a meter simulated in this process."""
    import os

    from host_tools.calibrate.bench import visa
    library = visa.sim_library(args.visa_library or os.environ.get("METERKIT_VISA_LIBRARY") or "@py")
    visa.parse_spec(argument)                          # a bad spec is a usage error before anything opens
    if args.port:
        return _with_port(args, visa.open_visa_bench(argument, rm=visa.resource_manager(library)))
    if not library.endswith("@sim"):
        raise UsageError("--port is required with --bench visa",
                         hint="give the meter's service port; without one only simulated instruments "
                              "(--visa-library FILE.yaml@sim) can calibrate a meter simulated here")
    from host_tools.calibrate.bench.visa_sim import open_coupled
    from host_tools.calibrate.target import SimService
    meter = _sim_meter(args)
    try:
        bench = open_coupled(argument, meter, library, seed=args.seed)
    except Exception:
        meter.close()
        raise
    return SimService(meter), bench, [bench.close, meter.close]


def cmd_verify(args):
    import os

    from host_tools.calibrate import signing
    if not args.folder:
        raise UsageError("verify needs the certificate folder", hint="meterkit calibrate verify FOLDER")
    folder = args.folder
    if os.path.isfile(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    pub_path = args.public_key or signing.public_path(signing.default_key_path())
    try:
        pub = open(pub_path, "rb").read()
    except OSError as e:
        raise UsageError(f"cannot read the lab's public key {pub_path}: {e.strerror}",
                         hint="give --public-key with the issuing lab's lab-signing-key.pub.pem") from None
    man = signing.verify_folder(folder, pub)
    import json
    cert = {}
    try:
        cert = json.load(open(os.path.join(folder, "certificate.json")))
    except (OSError, ValueError):
        pass
    lab = cert.get("lab") or {}
    out = {"verified": True, "certificate": man["certificate"], "files": sorted(man["files"]),
           "key_fingerprint": man["key_fingerprint"], "meter": cert.get("meter"), "status": cert.get("status"),
           "issued": lab.get("issued"), "due_date": lab.get("due_date")}
    if args.json:
        from host_tools.cli import emit
        emit(out, True)
    else:
        sys.stdout.write("certificate %s verified: signed by the key %s; %d files unchanged\n" % (
            man["certificate"], man["key_fingerprint"], len(man["files"])))
        sys.stdout.write("  meter %s: %s, issued %s, due %s\n" % (out["meter"], out["status"], out["issued"],
                                                                 out["due_date"]))
    return 0


def _lab_args(args):
    return {"operator": args.operator, "temperature_c": args.temperature, "humidity_pct": args.humidity,
            "reference": args.reference, "traceability": args.traceability, "due_months": args.due_months,
            "lab_file": args.lab, "key": args.lab_key}


def cmd_calibrate(args):
    if args.action == "verify":
        return cmd_verify(args)
    if args.folder:
        raise UsageError(f"unexpected argument {args.folder!r}", hint="meterkit calibrate -p PORT -b BENCH ...")
    if args.db:
        import os

        from host_tools.calibrate import certificate
        from host_tools.errors import UsageError
        if not os.path.exists(args.db):
            raise UsageError("no record DB %s" % args.db, hint="give the DB `meterkit provision --db` wrote")
        certificate.RECORD_HOOKS.append(certificate.record_db_hook(args.db))
    service, bench, closers = _open(args)
    log = progress = live = None
    if not args.json:
        log = lambda msg: sys.stderr.write(msg + "\n")       # noqa: E731
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress
            live = Progress(console=Console(stderr=True), transient=True)
            task = live.add_task("verifying", total=None)
            log = live.console.print

            def progress(done, total):
                live.update(task, completed=done, total=total)
            live.start()
    try:
        import contextlib
        session = contextlib.nullcontext()
        if args.port:
            # A provisioned meter takes cal_get/cal_set only in a session opened with its service key.
            from host_tools.provision.session import privileged_session
            session = privileged_session(service, args.db, "calibration")
        with session:
            result = run_lab(service, bench, args.accuracy_class, args.test_factor, args.report, args.meter,
                             log=log, progress=progress, lab=_lab_args(args))
    finally:
        if live:
            live.stop()
        for close in closers:
            try:
                close()
            except Exception:  # closing after a failure must not hide the failure
                pass
    out = summary(result)
    if args.json:
        from host_tools.cli import emit
        emit(out, True)
    else:
        _print_human(out)
    return 0 if out["passed"] else 1


def _print_human(out):
    w = sys.stdout.write
    w("meter %s: %s (class %s), certificate %s\n" % (out["meter"], out["status"], out["class"],
                                                    out.get("certificate_number")))
    if out["reason"]:
        w("  reason: %s\n" % out["reason"])
    for p, u in zip(out["points"], out.get("uncertainty_pct") or [None] * len(out["points"])):
        err = "%+.3f %%" % p["error_pct"] if p["error_pct"] is not None else "  none"
        unc = "U +-%.3f %%" % u if u is not None else ""
        w("  %-22s %9s  %-13s limit +-%g %%  %s\n" % (p["label"], err, unc, p["limit_pct"],
                                                    "ok" if p["passed"] else "FAIL"))
    if out["worst_error_pct"] is not None:
        w("  worst error %.3f %%\n" % out["worst_error_pct"])
    w("  bench time %.1f s\n" % out["bench_seconds"])
    for kind, path in sorted(out["report"].items()):
        w("  %s: %s\n" % (kind, path))
