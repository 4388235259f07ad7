"""RSA PKCS#1 v1.5 signature check with SHA-256 (RFC 8017, 8.2.2): the update key's public numbers only.
With e = 65537 the check is one modular exponentiation of 17 multiplications in MicroPython's big ints."""
import hashlib

# DER DigestInfo prefix for SHA-256 (RFC 8017, 9.2 note 1)
_SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


def verify(n, e, signature, message):
    """True when `signature` (bytes) is the PKCS#1 v1.5 SHA-256 signature of `message` under (n, e)."""
    k = (n.bit_length() + 7) // 8 if hasattr(n, "bit_length") else _octets(n)
    if len(signature) != k or k < 62:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    digest = hashlib.sha256(message).digest()
    pad = k - 3 - len(_SHA256_INFO) - 32
    return (em[:2] == b"\x00\x01" and em[2:2 + pad] == b"\xff" * pad and em[2 + pad] == 0
            and em[3 + pad:] == _SHA256_INFO + digest)


def _octets(n):
    # MicroPython's int may lack bit_length(): count bytes by shifting
    k = 0
    while n:
        n >>= 8
        k += 1
    return k
