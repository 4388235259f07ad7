"""`meterkit deploy --port P [--board NAME] [--json]`: copy the built app onto a running board."""
import sys

from host_tools.cli import emit
from host_tools.deploy.deployer import deploy


def register(sub):
    p = sub.add_parser("deploy", help="copy the built application onto a running board (mpremote, no reset)")
    p.add_argument("--port", required=True, help="the board's serial port, a pty, or auto (the one meter attached)")
    p.add_argument("--board", default=None, help="which build/<board>/ to deploy (default: the only build)")
    p.add_argument("--build-dir", default=None, help="a build folder made with `meterkit build --out`")
    p.add_argument("--dest", default="", help="folder on the board (default: its current folder, / on ESP32)")
    p.add_argument("--force", action="store_true", help="copy every file even if unchanged")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handler)


def handler(args):
    def said(rel, n):
        if not args.json:
            sys.stderr.write(f"  {rel} ({n} bytes)\n")
    r = deploy(args.port, board=args.board, build_dir=args.build_dir, dest=args.dest, force=args.force, on_file=said)
    if args.json:
        emit(r, True)
    else:
        sys.stdout.write(f"{r['port']}: copied {len(r['copied'])} files ({r['bytes']} bytes), "
                         f"{len(r['unchanged'])} unchanged\n")
    return 0
