"""Message authentication for the meter protocol: HMAC-SHA-256 as hex text, and the constant-time
compare. Both come from the project's one implementation (util/hmac.py)."""
import binascii

from util.hmac import equal, hmac_sha256  # noqa: F401 (equal: the protocol's compare)


def hmac_hex(key, msg):
    """The HMAC-SHA-256 of `msg` under `key` as lower-case hex text, as it travels in envelopes
    and SMS commands."""
    return binascii.hexlify(hmac_sha256(key, msg)).decode()

