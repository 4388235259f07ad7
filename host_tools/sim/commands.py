"""`meterkit sim run` (accelerated, reproducible) and `meterkit sim start` (realtime, service pty)."""
import math
import os
import sys

from host_tools.cli import emit
from host_tools.errors import UsageError
from host_tools.sim.world.chips import NAMES as CHIPS
from host_tools.sim.esp32.runner import DEFAULT_HEAP


def _common(p):
    p.add_argument("--seed", type=int, default=1, help="the world's seed (default 1)")
    p.add_argument("--profile", default="household", help="load profile name or JSON file")
    p.add_argument("--afe", default="typical", help="analog front end name or JSON file (default: typical, uncalibrated)")
    p.add_argument("--grid", default="stable", help="grid name or JSON file")
    p.add_argument("--chip", choices=CHIPS, default=None,
                   help="the metering chip on the simulated board (default: the board's own, atm90e26); the same "
                        "firmware picks its driver from the board description")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register_sim(simsub):
    p = simsub.add_parser("run", help="an accelerated, reproducible run of a simulated meter")
    p.add_argument("--days", type=float, required=True)
    p.add_argument("--period", type=int, default=60, help="metering period in seconds (default 60)")
    p.add_argument("--heap", default=None, help="MicroPython heap cap (default %s)" % DEFAULT_HEAP)
    p.add_argument("--fault", action="append", default=[], metavar="KIND@S[+DUR]",
                   help="chip fault: silent, garbage or reset at S seconds, lasting DUR seconds")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = simsub.add_parser("start", help="a realtime simulated meter with its service port on a pty")
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per wall second")
    p.add_argument("--link", help="also make this symlink to the service pty")
    p.add_argument("--period", type=int, default=1, help="metering period in seconds (default 1)")
    p.add_argument("--flash", help="boot from this flash file (a whole-chip file written by `meterkit flash`, "
                                   "or a partition image) instead of a fresh one")
    p.add_argument("--flash-offset", type=lambda x: int(x, 0), default=None,
                   help="where the vfs partition starts in --flash (default: the board's vfs offset if the "
                        "file is a whole chip, else 0)")
    p.add_argument("--workdir", help="keep the meter's files here (default: a temporary folder)")
    p.add_argument("--frozen", action="store_true",
                   help="the production layout: a data-only file system, the app from a directory standing for "
                        ".frozen after it on the search path (booting from --flash always has the frozen app)")
    p.add_argument("--heap", default=None, help="MicroPython heap cap (default %s, 384k with the modem)" % DEFAULT_HEAP)
    p.add_argument("--meters", type=int, default=1, help="how many meters (default 1; --link PATH becomes "
                                                         "PATH-1, PATH-2, ...)")
    p.add_argument("--headend", metavar="DB|URL", help="put the meters on this head-end: they are registered in its "
                                                   "database (a SQLite file or a postgresql:// URL) and connect "
                                                   "to its broker (start `meterkit headend serve --db DB` first)")
    p.add_argument("--broker", metavar="URL", help="the broker the meters' modems reach (default: the one `headend "
                                                   "serve` recorded in --headend DB)")
    p.add_argument("--keystore", default=os.environ.get("METERKIT_KEYSTORE"),
                   help="with --headend: the vending settings `headend topup` uses (or $METERKIT_KEYSTORE); the "
                        "vending key is in the PKCS#11 module")
    _common(p)
    p.set_defaults(func=cmd_start)


def cmd_run(args):
    from host_tools.sim.run import run
    if not math.isfinite(args.days) or args.days <= 0:
        raise UsageError(f"--days {args.days} is not a positive number of days", hint="e.g. --days 1 or --days 0.5")
    if args.period <= 0:
        raise UsageError(f"--period {args.period} must be above 0 seconds", hint="e.g. --period 60")
    from host_tools.sim.run import parse_faults
    parse_faults(args.fault)       # refused (exit 2) before anything starts
    progress = None
    if not args.json and sys.stderr.isatty():
        from rich.progress import Progress
        prog = Progress(transient=True)
        prog.start()
        task = prog.add_task("simulating", total=1.0)

        def progress(t, end):
            prog.update(task, completed=t / end)
    try:
        res = run(days=args.days, seed=args.seed, profile=args.profile, afe=args.afe, grid=args.grid,
                  period_s=args.period, heap=args.heap, faults=args.fault, progress=progress, chip=args.chip)
    finally:
        if progress:
            prog.stop()
    emit(res, args.json)
    return 0


