"""Message authentication for the meter protocol: HMAC-SHA-256 as hex text and a constant-time
compare, so a forger cannot learn a MAC byte by byte from response timing.

The HMAC itself is the project's one implementation (`tokens.dkga04.hmac_sha256`, RFC 2104 over
`hashlib.sha256`, because MicroPython has no `hmac` module)."""
import binascii
from tokens.dkga04 import hmac_sha256


def hmac_hex(key, msg):
    """The HMAC-SHA-256 of `msg` under `key` as lower-case hex text, as it travels in envelopes
    and SMS commands."""
    return binascii.hexlify(hmac_sha256(key, msg)).decode()


def equal(a, b):
    """True when a == b, taking the same time wherever they differ (only the length leaks)."""
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
