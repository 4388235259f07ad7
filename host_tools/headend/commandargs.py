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


# name -> {argument: (converter, what it must be)}; every listed argument is required, no other allowed.
SCHEMA = {
    "relay_open": {}, "relay_close": {}, "get_readings": {}, "get_statement": {}, "clear_tamper": {},
    "set_time": {"unix": (_unix, "Unix seconds between 2020 and 2100, e.g. unix=1767571200")},
}


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
        if name not in args:
            raise UsageError(f"{cmd} needs {name}", hint=f"{name}: {what}")
        try:
            out[name] = conv(args[name])
        except (ValueError, TypeError):
            raise UsageError(f"{cmd}: {name}={args[name]!r} is not valid", hint=f"{name}: {what}") from None
    return out
