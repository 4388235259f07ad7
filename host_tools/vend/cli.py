"""`meterkit vend sts|opaygo` (issue tokens) and `meterkit token inspect` (decode one with the
firmware's own decoder). Thin wrappers over dkga04, sts_encode and opaygo_encode; STS decoder keys are
derived inside the PKCS#11 module that holds the vending key (host_tools.keys)."""
import argparse
import datetime
import sys

from host_tools.cli import emit
from host_tools.errors import UsageError
from host_tools.vend import dkga04, opaygo_encode, sts_encode


def _hex_key(text, n, what):
    return dkga04.parse_hex_key(text, n, what, f"a {8 * n}-bit key written in hex")


def _int_range(value, lo, hi, what):
    if not lo <= value <= hi:
        raise UsageError(f"{what} {value} outside {lo}..{hi}", hint=f"give {what} between {lo} and {hi}")
    return value


def register(subparsers):
    vend = subparsers.add_parser("vend", help="issue prepaid tokens (STS, OpenPAYGO)")
    vsub = vend.add_subparsers(dest="vend_kind", metavar="KIND")
    vsub.required = True

    s = vsub.add_parser("sts", help="STS EA11 token(s) for one meter (the vending key stays in the PKCS#11 module: "
                                    "`meterkit keys`; PIN from $METERKIT_HSM_PIN or a prompt)")
    s.add_argument("--vending-key", help=argparse.SUPPRESS)   # refused with a pointer to the module
    from host_tools.keys.cli import add_module_options
    add_module_options(s)
    s.add_argument("--sgc", required=True, help="supply group code (6 digits)")
    s.add_argument("--ti", type=int, required=True, help="tariff index")
    s.add_argument("--krn", type=int, required=True, help="key revision number 1..9")
    s.add_argument("--kt", type=int, required=True, help="key type 0..3")
    s.add_argument("--pan", required=True, help="meter PAN: 18 digits with Luhn digit, or 17 (digit appended)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--kwh", help="electricity credit in kWh (rounded up to 0.1 kWh)")
    what.add_argument("--currency", help="currency credit in base units (rounded up to 0.00001)")
    what.add_argument("--max-power-w", type=int, help="set the maximum power limit in W")
    what.add_argument("--clear-credit", action="store_true", help="clear credit (see --register)")
    what.add_argument("--clear-tamper", action="store_true", help="clear the tamper condition")
    what.add_argument("--key-change", metavar="NEWKEYHEX", help="four key-section tokens for a new decoder key")
    s.add_argument("--register", type=lambda x: int(x, 0), default=0xFFFF,
                   help="clear-credit register: 0 electricity, 1..3 water/gas/time, 4 currency, 0xFFFF all")
    s.add_argument("--new-krn", type=int, help="key change: the new key's KRN (default KRN+1)")
    s.add_argument("--new-kt", type=int, help="key change: the new key's KT (default KT)")
    s.add_argument("--new-ti", type=int, help="key change: the new key's TI (default TI)")
    s.add_argument("--new-ken", type=int, default=255, help="key change: key expiry number 0..255")
    s.add_argument("--rollover", action="store_true", help="key change: set RO (meter clears its TID store)")
    when = s.add_mutually_exclusive_group()
    when.add_argument("--at", help="token time, ISO 8601 (naive = UTC); default now")
    when.add_argument("--tid", type=int, help="token identifier (minutes since the base date)")
    s.add_argument("--rnd", type=int, help="RND 0..15 (default random)")
    s.add_argument("--base-date", default="14", choices=sorted(dkga04.BASE_DATES),
                   help="key base date (default 14: base date 93's TIDs ran out in 2024)")
    s.add_argument("--tid-store", help="where the last TID per meter is kept, so two tokens in one minute never "
                                       "share a TID (default: vend-tids.sqlite in $METERKIT_DATA or the "
                                       "working folder)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_vend_sts)

    o = vsub.add_parser("opaygo", help="OpenPAYGO token for one device")
    o.add_argument("--key", required=True, help="device secret key, 32 hex digits")
    o.add_argument("--starting-code", type=int, required=True, help="device starting code (9 digits)")
    o.add_argument("--count", type=int, required=True, help="the device's last count")
    o.add_argument("--value", type=int, help="value to add or set (required for add and set; above 0 for add)")
    kind = o.add_mutually_exclusive_group()
    kind.add_argument("--set", action="store_true", help="SET instead of ADD")
    kind.add_argument("--disable", action="store_true", help="disable PAYG for good (value 998)")
    kind.add_argument("--sync", action="store_true", help="counter sync (value 999)")
    o.add_argument("--extended", action="store_true", help="12-digit extended token (values to 999999)")
    o.add_argument("--restricted", action="store_true", help="keys 1-4 only (15 or 20 digits)")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.set_defaults(func=cmd_vend_opaygo)

    tok = subparsers.add_parser("token", help="inspect tokens")
    tsub = tok.add_subparsers(dest="token_verb", metavar="VERB")
    tsub.required = True
    i = tsub.add_parser("inspect", help="decode an STS token (--decoder-key) or an OpenPAYGO token "
                                        "(--opaygo-key, --starting-code) and show its fields")
    key = i.add_mutually_exclusive_group(required=True)
    key.add_argument("--decoder-key", help="STS: the meter's decoder key, 32 hex digits")
    key.add_argument("--opaygo-key", help="OpenPAYGO: the device's secret key, 32 hex digits")
    i.add_argument("token", help="the token's digits (spaces and dashes allowed)")
    i.add_argument("--base-date", default="14", choices=sorted(dkga04.BASE_DATES),
                   help="STS: base date used to show the TID as a time (default 14)")
    i.add_argument("--starting-code", type=int, help="OpenPAYGO: the device's starting code")
    i.add_argument("--count", type=int, default=0, help="OpenPAYGO: the device's last count (default 0)")
    i.add_argument("--restricted", action="store_true", help="OpenPAYGO: a token typed with keys 1-4 only")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_token_inspect)


