"""DKGA04 key derivation message, shared by the vending tools (which derive keys with CPython's hmac)
and the meter (a provisioning self-check: the key it was given matches its identity). The HMAC is the
project's one (comms/auth.py).

The message is a NIST SP 800-108 feedback-mode KDF input with no IV and no counter; each text field
is one length byte followed by its ASCII text. The decoder key is the first 16 bytes of the MAC.
"""
from comms.auth import hmac_sha256


def _field(text):
    b = text.encode()
    return bytes((len(b),)) + b


def message(sgc, ti, krn, kt, pan, base_date="14", ea="11"):
    """The KDF input: 0x04 | "04" | base date | EA | TI | 0x00 | 0x04 | SGC | KT | KRN | PAN | L=128."""
    label = b"\x04" + _field("04") + _field(str(base_date)) + _field(str(ea)) + _field("%02d" % int(ti))
    context = (b"\x04" + _field("%06d" % int(sgc)) + _field(str(int(kt))) + _field(str(int(krn)))
               + _field(str(pan)))
    return label + b"\x00" + context + b"\x00\x00\x00\x80"


def decoder_key(vending_key, sgc, ti, krn, kt, pan, base_date="14", ea="11"):
    """The 16-byte decoder key (inputs must already be valid: see host_tools.vend.dkga04)."""
    return hmac_sha256(vending_key, message(sgc, ti, krn, kt, pan, base_date, ea))[:16]
