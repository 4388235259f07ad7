"""The arguments each management command takes (docs/protocol.md), checked before a command is
signed and queued or texted: a malformed one is refused here, with nothing queued and no SMS
counter spent, rather than answered `bad_args` by the meter later."""
from host_tools.errors import UsageError

UNIX_MIN, UNIX_MAX = 1577836800, 4102444800      # 2020-01-01 .. 2100-01-01, as the meter accepts


def _unix(v):
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, str):
        if not v.isdigit():
            raise ValueError
        v = int(v)
    if not isinstance(v, int) or not UNIX_MIN <= v < UNIX_MAX:
        raise ValueError
    return v


def _int_in(lo, hi):
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v
    return conv


def _text_upto(n):
    def conv(v):
        if not isinstance(v, str) or not 0 < len(v) <= n:
            raise ValueError
        return v
    return conv


# name -> {argument: (converter, what it must be)}; every listed argument is required (unless OPTIONAL), no other allowed.
SCHEMA = {
    "relay_open": {}, "relay_close": {}, "get_readings": {}, "get_statement": {}, "clear_tamper": {},
    "set_time": {"unix": (_unix, "Unix seconds between 2020 and 2100, e.g. unix=1767571200")},
    "load_debt": {"amount": (_int_in(1, 100000000), "minor units of arrears, 1..100000000"),
                  "ref": (_text_upto(32), "the load's reference, 1..32 characters"),
                  "share_bp": (_int_in(1, 9000), "share of each top-up that recovers it, 1..9000 bp")},
}
OPTIONAL = {"load_debt": ("share_bp",)}     # may be left out (the meter's own share then)


def check(cmd, args):
    """The arguments as the meter must receive them; UsageError naming what is wrong. Commands not in
    SCHEMA (set_config: checked in full by the meter, all or nothing) pass unchanged."""
    spec = SCHEMA.get(cmd)
    if spec is None:
        return args
    args = dict(args or {})
    extra = sorted(set(args) - set(spec))
    if extra:
        raise UsageError(f"{cmd} takes no argument {', '.join(extra)}",
                         hint=(f"{cmd} takes " + ", ".join(spec)) if spec else f"{cmd} takes no arguments")
    out = {}
    for name, (conv, what) in spec.items():
        if name not in args and name in OPTIONAL.get(cmd, ()):
            continue
        if name not in args:
            raise UsageError(f"{cmd} needs {name}", hint=f"{name}: {what}")
        try:
            out[name] = conv(args[name])
        except (ValueError, TypeError):
            raise UsageError(f"{cmd}: {name}={args[name]!r} is not valid", hint=f"{name}: {what}") from None
    return out