def _what(f):
    """A token's meaning in words and units: '5 kWh electricity credit'."""
    from host_tools.vend.sts_encode import sts, unit_text
    c, sub, field = f["class"], f["subclass"], f["field"]
    if c == 0 and sub == 0:
        return unit_text(sts.decode_amount(field), "kwh") + " electricity credit"
    if c == 0 and sub == 4:
        return unit_text(sts.decode_amount(field), "currency") + " credit"
    if c == 2 and sub == 0:
        return "maximum power limit " + unit_text(sts.decode_amount(field), "w")
    if c == 2 and sub == 1:
        return "clear credit (register %s)" % ("all" if field == 0xFFFF else field)
    if c == 2 and sub == 5:
        return "clear tamper"
    if c == 2 and sub in (3, 4, 8, 9):
        return "key change section %d of 4" % ((3, 4, 8, 9).index(sub) + 1)
    return "class %d subclass %d" % (c, sub)


def _tid_time(tid, base_date):
    base = datetime.datetime(dkga04.BASE_DATES[str(base_date)], 1, 1, tzinfo=datetime.timezone.utc)
    from host_tools import render
    return render.local_time((base + datetime.timedelta(minutes=tid)).timestamp())


def cmd_vend_sts(args):
    from host_tools.keys.cli import settings_from
    from host_tools.keys.vendingkey import IMPORT_HINT, open_vending_key
    from host_tools.vend.tidstore import TidStore
    if args.vending_key is not None:
        raise UsageError("--vending-key is no longer accepted: the vending key lives in the secure module",
                         hint=IMPORT_HINT + "; then `vend sts` derives the meter's key there (--token, --key-label)")
    pan = dkga04.normalise_pan(args.pan)
    dkga04.kdf_message(args.sgc, args.ti, args.krn, args.kt, pan, args.base_date)   # bad ids before the PIN
    key = open_vending_key(settings_from(args)).decoder_key(args.sgc, args.ti, args.krn, args.kt, pan, args.base_date)
    rnd = sts_encode.random_rnd() if args.rnd is None else _int_range(args.rnd, 0, 15, "RND")
    note = None
    if args.key_change:
        new_key = _hex_key(args.key_change, 16, "new key")
        krn = args.new_krn if args.new_krn is not None else (args.krn % 9) + 1
        fields = sts_encode.key_change_tokens(
            key, new_key, _int_range(krn, 1, 15, "new KRN"),
            _int_range(args.kt if args.new_kt is None else args.new_kt, 0, 3, "new KT"),
            _int_range(args.ti if args.new_ti is None else args.new_ti, 0, 99, "new TI"),
            _int_range(args.new_ken, 0, 255, "KEN"), args.rollover)
    else:
        # Everything is checked before a TID is taken from the store.
        if args.kwh is not None:
            cls, sub, field = 0, 0, sts_encode.encode_amount(sts_encode.tenths(args.kwh), "kwh")
        elif args.currency is not None:
            cls, sub, field = 0, 4, sts_encode.encode_amount(sts_encode.currency_units(args.currency), "currency")
        elif args.max_power_w is not None:
            if args.max_power_w < 0:
                raise UsageError("max power must be >= 0 W", hint="e.g. --max-power-w 5000")
            cls, sub, field = 2, 0, sts_encode.encode_amount(args.max_power_w, "w")
        elif args.clear_credit:
            cls, sub, field = 2, 1, _int_range(args.register, 0, 0xFFFF, "register")
        else:
            cls, sub, field = 2, 5, 0
        store = TidStore(args.tid_store)
        meter = TidStore.meter_key(pan, args.sgc, args.ti, args.krn, args.kt, args.base_date)
        try:
            if args.tid is not None:
                tid = args.tid
                sts_encode.check_tid(tid, args.base_date)
                last = store.record(meter, tid)
                if last is not None and tid <= last:
                    note = (f"TID {tid} is not above the last one issued to this meter ({last}): "
                            "the meter refuses a TID it has seen as used")
            else:
                at = args.at or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, second=0,
                                                                                     microsecond=0)
                tid = store.next_tid(meter, sts_encode.tid_from_time(at, args.base_date))
                sts_encode.check_tid(tid, args.base_date)
        finally:
            store.close()
        fields = [sts_encode.build(key, cls, sub, rnd, tid, field)]
    tokens = [f["token"] for f in fields]
    if note:
        sys.stderr.write("meterkit vend: warning: " + note + "\n")
    if args.json:
        emit({"tokens": tokens, "token": tokens[0], "pan": pan, "base_date": args.base_date,
              "fields": fields}, True)
    else:
        for f in fields:
            t = f["token"]
            sys.stdout.write(" ".join(t[i:i + 4] for i in range(0, 20, 4)) +
                             f"   {_what(f)}, TID {f['tid']} ({_tid_time(f['tid'], args.base_date)})\n")
    return 0


