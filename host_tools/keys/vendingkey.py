"""The utility's vending key as a non-extractable secret in a PKCS#11 token, and DKGA04 inside it: the
decoder key of a meter is the first 16 bytes of HMAC-SHA-256 (CKM_SHA256_HMAC sign) over its KDF input.

The vending key is 160 bits; it is kept in the token zero-padded to 256 bits. That is the same HMAC
key (RFC 2104 pads any key shorter than SHA-256's 64-byte block with zeros), and SoftHSM, like many
HSMs, refuses HMAC-SHA-256 keys shorter than the hash. The padding, done once at import, and taking
the first 16 bytes of the MAC are the only DKGA04 steps outside the module."""
import hashlib
import hmac
import os
import threading

from host_tools.errors import UsageError
from host_tools.keys import settings as _settings
from host_tools.keys.module import Module
from host_tools.vend import dkga04

VENDING_KEY_BYTES = 20      # STS: the 160-bit vending key
STORED_BYTES = 32           # as held in the token (zero-padded, same HMAC)
KCV_MESSAGE = b"meterkit: vending key check value"

# Fields that held a vending key in plain text before it moved into the module.
PLAIN_KEY_FIELDS = ("vending_key_hex", "vending_key")
IMPORT_HINT = ("import it once into the secure module with `meterkit keys import` (the key on stdin, the PIN in "
               "$METERKIT_HSM_PIN); see README \"Vending keys in a secure module\"")


def parse_vending_key_hex(text):
    """The 20-byte vending key from 40 hex digits (spaces allowed), for `keys import` only."""
    digits = "".join(str(text).split())
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(key) != VENDING_KEY_BYTES:
        raise UsageError("the vending key must be 40 hex digits (160 bits)",
                         hint="give it on stdin as hex, e.g. from the key management centre's transfer")
    return key


def stored_form(key):
    """The value the token holds: the key zero-padded to 32 bytes (an identical HMAC key)."""
    return bytes(key) + bytes(STORED_BYTES - len(key))


def check_value(mac):
    """A key check value shown to operators: 6 hex digits of the HMAC over a fixed text (reveals
    nothing of the key, tells two keys apart)."""
    return mac[:3].hex()


def software_check_value(key):
    """The check value of a key in hand (only at import, to prove the module computes the same HMAC)."""
    return check_value(hmac.new(bytes(key), KCV_MESSAGE, hashlib.sha256).digest())


class VendingKey:
    """A logged-in session on the token and the vending key's handle; DKGA04 runs in the token."""

    def __init__(self, settings, pin=None):
        self.settings = settings
        self.module = Module(settings)
        try:
            slot = self.module.slot()
            self.session = self.module.open(slot, pin if pin is not None else _settings.pin(settings))
            try:
                self.handle = self.session.find_secret(settings.key)
                if self.handle is None:
                    raise UsageError(f"no vending key labelled {settings.key!r} in {settings.describe()}",
                                     hint=IMPORT_HINT + "; or choose its label with $METERKIT_HSM_KEY")
            except BaseException:
                self.session.close()
                raise
        except BaseException:
            self.module.close()
            raise
        self._lock = threading.Lock()

    def decoder_key(self, sgc, ti, krn, kt, pan, base_date="14", ea="11"):
        """The 16-byte MISTY1 decoder key of one meter (its identifiers are checked first)."""
        msg = dkga04.kdf_message(sgc, ti, krn, kt, pan, base_date, ea)
        return self.session.hmac_sha256(self.handle, msg)[:16]

    def check_value(self):
        return check_value(self.session.hmac_sha256(self.handle, KCV_MESSAGE))

    def describe(self):
        return {"module": self.settings.module, "token": self.settings.token, "slot": self.settings.slot,
                "key": self.settings.key}

    def close(self):
        if self.session is not None:
            self.session.close()
            self.module.close()
            self.session = None


_open = {}
_open_lock = threading.Lock()


def open_vending_key(settings=None, section=None):
    """The vending key for `settings` (default: environment and `section`, a keystore's `hsm`). One
    session per process and key, kept open: logging in costs the module a key derivation each time."""
    settings = settings or _settings.resolve(section=section)
    pin = _settings.pin(settings)
    ident = (os.getpid(), settings.module, settings.token, settings.slot, settings.key,
             hashlib.sha256(pin.encode()).hexdigest())
    with _open_lock:
        vk = _open.get(ident)
        if vk is None or vk.session is None:
            vk = _open[ident] = VendingKey(settings, pin)
    return vk


def refuse_plain_key(obj, where):
    """UsageError if a file still holds the vending key in plain text."""
    for field in PLAIN_KEY_FIELDS:
        if isinstance(obj, dict) and field in obj:
            raise UsageError(f"{where} holds the vending key in plain text ({field}); vending keys now live only "
                             "in the secure module", hint=IMPORT_HINT + ", then delete %s from the file" % field)


def from_keystore(obj, where):
    """The vending key a keystore file points at: its optional `hsm` section, the environment, defaults."""
    refuse_plain_key(obj, where)
    section = _settings.check_section(obj.get("hsm") if isinstance(obj, dict) else None, where)
    return open_vending_key(section=section)


def close_all():
    """Close every session this process keeps (before the token they are on goes away)."""
    with _open_lock:
        for vk in _open.values():
            vk.close()
        _open.clear()
