"""`meterkit build --board NAME [--out DIR] [--json]`: compile the firmware and pack the flash image."""
import sys

from host_tools.build.builder import build
from host_tools.cli import emit


def register(sub):
    p = sub.add_parser("build", help="compile firmware + board with mpy-cross and pack the littlefs image")
    p.add_argument("--board", required=True, help="board folder name under boards/")
    p.add_argument("--out", default=None, help="output folder (default build/<board>/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handler)


def handler(args):
    m = build(args.board, args.out)
    for w in m["warnings"]:
        sys.stderr.write(f"warning: {w}\n")
    summary = {
        "board": m["board"], "out": m["out"], "image": m["image"]["file"],
        "image_sha256": m["image"]["sha256"], "files": len(m["files"]),
        "bytes": sum(f["size"] for f in m["files"].values()), "warnings": m["warnings"],
    }
    emit(summary, args.json)
    return 0