def cmd_vend_opaygo(args):
    key = _hex_key(args.key, 16, "OpenPAYGO key")
    kind = "set" if args.set else "disable" if args.disable else "sync" if args.sync else "add"
    if kind in ("add", "set"):
        if args.value is None:
            raise UsageError(f"an OpenPAYGO {kind} token needs --value",
                             hint="e.g. --value 7 (days, or the unit the device counts in); "
                                  "a token without one would spend a count for nothing")
        if kind == "add" and args.value <= 0:
            raise UsageError(f"--value {args.value} adds nothing", hint="give a value above 0")
    new_count, token = opaygo_encode.generate(key, args.starting_code, args.count, args.value or 0, kind,
                                              args.extended, args.restricted)
    out = {"token": token, "count": new_count, "kind": kind, "extended": args.extended,
           "value": 998 if kind == "disable" else 999 if kind == "sync" else args.value}
    if args.json:
        emit(out, True)
    else:
        what = {"add": f"add {out['value']}", "set": f"set to {out['value']}", "disable": "disable PAYG for good",
                "sync": "counter sync"}[kind]
        sys.stdout.write(f"{token}   {what}, count {new_count} (the device's new count)\n")
    return 0


CRC_MISMATCH = "CRC mismatch: wrong key or mistyped digits"


def cmd_token_inspect(args):
    if args.opaygo_key:
        return _inspect_opaygo(args)
    key = _hex_key(args.decoder_key, 16, "decoder key")
    digits = args.token.replace(" ", "").replace("-", "")
    if len(digits) != 20 or not digits.isdigit():
        raise UsageError(f"token {args.token!r} is not 20 digits", hint="an STS token has 20 digits")
    d = sts_encode.inspect(key, digits, args.base_date)
    if not d["crc_ok"]:
        raise UsageError(CRC_MISMATCH, hint="check the decoder key (and its base date) and the 20 digits")
    if args.json:
        emit(d, True)
        return 0
    from host_tools import render
    out = {"token": " ".join(digits[i:i + 4] for i in range(0, 20, 4)), "kind": d["kind"], "meaning": _what(d),
           "TID": "%d (%s, base date %s)" % (d["tid"], _tid_time(d["tid"], args.base_date), args.base_date)
           if "base_date" in d else d["tid"],
           "rnd": d["rnd"], "crc": "ok"}
    render.console().print(render.table(out, ordered=True))
    return 0


def _inspect_opaygo(args):
    key = _hex_key(args.opaygo_key, 16, "OpenPAYGO key")
    if args.starting_code is None:
        raise UsageError("OpenPAYGO inspect needs --starting-code", hint="the device's 9-digit starting code")
    if args.count < 0:
        raise UsageError("--count must be >= 0", hint="the device's last count")
    digits = args.token.replace(" ", "").replace("-", "")
    if not digits.isdigit():
        raise UsageError(f"token {args.token!r} is not digits", hint="an OpenPAYGO token has 9, 12, 15 or 20 digits")
    dec = opaygo_encode.opaygo.OpenPaygo(key, args.starting_code, last_count=args.count,
                                         restricted_digits=args.restricted).decode(digits)
    if dec.status == "format":
        raise UsageError(f"token {args.token!r} has the wrong length",
                         hint="9 or 12 digits (15 or 20 with --restricted)")
    if dec.status == "invalid":
        raise UsageError("no count near %d matches: wrong key or starting code, mistyped digits, or a count far "
                         "off" % args.count, hint="check the key, --starting-code and --count (the device's last)")
    out = {"token": digits, "status": "already used" if dec.status == "used" else "valid",
           "type": dec.type_name() if dec.status != "used" else None, "value": dec.value, "count": dec.count,
           "extended": dec.extended}
    if args.json:
        emit(dict(out, status=dec.status), True)
    else:
        from host_tools import render
        render.console().print(render.table({k: v for k, v in out.items() if v is not None}, ordered=True))
    return 0 if dec.status == "accepted" else 1
