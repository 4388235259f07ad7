"""The update package (docs/ota.md): a signed header, then the app image for an OTA slot.

    offset 0     8 bytes   magic b"MKOTA\\x01\\r\\n"
    8            u32 LE    H, the header's length
    12           H bytes   header: UTF-8 JSON, keys sorted (board, version, min_version, size, sha256, ...)
    12+H         u16 LE    S, the signature's length (256 for RSA-2048)
    14+H         S bytes   RSA PKCS#1 v1.5 signature over SHA-256(header bytes)
    14+H+S       size      the app image (ESP image format, what goes into ota_0 / ota_1)

The signature covers the header, and the header the image's SHA-256, so a meter checks an offer (the
first 14+H+S bytes) before it downloads anything, and the image once all of it is in its slot."""
import hashlib
import json
import struct
import time
from pathlib import Path

from host_tools.errors import UsageError
from host_tools.flash import espimage, parttable
from host_tools.ota import codes, keys

MAGIC = b"MKOTA\x01\r\n"
FORMAT = 1
MAX_HEADER = 2048
CHUNK = 1024        # bytes of image per download chunk (the meter may ask for less)


class Refused(UsageError):
    """A package the tool (and a meter) refuses; `code` is the result code (host_tools.ota.codes)."""

    def __init__(self, code, message, hint=None):
        super().__init__(message, hint)
        self.code = code

    def as_dict(self):
        d = super().as_dict()
        d["result"] = self.code
        return d


def parse_version(text, what="version"):
    """'MAJOR.MINOR.PATCH' -> (int, int, int); anything else is refused."""
    parts = str(text).split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise UsageError(f"{what} {text!r} is not MAJOR.MINOR.PATCH", hint="e.g. 0.2.0")
    return tuple(int(p) for p in parts)


def slot_size(board):
    """The size of the board's OTA app slots (ota_0 and ota_1 are equal), from its partitions.csv."""
    from host_tools.flash.layout import board_info
    from host_tools.paths import board_dir
    info = board_info(board)
    name = info.get("name", board)
    table = info.get("flash", {}).get("partitions")
    if not table:
        raise UsageError(f"board {name!r} has no partition table in board.json",
                         hint="give the board an OTA layout (ota_0, ota_1, otadata) in partitions.csv")
    entries = parttable.from_csv((board_dir(name) / table).read_text())
    slots = [e for e in entries if e[1] == parttable.TYPE_APP and parttable.SUBTYPE_OTA_0 <= e[2] < 0x20]
    if len(slots) < 2 or not any(e[1] == parttable.TYPE_DATA and e[2] == parttable.SUBTYPE_OTADATA for e in entries):
        raise UsageError(f"board {name!r} has no OTA layout (two OTA app slots and otadata)",
                         hint="use a partitions.csv with ota_0, ota_1 and otadata")
    return min(e[4] for e in slots)


def _with_signature(data, n):
    """The image's n bytes, plus its secure boot v2 signature sector when one follows (a meter with secure
    boot starts only a signed image, so the sector travels in the package)."""
    from host_tools.flash import secureboot
    if secureboot.has_signature(data, n):
        return data[:secureboot.signed_length(n)[1]]
    return data[:n]


def app_image_from(data):
    """The app image out of a firmware file: a combined image (bootloader, table, app at 0x10000) or a
    bare app image, with its secure boot v2 signature sector if it has one. Checked as the bootloader
    would (magic, chip, checksum, SHA-256)."""
    data = bytes(data)
    try:
        checked = espimage.check_firmware(data)
        start = espimage.APP_OFFSET - espimage.BOOTLOADER_OFFSET
        return _with_signature(data[start:], checked.app_size)
    except espimage.ImageError as combined_err:
        try:
            _img, n = espimage._load(data, "app image", "esp32")
        except espimage.ImageError as e:
            raise Refused(codes.BAD_IMAGE, f"the firmware is neither a combined image ({combined_err}) nor an app "
                          f"image ({e})", hint="give the firmware .bin for an ESP32") from None
        return _with_signature(data, n)


def sign_for_secure_boot(image, key_path):
    """The app image signed for meters with secure boot v2 (espsecure sign-data --version 2 with the
    line's RSA-3072 key); an image already signed by that key is kept, by another key refused."""
    from host_tools.flash import secureboot
    pem = secureboot.read_signing_key(key_path)
    _img, n = espimage._load(image, "app image", "esp32")
    if secureboot.has_signature(image, n):
        try:
            secureboot.verify(image, n, secureboot.key_digest(pem), "app image")
        except secureboot.SignatureError as e:
            raise Refused(codes.BAD_IMAGE, f"{e}: it would not boot on meters with this key",
                          hint="give the unsigned image") from None
        return image[:secureboot.signed_length(n)[1]]
    return secureboot.sign(image[:n], pem)


def build(image, board, version, private_key, min_version="0.0.0", anti_rollback=None, slot=None, created=None):
    """Bytes of a signed package for `image` (app image bytes)."""
    parse_version(version)
    parse_version(min_version, "min-version")
    if anti_rollback is not None:
        parse_version(anti_rollback, "anti-rollback")
        if parse_version(anti_rollback) > parse_version(version):
            raise UsageError(f"anti-rollback {anti_rollback} is above the package's own version {version}",
                             hint="a package cannot forbid itself")
    slot = slot or slot_size(board)
    if len(image) > slot:
        raise Refused(codes.TOO_BIG, f"the image is {len(image)} bytes; the OTA slot of board {board!r} holds {slot}",
                      hint="build the firmware for size, or use a board with larger slots")
    pub = private_key.public_key()
    header = {"format": FORMAT, "board": board, "version": version, "min_version": min_version,
              "anti_rollback": anti_rollback, "size": len(image), "sha256": hashlib.sha256(image).hexdigest(),
              "slot_size": slot, "chunk": CHUNK, "scheme": keys.SCHEME, "key_id": keys.key_id(pub),
              "created": int(created if created is not None else time.time())}
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    sig = keys.sign(private_key, hb)
    return MAGIC + struct.pack("<I", len(hb)) + hb + struct.pack("<H", len(sig)) + sig + image


