"""Secure boot v2 (RSA-3072, ESP32 silicon revision 3 and later) with esptool's own `espsecure` as a
library: the line signs the bootloader and the app (`sign-data --version 2`, a 4 KB signature sector
appended after the image padded to a 4 KB boundary) and burns the public key's digest into BLOCK2;
the simulated chip verifies both signature blocks against that digest, as the ROM (bootloader) and
the bootloader (app) do.

The private key is read from its PEM file for signing and never kept, printed or logged; only the
SHA-256 digest of the public key (what BLOCK2 holds, public by design) leaves this module."""
import io
import os
import struct
import tempfile
import threading

import espsecure
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from esp_pylib.logger import EspLog
from esptool.util import FatalError

from host_tools.errors import UsageError
from host_tools.keyfile import read_private_key
from host_tools.flash.progress import ThreadRoutedLog

SECTOR = espsecure.SECTOR_SIZE          # the signature sector starts on a 4 KB boundary
SIG_BLOCK = espsecure.SIG_BLOCK_SIZE    # 1216 bytes; ESP32 v3 uses only the first block
_RSA_N = slice(36, 36 + 384)            # the modulus, little-endian, inside a signature block
_RSA_E = slice(36 + 384, 36 + 388)

_quiet_lock = threading.Lock()


class SignatureError(ValueError):
    """An image the ROM or the bootloader would not start under secure boot v2; one line."""


class quiet_espsecure:
    """espsecure reports on stdout through esptool's global logger: while it runs, route that log to
    this thread's board log (or drop it), so nothing lands on the CLI's JSON output."""

    def __enter__(self):
        _quiet_lock.acquire()
        self._previous = EspLog.instance
        if not isinstance(self._previous, ThreadRoutedLog):
            EspLog.set_logger(ThreadRoutedLog())
        return self

    def __exit__(self, *exc):
        EspLog.instance = self._previous
        _quiet_lock.release()


class _Named(io.BytesIO):
    def __init__(self, data=b"", name="buffer"):
        super().__init__(data)
        self.name = name


def read_signing_key(path):
    """The PEM bytes of an RSA-3072 secure boot v2 signing key; UsageError (never quoting the file)
    for anything else."""
    hint = "make one with `espsecure generate-signing-key --version 2 --scheme rsa3072 KEY.pem`"
    pem, key = read_private_key(path, "secure boot signing key", hint)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 3072:
        kind = f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPrivateKey) else type(key).__name__
        raise UsageError(f"{path} is a {kind} key; secure boot v2 on the ESP32 needs RSA-3072", hint=hint)
    return pem


def generate_signing_key(path):
    """A new RSA-3072 signing key at `path` (espsecure's own generator); refuses to overwrite."""
    if os.path.exists(path):
        raise UsageError(f"{path} exists", hint="a signing key is never overwritten: choose another path")
    with quiet_espsecure():
        try:
            espsecure.generate_signing_key("2", "rsa3072", str(path))
        except FatalError as e:
            raise UsageError(f"espsecure could not make the key: {str(e).splitlines()[0]}") from None
    os.chmod(path, 0o600)
    return key_digest(read_signing_key(path))


def public_pem(pem):
    """The public half of a signing key, as PEM: what the per-board steps (the eFuse digest, the record)
    get, so they never hold the private key (and loading it is cheap: no private-key validation)."""
    if b"PUBLIC KEY" in pem:
        return pem
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_digest(pem):
    """The 32-byte SHA-256 digest of the public key, as `espefuse burn-key-digest` burns it into BLOCK2
    (private or public PEM)."""
    with quiet_espsecure():
        return espsecure._digest_sbv2_public_key(_Named(pem, "key.pem"))


