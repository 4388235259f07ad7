"""MQTT 3.1.1 packet codec: builds every packet the meter sends and decodes every packet type from a
complete body, with each length checked against the body so no byte sequence can raise or over-read.
The incremental framing (fixed header, remaining length) lives in `mqtt.py`; the codec stays stateless
so tests and the simulator's peer can round-trip all packet types."""
from micropython import const

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_REMAINING = const(268435455)  # four length bytes, by the spec

# Fixed-header flag nibbles the spec requires for every type but PUBLISH.
_FLAGS = b"\x00\x00\x00\x00\x00\x00\x02\x00\x02\x00\x02\x00\x00\x00\x00"


class MQTTError(Exception):
    pass


def _u16(n):
    return bytes(((n >> 8) & 0xFF, n & 0xFF))


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    if len(s) > 0xFFFF:
        raise MQTTError("string too long")
    return _u16(len(s)) + s


def remaining_length(n):
    """The variable-length encoding of a remaining length."""
    if n < 0 or n > MAX_REMAINING:
        raise MQTTError("bad remaining length")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def packet(ptype, flags, body):
    return bytes(((ptype << 4) | flags,)) + remaining_length(len(body)) + body


def connect(client_id, keepalive_s, user=None, password=None, will=None, clean=False):
    """CONNECT; `will` is (topic, message, qos, retain) or None."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str(b"MQTT") + bytes((4, flags)) + _u16(keepalive_s) + payload
    return packet(CONNECT, 0, body)


def connack(session_present, code):
    return packet(CONNACK, 0, bytes((1 if session_present else 0, code)))


def publish(topic, payload, qos=0, pid=0, retain=False, dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = _str(topic) + (_u16(pid) if qos else b"") + payload
    return packet(PUBLISH, flags, body)


def ack(ptype, pid):
    """PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK: a packet id and nothing else."""
    return packet(ptype, _FLAGS[ptype], _u16(pid))


def subscribe(pid, topics):
    """SUBSCRIBE; `topics` is a list of (filter, qos)."""
    body = _u16(pid)
    for t, q in topics:
        body += _str(t) + bytes((q,))
    return packet(SUBSCRIBE, 2, body)


def suback(pid, codes):
    return packet(SUBACK, 0, _u16(pid) + bytes(codes))


def unsubscribe(pid, topics):
    body = _u16(pid)
    for t in topics:
        body += _str(t)
    return packet(UNSUBSCRIBE, 2, body)


def simple(ptype):
    """PINGREQ, PINGRESP or DISCONNECT."""
    return bytes((ptype << 4, 0))


class _Reader:
    def __init__(self, body):
        self.b = body
        self.i = 0

    def byte(self):
        if self.i >= len(self.b):
            raise MQTTError("short packet")
        self.i += 1
        return self.b[self.i - 1]

    def u16(self):
        return (self.byte() << 8) | self.byte()

    def raw(self, n):
        if self.i + n > len(self.b):
            raise MQTTError("short packet")
        self.i += n
        return bytes(self.b[self.i - n:self.i])

    def text(self):
        s = self.raw(self.u16())
        try:
            return s.decode()
        except Exception:  # invalid UTF-8 is a protocol error ([MQTT-1.5.3-1])
            raise MQTTError("bad utf-8")

    def rest(self):
        out = bytes(self.b[self.i:])
        self.i = len(self.b)
        return out

    def end(self):
        if self.i != len(self.b):
            raise MQTTError("trailing bytes")


def decode(first, body):
    """Decode one packet from its first header byte and complete body into a dict with key "type";
    raises MQTTError on anything malformed."""
    ptype = first >> 4
    flags = first & 0x0F
    if ptype < CONNECT or ptype > DISCONNECT:
        raise MQTTError("bad packet type")
    if ptype != PUBLISH and flags != _FLAGS[ptype]:
        raise MQTTError("bad flags")
    r = _Reader(body)
    d = {"type": ptype}
    if ptype == PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MQTTError("bad qos")
        d["qos"] = qos
        d["dup"] = bool(flags & 8)
        d["retain"] = bool(flags & 1)
        d["topic"] = r.text()
        d["pid"] = r.u16() if qos else 0
        if qos and d["pid"] == 0:
            raise MQTTError("zero packet id")
        d["payload"] = r.rest()
    elif ptype == CONNACK:
        sp = r.byte()
        if sp > 1:
            raise MQTTError("bad connack flags")
        d["session_present"] = sp == 1
        d["code"] = r.byte()
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        d["pid"] = r.u16()
    elif ptype == SUBACK:
        d["pid"] = r.u16()
        d["codes"] = list(r.rest())
        if not d["codes"]:
            raise MQTTError("empty suback")
    elif ptype == CONNECT:
        if r.text() != "MQTT" or r.byte() != 4:
            raise MQTTError("bad protocol")
        f = r.byte()
        if f & 1:
            raise MQTTError("reserved flag")
        d["clean"] = bool(f & 2)
        d["keepalive"] = r.u16()
        d["client_id"] = r.text()
        d["will"] = None
        if f & 4:
            d["will"] = (r.text(), r.raw(r.u16()), (f >> 3) & 3, bool(f & 0x20))
        d["user"] = r.text() if f & 0x80 else None
        d["password"] = r.raw(r.u16()) if f & 0x40 else None
    elif ptype in (SUBSCRIBE, UNSUBSCRIBE):
        d["pid"] = r.u16()
        topics = []
        while r.i < len(body):
            t = r.text()
            topics.append((t, r.byte()) if ptype == SUBSCRIBE else t)
        if not topics:
            raise MQTTError("no topics")
        d["topics"] = topics
    r.end()
    return d
