"""Build STS 20-digit tokens (EA11): amount encoding, TIDs from dates, CRC, MISTY1 and the class-bit
transposition. The CRC and the cipher are the firmware's own (one implementation on both sides)."""
import datetime
import secrets
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from host_tools.errors import UsageError
from host_tools.fwimport import firmware_module
from host_tools.vend.dkga04 import BASE_DATES

misty1 = firmware_module("tokens.misty1")
sts = firmware_module("tokens.sts")

TID_MAX = (1 << 24) - 1


# How each token unit is written for people: (steps per unit, unit name). Limits are said in these.
UNITS = {"kwh": (10, "kWh"), "currency": (100000, "currency units"), "w": (1, "W"), "steps": (1, "steps")}


def unit_text(steps, unit="kwh"):
    """'5 kWh', '12.5 kWh', '25.5 currency units' for an amount in the token's integer steps."""
    per, name = UNITS[unit]
    v = Decimal(int(steps)) / per
    return "%s %s" % (format(v.normalize(), "f"), name)


def encode_amount(value, unit="kwh"):
    """Smallest exponent that holds `value` (integer steps of the token's unit: 0.1 kWh, 0.00001
    currency, 1 W), mantissa rounded up. Out of range is refused in that unit."""
    value = int(value)
    if value < 0 or value > sts.AMOUNT_MAX:
        raise UsageError(f"amount {unit_text(value, unit)} outside 0..{unit_text(sts.AMOUNT_MAX, unit)}",
                         hint=f"the largest STS amount is {unit_text(sts.AMOUNT_MAX, unit)}")
    for e in range(4):
        scale = sts.AMOUNT_SCALE[e]
        if value <= 16383 * scale + sts.AMOUNT_OFFSET[e]:
            m = max(0, -(-(value - sts.AMOUNT_OFFSET[e]) // scale))
            return (e << 14) | m
    raise AssertionError("unreachable")


def _units(text, per_unit, what, example):
    # A decimal quantity in integer steps of 1/per_unit, rounded up (the customer's favour).
    try:
        d = Decimal(str(text).strip())
    except InvalidOperation:
        raise UsageError(f"{what} {text!r} is not a number", hint=f"e.g. {example}") from None
    if not d.is_finite() or d <= 0:   # finite first: comparing a NaN raises InvalidOperation
        raise UsageError(f"{what} {text} is not a positive amount", hint=f"e.g. {example}; a token of nothing "
                                                                         "would spend a TID and add nothing")
    if d.adjusted() > 12:    # checked before the exponent is expanded: 1e999999999 would not fit in memory
        shown = str(text).strip()
        shown = shown if len(shown) <= 16 else shown[:13] + "..."
        raise UsageError(f"{what} {shown!r} is far beyond any token", hint=f"e.g. {example}")
    return int((d * per_unit).to_integral_value(rounding=ROUND_CEILING))


def tenths(text, what="kWh"):
    """A decimal quantity as integer tenths (0.1 kWh), rounded up."""
    return _units(text, 10, what, "12.5")


def currency_units(text):
    """A currency amount in 0.00001 units, rounded up."""
    return _units(text, 100000, "currency", "25.50")


def tid_from_time(at, base_date="14"):
    """Minutes since the base date for an ISO time (naive = UTC)."""
    if isinstance(at, str):
        try:
            at = datetime.datetime.fromisoformat(at)
        except ValueError:
            raise UsageError(f"time {at!r} is not ISO 8601", hint="e.g. 2025-03-01T13:00") from None
    if at.tzinfo is not None:
        at = at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    base = datetime.datetime(BASE_DATES[str(base_date)], 1, 1)
    minutes = int((at - base).total_seconds() // 60)
    check_tid(minutes, base_date)
    return minutes


def check_tid(tid, base_date=None):
    """Refuse a TID that no token can carry (before the base date, or beyond 24 bits)."""
    since = f" ({BASE_DATES[str(base_date)]}-01-01)" if base_date else ""
    if tid < 0:
        raise UsageError(f"TID {tid} is before the key's base date{since}",
                         hint="use a later time or the right --base-date")
    if tid > TID_MAX:
        which = f"base date {base_date}" if base_date else "base date's"
        raise UsageError(f"TID {tid} is beyond 24 bits (the {which} range has run out)",
                         hint="use base date 14 (a key change with rollover) or an earlier time")


def build(decoder_key, token_class, subclass, rnd, tid, field):
    """The 20-digit token and its fields (a dict) for one block."""
    if not 0 <= subclass <= 15 or not 0 <= rnd <= 15 or not 0 <= field <= 0xFFFF:
        raise UsageError("subclass/RND/field out of range", hint="subclass and RND 0..15, field 16 bits")
    check_tid(tid)
    w0 = (subclass << 12) | (rnd << 8) | (tid >> 16)
    w1 = tid & 0xFFFF
    w2 = field
    w3 = crc = sts.crc_field(token_class, w0, w1, w2)
    if token_class in (sts.CLASS_CREDIT, sts.CLASS_MANAGEMENT):
        w0, w1, w2, w3 = misty1.Misty1(decoder_key).encrypt_words(w0, w1, w2, w3)
    block = (w0 << 48) | (w1 << 32) | (w2 << 16) | w3
    moved = (block >> 27) & 3
    value = (block & ~(3 << 27)) | (token_class << 27) | (moved << 64)
    digits = "%020d" % value
    return {"token": digits, "class": token_class, "subclass": subclass, "rnd": rnd, "tid": tid,
            "field": field, "crc": crc}


def random_rnd():
    return secrets.randbelow(16)


def key_change_tokens(decoder_key, new_key, krn, kt, ti, ken=255, rollover=False):
    """The four key-section tokens (subclasses 3, 4, 8, 9), encrypted under the current key."""
    if len(new_key) != 16:
        raise UsageError("new key must be 32 hex digits (128 bits)", hint="the new decoder key")
    if not 1 <= krn <= 15 or not 0 <= kt <= 3 or not 0 <= ti <= 255 or not 0 <= ken <= 255:
        raise UsageError("key change identifiers out of range", hint="KRN 1..15, KT 0..3, TI 0..99, KEN 0..255")
    out = []
    for idx, sub in enumerate((3, 4, 8, 9)):
        k = int.from_bytes(new_key[4 * idx:4 * idx + 4], "big")
        if idx in (0, 2):
            rnd = ken >> 4
            hi = (krn << 4) | ((1 if rollover else 0) << 3) | kt
        else:
            rnd = ken & 0xF
            hi = ti
        out.append(build(decoder_key, sts.CLASS_MANAGEMENT, sub, rnd, (hi << 16) | (k >> 16), k & 0xFFFF))
    return out


def inspect(decoder_key, digits, base_date="14"):
    """Decode a token with the firmware's decoder; a dict of every field."""
    t = sts.decode(decoder_key, digits)
    d = {"token": digits, "class": t.token_class, "subclass": t.subclass, "kind": t.kind(),
         "rnd": t.rnd, "tid": t.tid, "field": t.field, "crc": t.crc, "crc_ok": t.crc_ok,
         "in_range": t.in_range}
    if t.token_class == sts.CLASS_CREDIT or (t.token_class == sts.CLASS_MANAGEMENT and t.subclass in (0, 6)):
        d["amount"] = t.amount()
    if t.token_class != sts.CLASS_TEST:
        start = datetime.datetime(BASE_DATES[str(base_date)], 1, 1)
        d["time"] = (start + datetime.timedelta(minutes=t.tid)).isoformat() + "Z"
        d["base_date"] = str(base_date)
    return d