class Package:
    """A parsed package: header (dict), header bytes, signature, image; `offer` is what a meter is sent."""

    def __init__(self, header, header_bytes, signature, image):
        self.header, self.header_bytes, self.signature, self.image = header, header_bytes, signature, image

    @property
    def offer(self):
        """The signed head of the package (everything but the image)."""
        hb = self.header_bytes
        return MAGIC + struct.pack("<I", len(hb)) + hb + struct.pack("<H", len(self.signature)) + self.signature

    @property
    def version(self):
        return self.header["version"]


def parse(data):
    """Split a package; raises Refused(bad_package) for anything not in the format."""
    data = bytes(data)
    if data[:8] != MAGIC:
        raise Refused(codes.BAD_PACKAGE, "not an update package (no MKOTA magic)",
                      hint="make one with `meterkit ota pack`")
    if len(data) < 14:
        raise Refused(codes.BAD_PACKAGE, "the package ends inside its header")
    (hl,) = struct.unpack_from("<I", data, 8)
    if hl > MAX_HEADER or len(data) < 14 + hl:
        raise Refused(codes.BAD_PACKAGE, f"header length {hl} is impossible for a {len(data)}-byte package")
    hb = data[12:12 + hl]
    try:
        header = json.loads(hb)
    except ValueError:
        raise Refused(codes.BAD_PACKAGE, "the header is not JSON") from None
    (sl,) = struct.unpack_from("<H", data, 12 + hl)
    sig = data[14 + hl:14 + hl + sl]
    if len(sig) != sl:
        raise Refused(codes.BAD_PACKAGE, "the package ends inside its signature")
    need = ("format", "board", "version", "min_version", "size", "sha256", "slot_size", "key_id", "scheme")
    if not isinstance(header, dict) or any(k not in header for k in need) or header.get("format") != FORMAT:
        raise Refused(codes.BAD_PACKAGE, "the header lacks %s or is not format %d" % (", ".join(need), FORMAT))
    image = data[14 + hl + sl:]
    return Package(header, hb, sig, image)


def read(path):
    try:
        return parse(Path(path).read_bytes())
    except OSError as e:
        raise UsageError(f"cannot read package {path}: {e.strerror or e}", hint="give the .ota file `meterkit ota pack` wrote") from None


def check(pkg, trusted, board=None, running=None, anti_rollback=None, slot=None):
    """The checks a meter makes, in its order: signature by a trusted key, board, anti-rollback, the
    running version against min_version and against the package's own (already_installed), size
    against the slot, then the image's hash (a meter checks that last, once downloaded). `trusted` is a list of public keys. Raises Refused; returns a summary."""
    h = pkg.header
    signer = next((k for k in trusted if keys.key_id(k) == h["key_id"]), None)
    if signer is None:
        raise Refused(codes.BAD_SIGNATURE, f"signed by key {h['key_id']}, which is not trusted",
                      hint="inspect with --trust the public key of the manufacturer's signing key")
    if h["scheme"] != keys.SCHEME or not keys.verify(signer, pkg.signature, pkg.header_bytes):
        raise Refused(codes.BAD_SIGNATURE, f"the signature does not verify with key {h['key_id']}: the header was "
                      "changed or signed by another key", hint="ask the manufacturer for the package again")
    version = parse_version(h["version"])
    if board is not None and h["board"] != board:
        raise Refused(codes.WRONG_BOARD, f"the package is for board {h['board']!r}, not {board!r}",
                      hint="use the package built for this board")
    if anti_rollback is not None and version < parse_version(anti_rollback, "anti-rollback"):
        raise Refused(codes.DOWNGRADE, f"version {h['version']} is below the anti-rollback version {anti_rollback}",
                      hint="offer a version at or above it")
    if running is not None and parse_version(running, "running version") < parse_version(h["min_version"]):
        raise Refused(codes.TOO_OLD, f"the meter runs {running}; this package installs only over {h['min_version']} "
                      "or later", hint="update to an intermediate version first")
    if running is not None and parse_version(running, "running version") == version:
        raise Refused(codes.SAME_VERSION, f"the meter already runs {running}",
                      hint="offer it to meters on another version")
    limit = slot if slot is not None else h["slot_size"]
    if board is not None and slot is None:
        limit = slot_size(board)
    if h["size"] > limit:
        raise Refused(codes.TOO_BIG, f"the image is {h['size']} bytes; the OTA slot holds {limit}",
                      hint="build the firmware for size")
    if len(pkg.image) != h["size"] or hashlib.sha256(pkg.image).hexdigest() != h["sha256"]:
        raise Refused(codes.HASH_MISMATCH, f"the image is {len(pkg.image)} bytes and does not hash to the signed "
                      f"SHA-256 {h['sha256'][:16]}...: truncated or corrupted", hint="copy the package again")
    try:
        _img, n = espimage._load(pkg.image, "app image", "esp32")
    except espimage.ImageError as e:
        raise Refused(codes.BAD_IMAGE, f"the image is signed but not an app image a bootloader starts: {e}") from None
    from host_tools.flash import secureboot
    out = dict(h)
    out.update(result=codes.ACCEPTED, signature="valid", bytes=len(pkg.image),
               secure_boot_signed=secureboot.has_signature(pkg.image, n))
    return out
