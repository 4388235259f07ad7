"""The meter <-> head-end message envelope (docs/protocol.md): one JSON object
`{"m": id, "s": seq, "p": inner JSON text, "h": hex HMAC-SHA-256}` authenticated over the exact bytes
`m + "\\n" + str(s) + "\\n" + p`. Shared by the head-end and the fake meter so both check the same thing."""
import hashlib
import hmac
import json


class EnvelopeError(ValueError):
    """A payload that is not a well-formed envelope; `why` is the protocol's rejection reason."""

    def __init__(self, why, message):
        super().__init__(message)
        self.why = why


def mac(key, meter_id, seq, inner):
    """Hex HMAC-SHA-256 over the meter id, sequence number and inner text."""
    msg = (meter_id + "\n" + str(int(seq)) + "\n" + inner).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def seal(key, meter_id, seq, inner_obj, sign=True):
    """The envelope bytes for an inner message (a dict, serialised once, compactly)."""
    inner = json.dumps(inner_obj, separators=(",", ":"), sort_keys=True)
    h = mac(key, meter_id, seq, inner) if sign else ""
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


def check(key, payload, last_seq, allow_unsigned_token=False):
    """Verify an envelope against the key and the last accepted seq; returns (seq, inner_obj).

    Raises EnvelopeError with why = malformed | bad_mac | stale. An unsigned token downlink is accepted
    whatever its seq when allow_unsigned_token (tokens protect themselves)."""
    m, s, p, inner, h = parse(payload)
    if allow_unsigned_token and inner.get("t") == "token" and h == "":
        return s, inner
    if not hmac.compare_digest(h.lower(), mac(key, m, s, p)):
        raise EnvelopeError("bad_mac", f"bad HMAC on seq {s} from {m}")
    if last_seq is not None and s <= last_seq:
        raise EnvelopeError("stale", f"seq {s} <= last accepted {last_seq}")
    return s, inner
