"""`meterkit flash --port P [--port P ...] --board NAME --firmware FILE [--fs IMAGE] [--seal [--secure-boot-key
KEY.pem] --db FILE] [--json]`."""
import hashlib
import sys
from pathlib import Path

from rich.console import Console

from host_tools.cli import emit
from host_tools.flash.flasher import flash_many


def register(sub):
    p = sub.add_parser("flash", help="flash MicroPython + the application image onto ESP32 boards (esptool)")
    p.add_argument("--port", action="append", required=True, help="serial port, pty, socket://host:port or auto (the one meter attached); repeat")
    p.add_argument("--board", required=True, help="board name under boards/ (its mcu and flash layout)")
    p.add_argument("--firmware", required=True, help="MicroPython firmware.bin, written at the board's firmware offset")
    p.add_argument("--fs", default=None, help="littlefs image from `meterkit build`, written at the vfs offset")
    p.add_argument("--no-compress", action="store_true", help="send data uncompressed (slower on a real board)")
    p.add_argument("--block-timeout", type=float, default=None, help="seconds to wait per block before calling a board dead")
    p.add_argument("--seal", action="store_true",
                   help="encrypt on the host with a fresh key per board and burn the sealing eFuses (flash "
                        "encryption, no download mode, no JTAG): irreversible")
    p.add_argument("--keep-download-mode", action="store_true",
                   help="with --seal: leave UART_DOWNLOAD_DIS unburnt (ESP32 silicon before v3 has no such eFuse)")
    p.add_argument("--secure-boot-key", default=None, metavar="KEY.pem",
                   help="with --seal: sign the bootloader and the app with this RSA-3072 key (espsecure sign-data "
                        "--version 2) and enable secure boot v2 with its digest (ESP32 silicon v3 only): irreversible")
    p.add_argument("--skip-secure-boot-on-old-silicon", action="store_true",
                   help="with --secure-boot-key: seal a board older than silicon v3 with flash encryption only "
                        "instead of refusing it")
    p.add_argument("--db", default=None, help="manufacturing record DB for --seal (default $METERKIT_FACTORY_DB, or "
                                               "factory-records.sqlite in the data folder, where `provision` keeps it)")
    p.add_argument("--operator", default=None, help="who ran the line (recorded with --seal)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handler)


def handler(args):
    from host_tools.device.ports import resolve
    ports = [resolve(p) for p in args.port]          # `auto`: the one meter attached, as every verb does
    if len(set(ports)) != len(ports):
        from host_tools.errors import UsageError
        twice = sorted({p for p in ports if ports.count(p) > 1})
        raise UsageError("port %s given twice" % ", ".join(twice), hint="give each board's port once")
    results = flash_many(ports, args.board, args.firmware, args.fs, show_progress=not args.json,
                         console=Console(stderr=True), compress=not args.no_compress,
                         block_timeout=args.block_timeout, seal=args.seal,
                         keep_download_mode=args.keep_download_mode, secure_boot_key=args.secure_boot_key,
                         skip_secure_boot_on_old_silicon=args.skip_secure_boot_on_old_silicon)
    if args.seal:
        record_seals(results, args)
    failed = [r for r in results if not r["ok"]]
    if args.json:
        emit({"board": args.board, "ok": not failed, "flashed": len(results) - len(failed),
              "failed": len(failed), "results": results}, True)
    else:
        for r in results:
            if r["ok"]:
                sb = "  secure boot v2" if r.get("secure_boot") else ""
                sys.stdout.write(f"{r['port']}: ok  {r.get('chip', '')}  mac {r.get('mac', '')}{sb}  {r['seconds']} s\n")
            else:
                sys.stdout.write(f"{r['port']}: FAILED  {r['error']}" + (f" ({r['hint']})" if r.get("hint") else "") + "\n")
        sys.stdout.write(f"{len(results) - len(failed)}/{len(results)} boards flashed\n")
    return 1 if failed else 0


def record_seals(results, args):
    """One sealing row per sealed board in the manufacturing record (keyed by MAC): the record DB
    `provision` writes (the data folder's, unless --db or $METERKIT_FACTORY_DB names another)."""
    from host_tools.paths import factory_db
    from host_tools.provision.records import RecordDB
    db = RecordDB(args.db or factory_db(existing=False))
    fw = hashlib.sha256(Path(args.firmware).read_bytes()).hexdigest()
    fs = hashlib.sha256(Path(args.fs).read_bytes()).hexdigest() if args.fs else None
    try:
        for r in results:
            if r.get("sealed"):
                db.save_seal(r["mac"], args.board, r.get("flash_size"), r.get("firmware_sha256") or fw, fs,
                             r["flash_key_sha256"], r["efuses"], operator=args.operator,
                             chip_revision=r.get("chip_revision"), secure_boot=r.get("secure_boot"),
                             secure_boot_key_digest=r.get("secure_boot_key_digest"))
    finally:
        db.close()