def sign(image, pem):
    """`image` (bytes) signed with `pem`: padded to a 4 KB boundary plus the signature sector, exactly
    as `espsecure sign-data --version 2` writes it."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "signed.bin")
        with quiet_espsecure():
            try:
                espsecure.sign_data("2", [_Named(pem, "key.pem")], out, False, False, None, [], [],
                                    _Named(bytes(image), "image.bin"))
            except FatalError as e:
                raise UsageError(f"espsecure could not sign the image: {str(e).splitlines()[0]}") from None
        with open(out, "rb") as f:
            return f.read()


def signed_length(image_len):
    """Where the signature sector starts for an image of `image_len` bytes (checksum and digest
    included), and where it ends."""
    start = -(-image_len // SECTOR) * SECTOR
    return start, start + SECTOR


def _public_pem_from_block(block):
    n = int.from_bytes(block[_RSA_N], "little")
    (e,) = struct.unpack("<I", block[_RSA_E])
    pub = rsa.RSAPublicNumbers(e, n).public_key()
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify(region, image_len, digest, what):
    """Check an image as the ESP32 v3 ROM / bootloader does under secure boot v2: `region` is the
    flash from the image's first byte, `image_len` its length as parsed (with checksum and SHA-256).
    The signature sector follows at the next 4 KB boundary; its first block must carry a public key
    whose digest is `digest` (BLOCK2) and an RSA-PSS signature over everything before the sector.
    Returns None; raises SignatureError naming the problem."""
    start, end = signed_length(image_len)
    if len(region) < end:
        raise SignatureError(f"{what}: no signature sector at +{start:#x} (the image ends the region)")
    with quiet_espsecure():
        block = espsecure.validate_signature_block(bytes(region[:end]), 0)
    if block is None or block[1] != espsecure.SIG_BLOCK_VERSION_RSA:
        raise SignatureError(f"{what}: no secure boot v2 signature block after the image: an unsigned image")
    pem = _public_pem_from_block(block)
    if key_digest(pem) != bytes(digest):
        raise SignatureError(f"{what}: signed with a key whose digest is not the one burnt in BLOCK2")
    with quiet_espsecure():
        try:
            espsecure.verify_signature_v2(False, None, _Named(pem, "pub.pem"), _Named(bytes(region[:end]), "img"))
        except (FatalError, ValueError) as e:
            why = ("the image was changed after it was signed" if "digest does not match" in str(e)
                   else "the RSA-PSS signature is not the key's")
            raise SignatureError(f"{what}: the signature does not verify: {why}") from None


def has_signature(region, image_len):
    """True when a valid-looking signature block follows the image (any key)."""
    start, end = signed_length(image_len)
    if len(region) < end:
        return False
    with quiet_espsecure():
        return espsecure.validate_signature_block(bytes(region[:end]), 0) is not None


def _sign_or_keep(region, image_len, pem, digest, what):
    """The image `region[:image_len]` with its signature sector: signed now, or kept as it is when it
    already carries a signature by this key. An image signed by another key is refused."""
    if has_signature(region, image_len):
        try:
            verify(region, image_len, digest, what)
        except SignatureError as e:
            raise UsageError(f"firmware refused: {e}; it is already signed and would not boot on this line's "
                             "boards", hint="give the unsigned build (CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=n)") from None
        return bytes(region[:signed_length(image_len)[1]])
    return sign(region[:image_len], pem)


def sign_firmware(checked, pem):
    """A checked combined image (host_tools.flash.espimage.CheckedImage) with its bootloader and its
    app each signed (or already signed by this key): the bootloader and its signature sector must still
    end before the partition table at 0x8000, the app and its sector fit its partition. Returns the new
    file's bytes; raises UsageError before any board is touched."""
    from host_tools.flash import espimage, parttable
    data = checked.data
    digest = key_digest(pem)
    _boot, boot_len = espimage._load(data, "bootloader at 0x1000", "esp32")
    table_at = parttable.TABLE_OFFSET - espimage.BOOTLOADER_OFFSET
    boot = _sign_or_keep(data[:table_at], boot_len, pem, digest, "bootloader at 0x1000")
    if len(boot) > table_at:
        raise UsageError(f"refusing to sign: the bootloader is {boot_len} bytes, signed {len(boot)} (padded to 4 KB "
                         f"plus a 4 KB signature sector), and would run into the partition table at 0x8000",
                         hint="build the bootloader for size (CONFIG_BOOTLOADER_LOG_LEVEL_NONE, "
                              "CONFIG_COMPILER_OPTIMIZATION_SIZE): it may be at most 24 KB")
    app_at = espimage.APP_OFFSET - espimage.BOOTLOADER_OFFSET
    part = checked.app_partition
    app = _sign_or_keep(data[app_at:app_at + part.size], checked.app_size, pem, digest, f"app at {espimage.APP_OFFSET:#x}")
    if len(app) > part.size:
        raise UsageError(f"refusing to sign: the app signed is {len(app)} bytes and its partition {part.name!r} holds "
                         f"{part.size}", hint="build the firmware for size")
    out = bytearray(data[:app_at])
    out[:table_at] = boot + b"\xff" * (table_at - len(boot))
    return bytes(out) + app
