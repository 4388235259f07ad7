"""`meterkit device --port P <request>`: talk to a meter's service port (a board or a simulated meter)."""
from host_tools.cli import emit
from host_tools.device.client import ServiceClient

REQUESTS = ("ping", "readings", "totals", "events", "status", "credit", "statement")


def register(sub):
    p = sub.add_parser("device", help="ask a meter over its service port (ping, readings, totals, events, status, credit, statement)")
    p.add_argument("--port", required=True, help="serial port (or the pty a simulated meter prints)")
    p.add_argument("request", choices=REQUESTS)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_device)


def cmd_device(args):
    with ServiceClient(args.port, timeout=args.timeout) as c:
        reply = c.call(args.request)
    reply.pop("id", None)
    reply.pop("ok", None)
    emit(reply, args.json)
    return 0
