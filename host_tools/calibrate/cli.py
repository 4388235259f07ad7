"""`meterkit calibrate`: calibrate a meter on a bench, verify it against an accuracy class and write its
certificate. Thin over host_tools.calibrate.lab.run_lab."""
import sys

from host_tools.calibrate import classes
from host_tools.calibrate.lab import DEFAULT_TEST_FACTOR, run_lab, summary
from host_tools.errors import UsageError


def register(sub):
    p = sub.add_parser("calibrate", help="calibrate a meter on a bench and write its certificate")
    p.add_argument("--port", help="the meter's service port (omit with --bench sim to simulate a meter here)")
    p.add_argument("--bench", help="sim (in-process) or sim:ADDRESS (printed by `meterkit sim start --json`)")
    p.add_argument("--class", dest="accuracy_class", default="1", choices=sorted(classes.CLASSES, key=float),
                   help="accuracy class to verify against (default 1)")
    p.add_argument("--report", metavar="DIR", help="certificate folder (default build/certificates/<meter>/)")
    p.add_argument("--meter", help="name for the certificate when the meter reports no id")
    p.add_argument("--db", help="the factory's manufacturing record DB: the certificate is kept with the meter's record")
    p.add_argument("--test-factor", type=int, default=DEFAULT_TEST_FACTOR,
                   help="test output = this x the meter constant during the session (default %d)" % DEFAULT_TEST_FACTOR)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each meter reply (default 10)")
    p.add_argument("--seed", type=int, default=1, help="in-process simulated meter: the world's seed")
    p.add_argument("--afe", default="typical", help="in-process simulated meter: front-end profile (default typical)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_calibrate)


def _open(args):
    """(service, bench, closers) for the arguments."""
    from host_tools.calibrate.bench import open_bench
    if not args.bench:
        raise UsageError("no bench given", hint="use --bench sim[:ADDRESS]")
    if args.port:
        bench = open_bench(args.bench)                 # a bench on its own connection
        try:
            from host_tools.device.client import ServiceClient
            service = ServiceClient(args.port, timeout=args.timeout)
        except Exception:
            bench.close()
            raise
        return service, bench, [bench.close, service.close]
    scheme, _, argument = args.bench.partition(":")
    if scheme != "sim" or argument:
        raise UsageError("--port is required with --bench %s" % args.bench,
                         hint="give the meter's service port; only --bench sim simulates a meter in-process")
    from host_tools.calibrate.bench.sim import SimBench
    from host_tools.calibrate.target import SimService
    from host_tools.sim.runner import SimMeter
    meter = SimMeter(seed=args.seed, afe=args.afe, profile="constant", settings={"meter_period_s": 1})
    try:
        meter.run_for(1)
        bench = SimBench(meter, seed=args.seed)
    except Exception:
        meter.close()
        raise
    if not args.meter:
        args.meter = "sim-%s-seed%d" % (args.afe, args.seed)
    return SimService(meter), bench, [bench.close, meter.close]


def cmd_calibrate(args):
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
        result = run_lab(service, bench, args.accuracy_class, args.test_factor, args.report, args.meter,
                         log=log, progress=progress)
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
    w("meter %s: %s (class %s)\n" % (out["meter"], out["status"], out["class"]))
    if out["reason"]:
        w("  reason: %s\n" % out["reason"])
    for p in out["points"]:
        err = "%+.3f %%" % p["error_pct"] if p["error_pct"] is not None else "  none"
        w("  %-22s %9s  limit +-%g %%  %s\n" % (p["label"], err, p["limit_pct"], "ok" if p["passed"] else "FAIL"))
    if out["worst_error_pct"] is not None:
        w("  worst error %.3f %%\n" % out["worst_error_pct"])
    w("  bench time %.1f s\n" % out["bench_seconds"])
    for kind, path in sorted(out["report"].items()):
        w("  %s: %s\n" % (kind, path))
