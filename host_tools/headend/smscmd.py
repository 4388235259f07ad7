"""Signed utility commands by SMS (docs/protocol.md, "A utility command"): the text an operator sends
from one of the meter's registered numbers when the data link is down, e.g. `CMD 3 relay_open 5c1e9a07`.

Each meter has its own SMS command counter in the head-end database (the meter accepts only a seq
above the last it accepted); the seq is taken and the text recorded in one transaction, so two
operators never sign the same seq. The MAC is the first 8 hex digits of HMAC-SHA-256 with the meter's
message key over `<meter id>\\n<seq>\\n<name> [key=value ...]`."""
import re
import time

from host_tools.errors import UsageError
from host_tools.headend import envelope

# The commands a meter runs from an SMS (fw_offer and set_config need the data link).
SMS_COMMANDS = ("relay_open", "relay_close", "set_time", "get_readings", "get_statement", "clear_tamper")
_KEY = re.compile(r"^[a-z_][a-z0-9_]{0,15}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,24}$")
_MAX_SEQ = 999999999       # the meter reads at most 9 digits
_MAX_TEXT = 160            # one GSM 7-bit SMS


def parse_args(items):
    """["k=v", ...] -> [(k, v)], checked so the meter parses exactly what was signed."""
    out = []
    for it in items:
        if "=" not in it:
            raise UsageError(f"bad argument {it!r}", hint="arguments are key=value, e.g. unix=1767571200")
        k, v = it.split("=", 1)
        if not _KEY.match(k) or not _VALUE.match(v):
            raise UsageError(f"bad argument {it!r}",
                             hint="key: lower case letters, digits, _; value: letters, digits and _.:+- (no spaces)")
        out.append((k, v))
    return out


def body(cmd, args):
    return " ".join([cmd] + [f"{k}={v}" for k, v in args])


def sign(key, meter_id, seq, text_body):
    """The full SMS text for a body and seq."""
    return f"CMD {seq} {text_body} {envelope.sms_mac8(key, meter_id, seq, text_body)}"


def make(store, meter_id, cmd, args=()):
    """Take the meter's next SMS seq, sign and record the text; returns {"meter", "seq", "text"}."""
    if cmd not in SMS_COMMANDS:
        raise UsageError(f"{cmd!r} cannot be sent by SMS", hint="one of: " + ", ".join(SMS_COMMANDS))
    pairs = parse_args(args)
    from host_tools.headend.commandargs import check
    check(cmd, dict(pairs))              # malformed arguments: refused before a seq is taken
    meter = store.meter(meter_id)
    key = bytes.fromhex(meter["message_key_hex"])
    b = body(cmd, pairs)
    with store.tx() as db:
        row = db.execute("SELECT MAX(seq) FROM sms_commands WHERE meter_id=?", (meter_id,)).fetchone()
        seq = (row[0] or 0) + 1
        if seq > _MAX_SEQ:
            raise UsageError(f"meter {meter_id} has used every SMS command number")
        text = sign(key, meter_id, seq, b)
        if len(text) > _MAX_TEXT:
            raise UsageError(f"the command is {len(text)} characters; one SMS holds {_MAX_TEXT}",
                             hint="send fewer arguments, or use the data link")
        db.execute("INSERT INTO sms_commands (meter_id, seq, text, created) VALUES (?,?,?,?)",
                   (meter_id, seq, text, time.time()))
    store.log(meter_id, "headend", "sms_command", {"seq": seq, "cmd": cmd})
    return {"meter": meter_id, "seq": seq, "text": text}