# Where a meter's modem connects when no head-end is given: a closed port, so the modem answers AT
# (the factory self-test passes) and its data link simply finds nobody, as a meter out of coverage.
NO_BROKER = ("127.0.0.1", 9)


def cmd_start(args):
    from host_tools.sim.live import serve
    if not math.isfinite(args.speed) or args.speed <= 0:
        raise UsageError(f"--speed {args.speed} must be a positive number", hint="1 is realtime, 60 a minute per second")
    if not 1 <= args.meters <= 50:
        raise UsageError(f"--meters {args.meters} must be 1..50", hint="each meter is a MicroPython process")
    if args.period <= 0:
        raise UsageError(f"--period {args.period} must be above 0 seconds", hint="e.g. --period 1")
    if args.flash and args.meters > 1:
        raise UsageError("--flash boots one meter", hint="leave out --meters, or --flash")
    join = None
    broker = NO_BROKER
    if args.headend:
        from host_tools.sim.join import HeadendJoin
        join = HeadendJoin(args.headend, args.keystore, args.broker)
        broker = join.broker
    elif args.broker:
        raise UsageError("--broker needs --headend DB", hint="the meters are registered in the head-end's database")
    flash = {}
    if args.flash:
        import json as _json
        import os

        from host_tools.paths import board_dir
        if not os.path.exists(args.flash):
            raise UsageError("no flash file %s" % args.flash, hint="flash one with `meterkit flash` or build an image")
        fl = _json.loads((board_dir("sim") / "board.json").read_text())["flash"]
        off = args.flash_offset
        if off is None and _whole_chip(args.flash, fl["vfs_size"]):
            # A whole chip written by `meterkit flash`: boot it as the ESP32 would (image checks,
            # eFuses, flash encryption, the file system where MicroPython finds it) or refuse.
            from host_tools.flash.boot import boot
            b = boot(args.flash)
            flash = dict(flash_image=args.flash, keep_flash=True, flash_offset=b.vfs_offset, vfs_size=b.vfs_size,
                         flash_cipher=b.vfs_cipher, app_from_flash=True)
        else:
            flash = dict(flash_image=args.flash, keep_flash=True, flash_offset=off or 0, app_from_flash=True)
    if args.frozen:
        flash["frozen"] = True
    if args.chip:
        flash["chip"] = args.chip
    keys_fd = None
    if not args.json and sys.stdin is not None and sys.stdin.isatty():
        keys_fd = sys.stdin.fileno()
    final, m = serve(seed=args.seed, profile=args.profile, afe=args.afe, grid=args.grid, speed=args.speed,
                     as_json=args.json, link=args.link, period_s=args.period, workdir=args.workdir,
                     heap=args.heap or "384k", meters=args.meters, join=join, keys_fd=keys_fd, broker=broker,
                     **flash)
    if not args.json:
        from host_tools import render
        den = final["rem_den"]
        print("meter imported %s (the simulator's truth %s); events: %s" % (
            render.kwh(final["import_wh"] + final["import_rem"] / den, 4), render.kwh(m.world.true_import_wh, 4),
            ", ".join("%s %d" % kv for kv in sorted((final.get("events") or {}).items())) or "none"))
    return 0


def _whole_chip(path, vfs_size):
    """A whole-chip flash file (bootloader, table, file system) rather than a partition image."""
    import os

    from host_tools.flash import parttable
    if os.path.getsize(path) > vfs_size:
        return True
    with open(path, "rb") as f:
        f.seek(parttable.TABLE_OFFSET)
        table = f.read(parttable.TABLE_MAX)
    try:
        parttable.parse(table)
        return True
    except parttable.PartitionTableError:
        return False
