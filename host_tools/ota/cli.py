"""`meterkit ota keygen|pack|inspect`: the manufacturer's signing key, signed update packages, and the
checks a meter makes on one (docs/ota.md)."""
import os
from pathlib import Path

from host_tools.cli import emit
from host_tools.errors import UsageError


def register(sub):
    p = sub.add_parser("ota", help="signed firmware update packages: keygen, pack, inspect")
    osub = p.add_subparsers(dest="ota_verb", metavar="OTAVERB")
    osub.required = True

    k = osub.add_parser("keygen", help="make the manufacturer's update-signing key (RSA-2048) and the meter's trust file")
    k.add_argument("--out", default="ota-signing-key.pem", help="private key file (default ota-signing-key.pem); "
                   "the public key and trust file are written beside it")
    k.add_argument("--force", action="store_true", help="replace an existing key")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_keygen)

    k = osub.add_parser("pack", help="sign an app image into an update package")
    k.add_argument("--firmware", required=True, help="the firmware .bin (combined image or app image)")
    k.add_argument("--version", required=True, help="this image's version, MAJOR.MINOR.PATCH")
    k.add_argument("--min-version", default="0.0.0", help="the oldest running version allowed to install it")
    k.add_argument("--anti-rollback", default=None, help="once this image is valid, refuse packages below this version")
    k.add_argument("--board", default="esp32_atm90e26", help="target board (default esp32_atm90e26)")
    k.add_argument("--key", required=True, help="the signing key (from `meterkit ota keygen`)")
    k.add_argument("--secure-boot-key", default=None, metavar="KEY.pem",
                   help="meters sealed with secure boot v2: sign the app image with the line's RSA-3072 key first "
                        "(espsecure sign-data --version 2), or their bootloader refuses it and falls back")
    k.add_argument("--out", required=True, help="package file to write")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_pack)

    k = osub.add_parser("inspect", help="show a package and make the meter's checks on it")
    k.add_argument("package")
    k.add_argument("--trust", action="append", default=[], help="a trusted public key (.pub.pem); repeat for "
                   "several (default: $METERKIT_OTA_TRUST)")
    k.add_argument("--board", help="the meter's board (default: do not check)")
    k.add_argument("--running", help="the meter's running version (checks min_version, and "
                   "already_installed when it is the package's)")
    k.add_argument("--anti-rollback", help="the meter's anti-rollback version (checks for a downgrade)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_inspect)


def cmd_keygen(args):
    from host_tools.ota import keys
    emit(keys.generate(args.out, force=args.force), args.json)
    return 0


def cmd_pack(args):
    from host_tools.ota import keys, package
    try:
        data = Path(args.firmware).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read firmware {args.firmware}: {e.strerror or e}", hint="give the firmware .bin") from None
    key = keys.load_private(args.key)
    image = package.app_image_from(data)
    if args.secure_boot_key:
        image = package.sign_for_secure_boot(image, args.secure_boot_key)
    blob = package.build(image, args.board, args.version, key, args.min_version, args.anti_rollback)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, out)                 # nothing half-written
    pkg = package.parse(blob)
    res = {k: pkg.header[k] for k in ("board", "version", "min_version", "anti_rollback", "size", "sha256",
                                      "slot_size", "key_id", "scheme")}
    res.update(out=str(out), bytes=len(blob), secure_boot_signed=bool(args.secure_boot_key))
    emit(res, args.json)
    return 0


def cmd_inspect(args):
    from host_tools.ota import keys, package
    trust = list(args.trust)
    if not trust and os.environ.get("METERKIT_OTA_TRUST"):
        trust = os.environ["METERKIT_OTA_TRUST"].split(os.pathsep)
    if not trust:
        raise UsageError("no trusted key to check the signature with",
                         hint="pass --trust ota-signing-key.pub.pem (or set METERKIT_OTA_TRUST)")
    pubs = [keys.load_public(t) for t in trust]
    pkg = package.read(args.package)
    res = package.check(pkg, pubs, board=args.board, running=args.running, anti_rollback=args.anti_rollback)
    res.pop("format", None)
    emit(res, args.json)
    return 0
