"""OpenPAYGO Token encoder (our own): the count moves on to the right parity (even ADD, odd SET /
disable / sync) and the chain is the firmware decoder's own, so both sides share one hash chain."""
from host_tools.errors import UsageError
from host_tools.fwimport import firmware_module

opaygo = firmware_module("tokens.opaygo")

KINDS = ("add", "set", "disable", "sync")


def next_count(count, kind):
    odd = count % 2
    if kind == "add":
        return count + (1 if odd else 2)
    return count + (2 if odd else 1)


def to_restricted(value, digits):
    """Write a token as keys 1-4 only (2 bits per digit)."""
    return "".join(str(((value >> (2 * (digits - 1 - i))) & 3) + 1) for i in range(digits))


def generate(key, starting_code, count, value=0, kind="add", extended=False, restricted=False):
    """(new_count, token string) for the device with this key and starting code."""
    if len(key) != 16:
        raise UsageError("OpenPAYGO key must be 32 hex digits", hint="the device's 128-bit secret key")
    if not 0 <= starting_code <= 999999999:
        raise UsageError(f"starting code {starting_code} must be 9 digits", hint="0..999999999")
    if kind not in KINDS:
        raise UsageError(f"unknown token kind {kind!r}", hint="add, set, disable or sync")
    if count < 0:
        raise UsageError("count must be >= 0", hint="the device's last count")
    if kind in ("disable", "sync"):
        if extended:
            raise UsageError("extended tokens have no disable/sync", hint="use a standard token")
        value = 998 if kind == "disable" else 999
    else:
        top = 999999 if extended else 995
        if not 0 <= value <= top:
            raise UsageError(f"value {value} outside 0..{top}", hint="use --extended for values above 995")
    mod = 1000000 if extended else 1000
    base = (starting_code % mod + value) % mod
    new = next_count(count, kind)
    code = opaygo.OpenPaygo(key, starting_code).code_at(base, new, extended)
    if restricted:
        token = to_restricted(code, 20 if extended else 15)
    else:
        token = ("%012d" if extended else "%09d") % code
    return new, token
