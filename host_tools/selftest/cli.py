"""`meterkit selftest --port P [--db FILE] [--json]`: run the meter's self-test; exit 1 if any item fails."""
import sys

from host_tools.cli import emit
from host_tools.device.client import ServiceClient
from host_tools.paths import factory_db
from host_tools.selftest import run_selftest


def register(sub):
    p = sub.add_parser("selftest", help="run a meter's self-test and show each item (exit 1 on any failure)")
    p.add_argument("--port", required=True, help="the meter's service port (a simulated meter prints its pty)")
    p.add_argument("--db", default=factory_db(),
                   help="factory record DB, needed once the meter has left factory mode (its service key; default "
                        "$METERKIT_FACTORY_DB, or factory-records.sqlite in the data folder)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the meter (default 15)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_selftest)


def cmd_selftest(args):
    with ServiceClient(args.port, timeout=args.timeout) as c:
        res = run_selftest(c, db=args.db, timeout=args.timeout)
    if args.json:
        emit(res, True)
    else:
        for i in res["items"]:
            sys.stdout.write(f"{'PASS' if i['pass'] else 'FAIL'}  {i['item']:14s} {i['reason']}\n")
        sys.stdout.write("self-test %s\n" % ("passed" if res["passed"] else "FAILED: " + ", ".join(res["failed"])))
    return 0 if res["passed"] else 1
