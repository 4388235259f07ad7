"""`meterkit sim chaos --days N [--meters M] [--seed S] --json`: the fleet through N days of everything going
wrong; exits 1 when any check found a violation (each names the seed and the step to reproduce it)."""
import math
import sys

from host_tools.errors import UsageError


def register_sim(simsub):
    p = simsub.add_parser("chaos", help="M simulated meters, a head-end, the agency and payments through N days "
                                        "of random faults, checked independently",
                          description="Runs M meters (the real firmware) with households, a head-end, the agency's "
                                      "payments, tokens by keypad, SMS and MQTT, remote commands, a tariff change "
                                      "and an OTA campaign, while a seeded schedule strikes every fault the simulator "
                                      "has. Exits 1 when a check failed.")
    p.add_argument("--days", type=float, required=True, help="simulated days")
    p.add_argument("--meters", type=int, default=1, help="how many meters (default 1)")
    p.add_argument("--seed", type=int, default=1, help="the run's seed (default 1); the same seed gives the same report")
    p.add_argument("--faults-per-day", type=float, default=6.0, help="faults per meter and simulated day (default 6)")
    p.add_argument("--kinds", default=None, help="only these fault kinds, comma-separated (default: all)")
    p.add_argument("--no-campaign", action="store_true", help="no OTA campaign")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_chaos)


def cmd_chaos(args):
    from host_tools.chaos import faults
    from host_tools.chaos.run import run
    from host_tools.cli import emit
    if not math.isfinite(args.days) or args.days <= 0:
        raise UsageError("--days %s is not a positive number of days" % args.days, hint="e.g. --days 2")
    if not math.isfinite(args.faults_per_day) or args.faults_per_day < 0:
        raise UsageError("--faults-per-day %s must be 0 or more" % args.faults_per_day, hint="e.g. --faults-per-day 6")
    kinds = None
    if args.kinds:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        bad = [k for k in kinds if k not in faults.REGISTRY]
        if bad:
            raise UsageError("unknown fault kind(s) %s" % ", ".join(bad), hint="kinds: " + ", ".join(sorted(faults.REGISTRY)))
    say = None if args.json else (lambda text: sys.stderr.write(text + "\n"))
    progress = prog = None
    if not args.json and sys.stderr.isatty():
        from rich.progress import Progress
        prog = Progress(transient=True)
        prog.start()
        task = prog.add_task("chaos", total=1.0)

        def progress(done, total):
            prog.update(task, completed=done / total)
    try:
        rep = run(days=args.days, meters=args.meters, seed=args.seed, per_day=args.faults_per_day, kinds=kinds,
                  log=say, progress=progress, campaign=not args.no_campaign)
    finally:
        if prog:
            prog.stop()
    if args.json:
        emit(rep, True)
    else:
        v = rep["violations"]
        emit({k: rep[k] for k in ("days", "meters", "seed", "faults", "faults_total", "recovery_max_s",
                                  "max_unbilled_wh_per_cut", "payments", "activity", "sim_s", "wall_s")}, False)
        print("violations: %d" % len(v))
        for x in v[:30]:
            print("VIOLATION seed %(seed)s step %(step)s meter %(meter)s %(check)s: %(what)s" % x)
    return 1 if rep["violations"] else 0
