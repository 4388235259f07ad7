"""STS (IEC 62055-41, EA11) 20-digit token decoding: digits -> class, subclass, RND, TID, field, CRC.

Stable entry point: `sts.decode(decoder_key, digits)`. It decodes only; replay, key expiry and the
ledger sit above it (decoder.py). Digits are parsed into a preallocated 9-byte buffer with small-int
arithmetic, so a decode allocates almost nothing and never needs 64-bit integers.
"""
from micropython import const

from tokens.misty1 import Misty1

CLASS_CREDIT = const(0)
CLASS_TEST = const(1)
CLASS_MANAGEMENT = const(2)

# Management subclasses (class 2).
SET_MAX_POWER = const(0)
CLEAR_CREDIT = const(1)
SET_TARIFF = const(2)
KEY_SECTION_1 = const(3)
KEY_SECTION_2 = const(4)
CLEAR_TAMPER = const(5)
SET_PHASE_UNBALANCE = const(6)
KEY_SECTION_3 = const(8)
KEY_SECTION_4 = const(9)

CLASS_NAMES = ("credit", "test", "management", "reserved")
CREDIT_NAMES = ("electricity", "water", "gas", "time", "currency", "currency", "currency", "currency")
TEST_NAMES = ("meter_test", "display_test")
MANAGEMENT_NAMES = {
    0: "set_max_power", 1: "clear_credit", 2: "set_tariff", 3: "key_section_1", 4: "key_section_2",
    5: "clear_tamper", 6: "set_phase_unbalance", 8: "key_section_3", 9: "key_section_4",
}

# Amount decoding: value = m * 10**e + _AMOUNT_OFFSET[e] (in the subclass's unit, e.g. 0.1 kWh).
AMOUNT_OFFSET = (0, 16384, 180224, 1818624)
AMOUNT_SCALE = (1, 10, 100, 1000)
AMOUNT_MAX = 18201624  # e=3, m=16383: 1820162.4 kWh

_buf = bytearray(9)  # 72 bits: the 66-bit token value, big-endian


class Token:
    """A decoded (decrypted, not yet validated) token. `crc_ok` says whether its CRC matched;
    `in_range` is False for 20-digit values above 2**66 - 1 (never a valid token)."""

    def __init__(self, token_class, subclass, rnd, tid, field, crc, crc_ok, in_range=True):
        self.token_class = token_class
        self.subclass = subclass
        self.rnd = rnd
        self.tid = tid
        self.field = field
        self.crc = crc
        self.crc_ok = crc_ok
        self.in_range = in_range

    def kind(self):
        """A readable name for the class/subclass, e.g. 'credit/electricity'."""
        c = self.token_class
        s = self.subclass
        if c == CLASS_CREDIT:
            name = CREDIT_NAMES[s] if s < 8 else "reserved"
        elif c == CLASS_TEST:
            name = TEST_NAMES[s] if s < 2 else "reserved"
        elif c == CLASS_MANAGEMENT:
            name = MANAGEMENT_NAMES.get(s, "reserved")
        else:
            name = "reserved"
        return CLASS_NAMES[c] + "/" + name

    def amount(self):
        """The 16-bit field decoded as an STS amount (0.1-unit steps)."""
        return decode_amount(self.field)


def decode_amount(field):
    e = field >> 14
    return (field & 0x3FFF) * AMOUNT_SCALE[e] + AMOUNT_OFFSET[e]


def crc16(data):
    """CRC-16/ARC core: reflected polynomial 0xA001, initial 0xFFFF (as STS uses it)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


_crcbuf = bytearray(7)


def crc_field(token_class, w0, w1, w2):
    """The CRC field for class + the first three 16-bit words of the data block (the 50 bits
    class|subclass|RND|TID|field right-aligned in 7 bytes), bytes swapped as the token carries it."""
    b = _crcbuf
    b[0] = token_class & 3
    b[1] = w0 >> 8
    b[2] = w0 & 0xFF
    b[3] = w1 >> 8
    b[4] = w1 & 0xFF
    b[5] = w2 >> 8
    b[6] = w2 & 0xFF
    c = crc16(b)
    return ((c & 0xFF) << 8) | (c >> 8)


def _parse(digits):
    # Decimal string -> 72-bit big-endian in _buf, by multiply-by-10-and-add on bytes.
    if not isinstance(digits, str) or len(digits) != 20:
        raise ValueError("an STS token is 20 digits")
    b = _buf
    for i in range(9):
        b[i] = 0
    for ch in digits:
        d = ord(ch) - 48
        if d < 0 or d > 9:
            raise ValueError("an STS token is 20 digits")
        carry = d
        for i in range(8, -1, -1):
            v = b[i] * 10 + carry
            b[i] = v & 0xFF
            carry = v >> 8
    return b


def decode(decoder_key, digits):
    """Decode a 20-digit token with a 16-byte decoder key (or a prepared Misty1 object).

    Reverses the class-bit transposition, decrypts classes 0 and 2 (class 1 is clear) and checks
    the CRC. Raises ValueError if `digits` is not a 20-digit string."""
    b = _parse(digits)
    in_range = b[0] < 4
    # The class bits sit at token bits 28..27 (byte 5 of the 64-bit block, bits 4..3); the
    # ciphertext bits that were there moved to token bits 65..64 (low bits of byte 0).
    cls = (b[5] >> 3) & 3
    b5 = (b[5] & 0xE7) | ((b[0] & 3) << 3)
    w0 = (b[1] << 8) | b[2]
    w1 = (b[3] << 8) | b[4]
    w2 = (b5 << 8) | b[6]
    w3 = (b[7] << 8) | b[8]
    if cls == CLASS_CREDIT or cls == CLASS_MANAGEMENT:
        cipher = decoder_key if isinstance(decoder_key, Misty1) else Misty1(decoder_key)
        w0, w1, w2, w3 = cipher.decrypt_words(w0, w1, w2, w3)
    else:
        # Class 1 (and reserved 3) carry the block in clear, with its own bits 28..27 restored.
        pass
    crc_ok = in_range and crc_field(cls, w0, w1, w2) == w3
    return Token(cls, w0 >> 12, (w0 >> 8) & 0xF, ((w0 & 0xFF) << 16) | w1, w2, w3, crc_ok, in_range)
