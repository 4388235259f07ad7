"""DKGA04: the STS decoder key from the utility's 160-bit vending key (HMAC-SHA-256 as a NIST SP 800-108
feedback-mode KDF, no IV, no counter, L = 128). Used at vending and at provisioning. This module checks
the meter's identifiers and builds the KDF input; the HMAC itself runs inside the secure module that
holds the vending key (host_tools.keys.vendingkey): no host code holds a vending key."""
from host_tools.errors import UsageError
from host_tools.fwimport import firmware_module

_fw = firmware_module("tokens.dkga04")  # the message layout lives with the firmware

BASE_DATES = {"93": 1993, "14": 2014, "35": 2035}
KEY_TYPES = {0: "DITK", 1: "DDTK", 2: "DUTK", 3: "DCTK"}


def luhn_check_digit(digits):
    """The Luhn check digit to append to `digits`."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def normalise_pan(pan):
    """18 digits with a valid Luhn check digit, or 17 digits (the check digit is appended)."""
    pan = str(pan).strip()
    if not pan.isdigit() or len(pan) not in (17, 18):
        raise UsageError(f"PAN {pan!r} must be 17 or 18 digits",
                         hint="give IIN + meter number (17 digits) or with its Luhn check digit (18)")
    if len(pan) == 17:
        return pan + luhn_check_digit(pan)
    if luhn_check_digit(pan[:17]) != pan[17]:
        raise UsageError(f"PAN {pan} fails its Luhn check (last digit should be {luhn_check_digit(pan[:17])})",
                         hint="check the meter number, or give the first 17 digits and let the tool add the check digit")
    return pan


def parse_hex_key(text, n, what, hint):
    """`n` bytes from hex text, or UsageError '<what> must be 2n hex digits (8n bits)'."""
    try:
        key = bytes.fromhex(text)
    except (ValueError, TypeError):
        key = b""
    if len(key) != n:
        raise UsageError(f"{what} must be {2 * n} hex digits ({8 * n} bits)", hint=hint)
    return key


def kdf_message(sgc, ti, krn, kt, pan, base_date="14", ea="11"):
    """The checked DKGA04 input for one meter (what the module signs); UsageError for a bad field."""
    sgc = str(sgc)
    if not sgc.isdigit() or len(sgc) > 6:
        raise UsageError(f"SGC {sgc!r} must be up to 6 digits", hint="supply group code, e.g. 123457")
    if not 0 <= int(ti) <= 99:
        raise UsageError(f"TI {ti} must be 0..99", hint="tariff index, 2 digits")
    if not 1 <= int(krn) <= 9:
        raise UsageError(f"KRN {krn} must be 1..9", hint="key revision number")
    if int(kt) not in KEY_TYPES:
        raise UsageError(f"KT {kt} must be 0..3", hint="0 DITK, 1 DDTK, 2 DUTK, 3 DCTK")
    if str(base_date) not in BASE_DATES:
        raise UsageError(f"base date {base_date!r} unknown", hint="93, 14 or 35")
    pan = normalise_pan(pan)
    return _fw.message(sgc, ti, krn, kt, pan, base_date, ea)
