"""Message authentication: HMAC-SHA-256 (RFC 2104 over `hashlib.sha256`: MicroPython has no `hmac`
module), as bytes and as the hex text that travels in envelopes and SMS commands, and a constant-time
compare. The project's one implementation: the protocol's envelopes, the service port's
challenge-response, the key check and the DKGA04 key derivation all use it."""
import binascii
import hashlib


def hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """True when a == b, taking the same time wherever they differ (only the length leaks), so a
    forger cannot learn a MAC byte by byte from response timing."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def hmac_hex(key, msg):
    """The HMAC-SHA-256 of `msg` under `key` as lower-case hex text."""
    return binascii.hexlify(hmac_sha256(key, msg)).decode()
