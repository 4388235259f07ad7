"""A meter's service port for the technician: `meterkit device -p P REQUEST [WORDS]` (one request),
`meterkit console -p P` (interactive, with history), `meterkit monitor -p P` (streams events and
readings), `meterkit devs` (candidate ports; `-p auto` picks the one meter)."""
import sys

from host_tools.cli import emit
from host_tools.device import requests
from host_tools.device.client import ServiceClient


def _db_default():
    """$METERKIT_FACTORY_DB, else the factory's record DB in the data folder when there is one."""
    from host_tools.paths import factory_db
    return factory_db()


def _port(p):
    p.add_argument("--port", required=True, help="serial port, the pty a simulated meter prints, or auto")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each reply (default 5)")


def register(sub):
    p = sub.add_parser("device", help="one service request to a meter: " + ", ".join(requests.REQUESTS),
                       description="Requests: " + "; ".join("%s: %s" % (k, v[3]) for k, v in requests.REQUESTS.items()))
    _port(p)
    p.add_argument("request", choices=list(requests.REQUESTS), metavar="REQUEST",
                   help="one of: " + ", ".join(requests.REQUESTS))
    p.add_argument("words", nargs="*", metavar="ARG", help="the request's arguments (token digits, open/close, a time)")
    p.add_argument("--db", default=_db_default(),
                   help="manufacturing record DB: its service key opens a session for privileged requests on a "
                        "provisioned meter (default $METERKIT_FACTORY_DB, or factory-records.sqlite in the data folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_device)

    c = sub.add_parser("console", help="an interactive console on a meter's service port (history, readable replies)")
    _port(c)
    c.add_argument("--db", default=_db_default(), help="manufacturing record DB for privileged requests")
    c.add_argument("--history", help="history file (default $METERKIT_DATA or the working folder: "
                                     ".meterkit_console_history)")
    c.set_defaults(func=cmd_console)

    m = sub.add_parser("monitor", help="stream a meter's events and readings (Ctrl-C stops)")
    _port(m)
    m.add_argument("--interval", type=float, default=2.0, help="seconds between readings (default 2)")
    m.add_argument("--count", type=int, help="stop after this many readings")
    m.add_argument("--json", action="store_true", help="one JSON object per line")
    m.set_defaults(func=cmd_monitor)

    d = sub.add_parser("devs", help="list candidate serial ports (USB bridges of ESP32 boards, simulated meters)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=cmd_devs)


def cmd_device(args):
    requests.build(args.request, args.words)          # bad words refused before the port is opened
    with ServiceClient(args.port, timeout=args.timeout) as c:
        reply, ok = requests.run(c, args.request, args.words, db=args.db)
    if args.json:
        emit(reply, True)
    else:
        requests.show(args.request, reply)
    return 0 if ok else 1


def cmd_devs(args):
    from host_tools.device.ports import candidates
    found = candidates()
    if args.json:
        emit({"ports": found, "count": len(found)}, True)
        return 0
    if not found:
        print("no serial ports found (plug a board in, or start a simulated meter with "
              "`meterkit sim start --link meter.pty`)")
        return 0
    from rich.table import Table

    from host_tools import render
    t = Table(box=None, pad_edge=False)
    for col in ("port", "meter?", "description", "hardware"):
        t.add_column(col)
    for c in found:
        t.add_row(c["port"], "yes" if c["meter"] else "", c["description"], c["hwid"])
    render.console().print(t)
    return 0


def cmd_monitor(args):
    from host_tools.device.monitor import monitor
    if args.interval <= 0:
        from host_tools.errors import UsageError
        raise UsageError("--interval must be above 0 seconds", hint="e.g. --interval 2")
    with ServiceClient(args.port, timeout=args.timeout) as c:
        return monitor(c, interval=args.interval, count=args.count, as_json=args.json)


def cmd_console(args):
    from host_tools.device.console import Console
    with ServiceClient(args.port, timeout=args.timeout) as c:
        return Console(c, db=args.db, history=args.history).loop()
