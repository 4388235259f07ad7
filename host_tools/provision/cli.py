"""`meterkit provision --port P --keystore FILE --sgc N --ti N [--serial N] [--operator NAME] [--db FILE]
[--rekey] [--json]` provisions one meter; `meterkit provision export --csv [--db FILE] [--out FILE]`
writes the head-end import CSV. Thin wrappers over host_tools.provision.line and .records."""
import os
import sys
import tempfile

from host_tools.cli import emit
from host_tools.errors import UsageError
from host_tools.provision.line import provision
from host_tools.paths import data_dir
from host_tools.provision.records import DEFAULT_DB, RecordDB


def register(sub):
    p = sub.add_parser("provision", help="write a meter's identity and keys, lock it, self-test it, record it; "
                                         "or `provision export --csv` for the head-end")
    p.add_argument("action", nargs="?", choices=("export",), help="export: write the head-end import CSV")
    p.add_argument("--port", help="the meter's service port")
    p.add_argument("--keystore", help="the utility's keystore JSON (vending key, IIN, broker): see docs/factory.md")
    p.add_argument("--sgc", help="supply group code (6 digits; default from the keystore)")
    p.add_argument("--ti", type=int, help="tariff index (default from the keystore)")
    p.add_argument("--serial", type=int, help="meter serial (default: the next free one in the DB)")
    p.add_argument("--operator", help="who runs the line (goes into the record)")
    p.add_argument("--db", default=os.environ.get("METERKIT_FACTORY_DB") or str(data_dir() / DEFAULT_DB),
                   help=f"manufacturing record DB (SQLite; SECRET: holds message/service keys); default {DEFAULT_DB} "
                        "in $METERKIT_DATA or the working folder, or $METERKIT_FACTORY_DB")
    p.add_argument("--rekey", action="store_true", help="replace the keys of a meter that is already provisioned")
    p.add_argument("--opaygo", action="store_true", help="also give the meter an OpenPAYGO secret and starting code "
                                                         "(made at random, kept in the record DB)")
    p.add_argument("--opaygo-key", metavar="HEX", help="the OpenPAYGO secret to give it (32 hex digits; e.g. from "
                                                       "the PAYG platform)")
    p.add_argument("--opaygo-starting-code", type=int, metavar="N", help="its OpenPAYGO starting code (9 digits)")
    p.add_argument("--manifest", help="build/<board>/manifest.json: records the image's SHA-256")
    p.add_argument("--firmware-bin", help="the MicroPython firmware.bin flashed: records its SHA-256")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each meter reply (default 5)")
    p.add_argument("--csv", action="store_true", help="export: CSV format (the only one)")
    p.add_argument("--out", help="export: write here instead of stdout")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_provision)


def cmd_provision(args):
    if args.action == "export":
        return _export(args)
    missing = [f"--{n}" for n in ("port", "keystore") if not getattr(args, n)]
    if missing:
        raise UsageError(f"provision needs {' and '.join(missing)}",
                         hint="meterkit provision --port P --keystore FILE --sgc N --ti N")
    from host_tools.provision.line import opaygo_secrets
    opaygo = opaygo_secrets(args.opaygo, args.opaygo_key, args.opaygo_starting_code)
    res = provision(args.port, args.keystore, sgc=args.sgc, ti=args.ti, serial=args.serial, operator=args.operator,
                    db=args.db, rekey=args.rekey, manifest=args.manifest, firmware_bin=args.firmware_bin,
                    timeout=args.timeout, opaygo=opaygo)
    if args.json:
        emit(res, True)
    else:
        sys.stdout.write(f"provisioned serial {res['serial']} PAN {res['pan']} ({res['board']}, firmware "
                         f"{res['firmware']}, KRN {res['krn']}){' [rekey]' if res['rekey'] else ''}\n")
        if res.get("opaygo"):
            sys.stdout.write(f"  OpenPAYGO: secret written (kept in {args.db}), starting code "
                             f"{res['opaygo_starting_code']}\n")
        for i in res["selftest"]:
            sys.stdout.write(f"  {'PASS' if i['pass'] else 'FAIL'}  {i['item']:14s} {i['reason']}\n")
        verdict = "passed" if res["selftest_passed"] else "FAILED: " + ", ".join(res["failed"])
        sys.stdout.write(f"self-test {verdict}\n")
    return 0 if res["selftest_passed"] else 1


def _export(args):
    if not args.csv:
        raise UsageError("export needs a format", hint="meterkit provision export --csv [--out FILE]")
    if not os.path.exists(args.db):
        raise UsageError(f"no record DB {args.db}", hint="give --db FILE (the DB the line wrote)")
    db = RecordDB(args.db)
    try:
        text = db.export_csv()
        n = len(db.meters())
    finally:
        db.close()
    if not args.out:
        if args.json:
            emit({"csv": text, "meters": n}, True)
        else:
            sys.stdout.write(text)
        return 0
    # Written whole then renamed: a reader never sees half a file.
    d = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".export-")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, args.out)
    except BaseException:
        os.unlink(tmp)
        raise
    emit({"out": args.out, "meters": n}, args.json)
    return 0
