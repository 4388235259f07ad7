"""`meterkit build --board NAME [--frozen] [--ota-key PUB.pem ...] [--out DIR] [--json]`: pack the file system image: the
production layout for a firmware with the app frozen in (--frozen), or the development layout (.mpy)."""
import sys

from host_tools.build.builder import build
from host_tools.cli import emit


def register(sub):
    p = sub.add_parser("build", help="compile firmware + board with mpy-cross and pack the littlefs image")
    p.add_argument("--board", required=True, help="board folder name under boards/")
    p.add_argument("--frozen", action="store_true",
                   help="production: data-only file system for a firmware with the app frozen in (boards/B/manifest.py)")
    p.add_argument("--ota-key", action="append", default=[], metavar="PUB.pem",
                   help="a public key whose signed updates the meter accepts (`meterkit ota keygen`); repeatable")
    p.add_argument("--out", default=None, help="output folder (default build/<board>/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handler)


def handler(args):
    m = build(args.board, args.out, frozen=args.frozen, ota_keys=args.ota_key)
    if not args.frozen:
        sys.stderr.write("development mode: the application goes on the file system as .mpy (boards with PSRAM, "
                         "mpremote work); `--frozen` builds the production image\n")
    for w in m["warnings"]:
        sys.stderr.write(f"warning: {w}\n")
    summary = {
        "board": m["board"], "mode": m["mode"], "out": m["out"], "image": m["image"]["file"],
        "image_sha256": m["image"]["sha256"], "files": len(m["files"]),
        "bytes": sum(f["size"] for f in m["files"].values()), "warnings": m["warnings"],
    }
    emit(summary, args.json)
    return 0
