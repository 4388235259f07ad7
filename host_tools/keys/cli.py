"""`meterkit keys init|import|list`: make a token in the PKCS#11 module, import the utility's vending key
into it once (from stdin or a hidden prompt, never the command line), and list tokens and keys. PINs come
from $METERKIT_HSM_PIN / $METERKIT_HSM_SO_PIN or a prompt on the terminal."""
import sys

from host_tools.cli import emit
from host_tools.errors import UsageError
from host_tools.keys import settings as _settings
from host_tools.keys.module import Module


def add_module_options(p, key=True):
    """The options that choose the module, token and key (each also from the environment)."""
    p.add_argument("--pkcs11-module", metavar="PATH",
                   help="the PKCS#11 library (default $%s, else SoftHSM2 where it is installed)" % _settings.ENV_MODULE)
    p.add_argument("--token", metavar="LABEL",
                   help="token label (default $%s, else %r)" % (_settings.ENV_TOKEN, _settings.DEFAULT_TOKEN))
    p.add_argument("--slot", metavar="ID", help="slot id instead of the label (default $%s)" % _settings.ENV_SLOT)
    if key:
        p.add_argument("--key-label", metavar="LABEL",
                       help="the vending key's label (default $%s, else %r)" % (_settings.ENV_KEY, _settings.DEFAULT_KEY))


def settings_from(args, section=None):
    return _settings.resolve(module=args.pkcs11_module, token=args.token, slot=args.slot,
                             key=getattr(args, "key_label", None) or getattr(args, "label", None), section=section)


def register(subparsers):
    k = subparsers.add_parser("keys", help="vending keys in a PKCS#11 secure module (SoftHSM2 or an HSM)")
    ksub = k.add_subparsers(dest="keys_verb", metavar="VERB")
    ksub.required = True

    i = ksub.add_parser("init", help="make a token in a free slot: SO PIN from $%s, user PIN from $%s (or prompts)"
                                     % (_settings.ENV_SO_PIN, _settings.ENV_PIN))
    add_module_options(i, key=False)
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_init)

    m = ksub.add_parser("import", help="import the utility's 160-bit vending key, once, from stdin (40 hex digits) "
                                       "or a hidden prompt; it can never be read back out")
    add_module_options(m, key=False)
    m.add_argument("--label", help="the key's label (default $%s, else %r)" % (_settings.ENV_KEY, _settings.DEFAULT_KEY))
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=cmd_import)

    ls = ksub.add_parser("list", help="the module's tokens, and the chosen token's keys with their check values")
    add_module_options(ls, key=False)
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=cmd_list)


def cmd_init(args):
    s = settings_from(args)
    label = args.token or s.token
    so_pin = _settings.pin(s, so=True, confirm=True)
    user_pin = _settings.pin(s, confirm=True)
    with Module(s) as mod:
        slot = mod.init_token(label, so_pin, user_pin)
    out = {"module": s.module, "token": label, "slot": slot}
    if args.json:
        emit(out, True)
    else:
        sys.stdout.write(f"token {label!r} made in slot {slot} of {s.module}\n"
                         f"next: meterkit keys import --token {label}  (the vending key on stdin)\n")
    return 0


def _read_key():
    from host_tools.keys.vendingkey import parse_vending_key_hex
    if sys.stdin is None:
        raise UsageError("no vending key on stdin", hint="pipe the 40 hex digits in, or run on a terminal to be asked")
    if sys.stdin.isatty():
        import getpass
        text = getpass.getpass("vending key (40 hex digits, not shown): ")
    else:
        text = sys.stdin.readline()
    if not text.strip():
        raise UsageError("no vending key on stdin", hint="e.g. meterkit keys import < /dev/stdin, typing the 40 hex "
                                                         "digits; never on the command line")
    return parse_vending_key_hex(text)


