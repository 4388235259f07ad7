"""`meterkit flash --port P [--port P ...] --board NAME --firmware FILE [--fs IMAGE] [--json]`."""
import sys

from rich.console import Console

from host_tools.cli import emit
from host_tools.flash.flasher import flash_many


def register(sub):
    p = sub.add_parser("flash", help="flash MicroPython + the application image onto ESP32 boards (esptool)")
    p.add_argument("--port", action="append", required=True, help="serial port, pty or socket://host:port; repeat")
    p.add_argument("--board", required=True, help="board name under boards/ (its mcu and flash layout)")
    p.add_argument("--firmware", required=True, help="MicroPython firmware.bin, written at the board's firmware offset")
    p.add_argument("--fs", default=None, help="littlefs image from `meterkit build`, written at the vfs offset")
    p.add_argument("--no-compress", action="store_true", help="send data uncompressed (slower on a real board)")
    p.add_argument("--block-timeout", type=float, default=None, help="seconds to wait per block before calling a board dead")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handler)


def handler(args):
    results = flash_many(args.port, args.board, args.firmware, args.fs, show_progress=not args.json,
                         console=Console(stderr=True), compress=not args.no_compress,
                         block_timeout=args.block_timeout)
    failed = [r for r in results if not r["ok"]]
    if args.json:
        emit({"board": args.board, "ok": not failed, "flashed": len(results) - len(failed),
              "failed": len(failed), "results": results}, True)
    else:
        for r in results:
            if r["ok"]:
                sys.stdout.write(f"{r['port']}: ok  {r.get('chip', '')}  mac {r.get('mac', '')}  {r['seconds']} s\n")
            else:
                sys.stdout.write(f"{r['port']}: FAILED  {r['error']}" + (f" ({r['hint']})" if r.get("hint") else "") + "\n")
        sys.stdout.write(f"{len(results) - len(failed)}/{len(results)} boards flashed\n")
    return 1 if failed else 0
