"""The meter <-> head-end message envelope (docs/protocol.md): one JSON object
`{"m": id, "s": seq, "p": inner JSON text, "h": hex HMAC-SHA-256}` authenticated over the exact bytes
`direction + "\\n" + m + "\\n" + str(s) + "\\n" + p`, direction `down` (head-end -> meter) or `up`
(meter -> head-end), so a message reflected back the other way never verifies. Shared by the
head-end and the fake meter so both check the same thing."""
import hashlib
import hmac
import json


class EnvelopeError(ValueError):
    """A payload that is not a well-formed envelope; `why` is the protocol's rejection reason."""

    def __init__(self, why, message):
        super().__init__(message)
        self.why = why


UP = "up"
DOWN = "down"
# Inner types by direction (docs/protocol.md section 4): a downlink type on `up` is a reflection.
UP_TYPES = ("result", "reading", "event", "statement", "reject")
DOWN_TYPES = ("token", "cmd")


def mac(key, meter_id, seq, inner, direction):
    """Hex HMAC-SHA-256 over the direction, meter id, sequence number and inner text."""
    if direction not in (UP, DOWN):
        raise ValueError(f"direction {direction!r} is neither {UP!r} nor {DOWN!r}")
    msg = (direction + "\n" + meter_id + "\n" + str(int(seq)) + "\n" + inner).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def sms_mac8(key, meter_id, seq, body):
    """The 8 hex digits of an SMS command (`CMD <seq> <body> <mac8>`, docs/protocol.md section 5):
    HMAC-SHA-256 over `meter id \\n seq \\n body`. SMS commands go one way only (utility -> meter) and
    have their own counter, so their MAC carries no direction."""
    msg = (meter_id + "\n" + str(int(seq)) + "\n" + body).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:8]


def seal(key, meter_id, seq, inner_obj, sign=True, direction=DOWN):
    """The envelope bytes for an inner message (a dict, serialised once, compactly)."""
    inner = json.dumps(inner_obj, separators=(",", ":"), sort_keys=True)
    h = mac(key, meter_id, seq, inner, direction) if sign else ""
    return json.dumps({"m": meter_id, "s": int(seq), "p": inner, "h": h}, separators=(",", ":")).encode("utf-8")


def parse(payload):
    """(meter_id, seq, inner_text, inner_obj, h) from envelope bytes; EnvelopeError('malformed') if not one."""
    try:
        env = json.loads(payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload)
        m, s, p, h = env["m"], env["s"], env["p"], env["h"]
        if not isinstance(m, str) or not isinstance(p, str) or not isinstance(h, str):
            raise TypeError("fields")
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError("seq")
        inner = json.loads(p)
        if not isinstance(inner, dict) or not isinstance(inner.get("t"), str):
            raise TypeError("inner")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as e:
        raise EnvelopeError("malformed", f"not an envelope: {e}") from None
    return m, s, p, inner, h


def check(key, payload, last_seq, direction, allow_unsigned_token=False, meter_id=None):
    """Verify an envelope travelling in `direction` against the key and the last accepted seq;
    returns (seq, inner_obj). Nothing here changes any state: the caller moves its counter only
    after this returned.

    Checks in order: parse (malformed), meter id when given (bad_mac: the MAC covers m), inner type
    for the direction (wrong_type: e.g. a downlink reflected back as an uplink), MAC with the
    direction (bad_mac), sequence above the last accepted (stale: replayed, reordered or old).
    An unsigned token downlink is accepted whatever its seq when allow_unsigned_token (tokens
    protect themselves)."""
    m, s, p, inner, h = parse(payload)
    if meter_id is not None and m != meter_id:
        raise EnvelopeError("bad_mac", f"envelope for {m!r} checked as {meter_id!r}'s")
    allowed = UP_TYPES if direction == UP else DOWN_TYPES
    if inner["t"] not in allowed:
        raise EnvelopeError("wrong_type", f"type {inner['t']!r} does not travel {direction}")
    if direction == DOWN and allow_unsigned_token and inner["t"] == "token" and h == "":
        return s, inner
    # bytes, not str: compare_digest refuses non-ASCII text (a fuzzed `h` would raise, not be rejected)
    if not hmac.compare_digest(h.lower().encode("utf-8"), mac(key, m, s, p, direction).encode("ascii")):
        raise EnvelopeError("bad_mac", f"bad HMAC on seq {s} from {m}")
    if last_seq is not None and s <= last_seq:
        raise EnvelopeError("stale", f"seq {s} <= last accepted {last_seq}")
    return s, inner