def cmd_import(args):
    from host_tools.keys import vendingkey as vk
    s = settings_from(args)
    label = s.key
    key = bytearray(_read_key())              # checked before the module is touched
    pin = _settings.pin(s)
    try:
        with Module(s) as mod:
            session = mod.open(mod.slot(), pin, rw=True)
            try:
                if session.find_secret(label) is not None:
                    raise UsageError(f"{s.describe()} already holds a key labelled {label!r}; a key is imported once",
                                     hint="keys are never replaced in place: give a new --label for a new key "
                                          "(and point the tools at it with $METERKIT_HSM_KEY)")
                want = vk.software_check_value(key)
                for other in session.secret_keys():
                    if other["sign"] and _kcv(session, other["handle"]) == want:
                        raise UsageError(f"this vending key is already in {s.describe()} as {other['label']!r}; "
                                         "a key is imported once", hint="point the tools at that label "
                                                                       "($METERKIT_HSM_KEY or --key-label)")
                handle = session.import_secret(label, vk.stored_form(key))
                got = vk.check_value(session.hmac_sha256(handle, vk.KCV_MESSAGE))
                if got != want:
                    session.destroy(handle)
                    raise UsageError(f"the module's HMAC of the imported key differs from the key's own "
                                     f"(check value {got}, expected {want}); the key was removed again",
                                     hint="this module does not treat a zero-padded HMAC key as RFC 2104 does")
            finally:
                session.close()
    finally:
        for i in range(len(key)):           # best effort: Python may hold other copies until they are freed
            key[i] = 0
    out = {"module": s.module, "token": s.token if s.slot is None else None, "slot": s.slot, "label": label,
           "check_value": got, "sensitive": True, "extractable": False}
    if args.json:
        emit(out, True)
    else:
        sys.stdout.write(f"vending key {label!r} imported into {s.describe()} (check value {got}); "
                         "it is sensitive and cannot be extracted\n")
    return 0


def _kcv(session, handle):
    """A key's check value computed in the module, or None for a key it will not HMAC with."""
    from host_tools.errors import MeterkitError
    from host_tools.keys import vendingkey as vk
    try:
        return vk.check_value(session.hmac_sha256(handle, vk.KCV_MESSAGE))
    except MeterkitError:
        return None


def cmd_list(args):
    from host_tools.keys import vendingkey as vk
    s = settings_from(args)
    with Module(s) as mod:
        tokens = mod.tokens()
        chosen = [t for t in tokens if (t["slot"] == s.slot if s.slot is not None else
                                        t["initialized"] and t["label"] == s.token)]
        keys = None
        if chosen:
            session = mod.open(mod.slot(), _settings.pin(s))
            try:
                keys = session.secret_keys()
                for k in keys:
                    h = k.pop("handle")
                    k["check_value"] = _kcv(session, h) if k["sign"] else None
            finally:
                session.close()
    out = {"module": s.module, "tokens": tokens, "token": chosen[0]["label"] if chosen else None,
           "slot": chosen[0]["slot"] if chosen else None, "keys": keys}
    if args.json:
        emit(out, True)
        return 0 if chosen else 1
    w = sys.stdout.write
    w(f"module {s.module}\n")
    for t in tokens:
        mark = "*" if chosen and t["slot"] == chosen[0]["slot"] else " "
        state = "initialised" if t["initialized"] else "free"
        w(f" {mark} slot {t['slot']:<12d} {t['label'] or '-':<20s} {state:<11s} {t['manufacturer']} {t['model']} "
          f"serial {t['serial']}\n")
    if not chosen:
        w(f"no token {'in slot %d' % s.slot if s.slot is not None else 'labelled %r' % s.token}: "
          "make one with `meterkit keys init`\n")
        return 1
    if not keys:
        w(f"token {chosen[0]['label']!r} holds no secret keys: `meterkit keys import`\n")
    for k in keys or []:
        prot = ", ".join(p for p, on in (("sensitive", k["sensitive"]), ("not extractable", not k["extractable"]),
                                          ("extractable", k["extractable"]), ("sign", k["sign"])) if on)
        w(f"   key {k['label']:<16s} {k['type']} {k['bits']} bits  {prot}  check value {k['check_value'] or '-'}\n")
    return 0
