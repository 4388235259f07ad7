"""The stepped in-process MQTT 3.1.1 broker (host_tools/sim/net/mqttbroker.py): sessions, QoS 1 queueing and
redelivery, takeover, keepalive on virtual time, restart, wildcards, retained, auth, malformed input,
determinism, and the firmware's own MQTT client talking to it through a Pipe.

Packets are built and read with the tiny codec below (independent of the broker's and the firmware's)."""
import pytest

from host_tools.sim.net.mqttbroker import SimBroker, topic_matches

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL = 1, 2, 3, 4, 5, 6
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


# -- a tiny client-side codec --------------------------------------------------------------------
def s16(b):
    b = b.encode() if isinstance(b, str) else b
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def u16(n):
    return bytes((n >> 8, n & 0xFF))


def frame(first, body=b""):
    n, rl = len(body), bytearray()
    while True:
        rl.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes((first,)) + bytes(rl) + body


def connect_pkt(cid, clean=False, keepalive=60, will=None, user=None, password=None, level=4):
    flags = 2 if clean else 0
    pay = s16(cid)
    if will:
        topic, msg, qos, retain = will
        flags |= 4 | (qos << 3) | (0x20 if retain else 0)
        pay += s16(topic) + s16(msg)
    if user is not None:
        flags |= 0x80
        pay += s16(user)
    if password is not None:
        flags |= 0x40
        pay += s16(password)
    return frame(CONNECT << 4, s16("MQTT") + bytes((level, flags)) + u16(keepalive) + pay)


def publish_pkt(topic, payload, qos=1, pid=1, retain=False, dup=False):
    return frame((PUBLISH << 4) | (qos << 1) | (8 if dup else 0) | (1 if retain else 0),
                 s16(topic) + (u16(pid) if qos else b"") + payload)


def subscribe_pkt(pid, *filters, qos=1):
    return frame((SUBSCRIBE << 4) | 2, u16(pid) + b"".join(s16(f) + bytes((qos,)) for f in filters))


def unsubscribe_pkt(pid, *filters):
    return frame((UNSUBSCRIBE << 4) | 2, u16(pid) + b"".join(s16(f) for f in filters))


def puback_pkt(pid):
    return frame(PUBACK << 4, u16(pid))


def parse(data):
    """Every packet in data as a dict (a broker only sends these five types)."""
    out, i = [], 0
    while i < len(data):
        first = data[i]
        n, shift, i = 0, 0, i + 1
        while True:
            n |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not data[i - 1] & 0x80:
                break
        body, i = data[i:i + n], i + n
        t = first >> 4
        d = {"type": t}
        if t == CONNACK:
            d.update(session_present=body[0] == 1, code=body[1])
        elif t in (PUBACK, UNSUBACK):
            d["pid"] = body[0] << 8 | body[1]
        elif t == SUBACK:
            d.update(pid=body[0] << 8 | body[1], codes=list(body[2:]))
        elif t == PUBLISH:
            qos = (first >> 1) & 3
            tl = body[0] << 8 | body[1]
            d.update(qos=qos, dup=bool(first & 8), retain=bool(first & 1), topic=body[2:2 + tl].decode())
            d["pid"] = (body[2 + tl] << 8 | body[3 + tl]) if qos else 0
            d["payload"] = bytes(body[2 + tl + (2 if qos else 0):])
        out.append(d)
    return out


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Peer:
    """A network client (what the meter's modem is) on a Pipe, driven packet by packet."""

    def __init__(self, broker, cid, **kw):
        self.pipe = broker.connect()
        self.cid = cid
        self.backlog = []
        self.pipe.send(connect_pkt(cid, **kw))
        self.connack = self.answers()[0]

    def take(self):
        """Everything the broker sent since the last take (or kept back by answers()), decoded."""
        data = b""
        while True:
            try:
                chunk = self.pipe.recv(7)     # small reads on purpose: recv(n) must honour n
            except BlockingIOError:
                break
            if not chunk:
                self.backlog.append({"type": "EOF"})
                break
            data += chunk
        eof = self.backlog[-1:] == [{"type": "EOF"}]
        out = [p for p in self.backlog if p["type"] != "EOF"] + parse(data) + ([{"type": "EOF"}] if eof else [])
        self.backlog = []
        return out

    def answers(self):
        """The control packets (CONNACK, SUBACK, PUBACK...) now; PUBLISHes are kept for publishes()."""
        got = self.take()
        self.backlog = [p for p in got if p["type"] == PUBLISH]
        return [p for p in got if p["type"] != PUBLISH]

    def publishes(self):
        return [p for p in self.take() if p["type"] == PUBLISH]

    def subscribe(self, *filters, qos=1, pid=1):
        self.pipe.send(subscribe_pkt(pid, *filters, qos=qos))
        return self.answers()

    def publish(self, topic, payload, qos=1, pid=1, retain=False):
        self.pipe.send(publish_pkt(topic, payload, qos, pid, retain))
        return self.answers()


def broker(**kw):
    clock = Clock()
    return SimBroker(clock, **kw), clock


def headend(b, cid="headend", fail_on=None, listen=None, **kw):
    """A local client recording (topic, payload, qos, dup, retain); raises on payload == fail_on.
    With `listen` (a topic filter) it is connected and subscribed to it."""
    got = []

    def on_message(topic, payload, qos, dup, retain):
        if payload == fail_on:
            raise RuntimeError("head-end crashed on %r" % payload)
        got.append((topic, payload, qos, dup, retain))

    lc = b.client(cid, on_message=on_message, **kw)
    if listen:
        assert lc.connect() == 0 and lc.subscribe(listen) == 1, "%s could not listen to %s" % (cid, listen)
    return lc, got


# -- round trip -------------------------------------------------------------------------------
def test_connect_subscribe_publish_round_trip_between_pipe_and_local_client():
    b, _ = broker()
    he, got = headend(b)
    assert he.connect() == 0 and he.connected, "local client not accepted"
    assert he.subscribe("meters/+/up") == 1
    meter = Peer(b, "meter-1")
    assert meter.connack == {"type": CONNACK, "session_present": False, "code": 0}
    assert meter.subscribe("meters/meter-1/down") == [{"type": SUBACK, "pid": 1, "codes": [1]}]
    assert meter.publish("meters/meter-1/up", b"reading", pid=9) == [{"type": PUBACK, "pid": 9}], \
        "QoS 1 publish from a pipe not acknowledged with its packet id"
    assert got == [], "local delivery must wait for pump()"
    b.pump()
    assert got == [("meters/meter-1/up", b"reading", 1, False, False)]
    assert he.publish("meters/meter-1/down", b"token") is True
    pubs = meter.publishes()
    assert [(p["topic"], p["payload"], p["qos"], p["dup"]) for p in pubs] == \
        [("meters/meter-1/down", b"token", 1, False)], "a publish to a pipe is queued for recv at once"
    assert b.sessions()["meter-1"]["inflight"] == 1
    meter.pipe.send(puback_pkt(pubs[0]["pid"]))
    assert b.sessions()["meter-1"]["inflight"] == 0, "PUBACK did not clear the in-flight message"
    assert b.stats["connects"] == 2 and b.stats["publishes_in"] == 2 and b.stats["delivered"] == 2


def test_pingreq_answered_and_unsubscribe_stops_delivery():
    b, _ = broker()
    p = Peer(b, "m")
    p.subscribe("a/b")
    p.pipe.send(frame(PINGREQ << 4))
    assert p.take() == [{"type": PINGRESP}]
    p.pipe.send(unsubscribe_pkt(3, "a/b"))
    assert p.take() == [{"type": UNSUBACK, "pid": 3}]
    he, _ = headend(b)
    he.connect()
    he.publish("a/b", b"x")
    assert p.publishes() == [], "delivered after UNSUBSCRIBE"
    assert b.sessions()["m"]["subs"] == {}


def test_packet_split_across_sends_is_handled_when_whole():
    b, _ = broker()
    pipe = b.connect()
    raw = connect_pkt("m")
    for i in range(len(raw)):
        pipe.send(raw[i:i + 1])
        if i < len(raw) - 1:
            assert pipe.pending == 0, "answered a CONNECT before its last byte (byte %d)" % i
    assert parse(pipe.recv(100)) == [{"type": CONNACK, "session_present": False, "code": 0}]


def test_recv_blocks_when_empty_and_gives_eof_after_the_bytes_before_the_close():
    b, _ = broker()
    p = Peer(b, "m", clean=True)
    with pytest.raises(BlockingIOError):
        p.pipe.recv(10)
    p.pipe.send(frame(PINGREQ << 4) + frame(DISCONNECT << 4))
    assert p.pipe.recv(1) == bytes((PINGRESP << 4,))
    assert p.pipe.recv(10) == b"\x00"
    assert p.pipe.recv(10) == b"", "no EOF after the broker closed"
    assert p.pipe.send(frame(PINGREQ << 4)) == 2 and p.pipe.recv(10) == b""


# -- QoS and sessions -------------------------------------------------------------------------
def test_delivery_qos_is_the_lower_of_publish_and_subscription():
    b, _ = broker()
    q0 = Peer(b, "q0")
    q0.subscribe("t", qos=0)
    q1 = Peer(b, "q1")
    assert q1.subscribe("t", qos=2)[0]["codes"] == [1], "QoS 2 subscription must be granted as 1"
    pub = Peer(b, "pub")
    pub.publish("t", b"one", qos=1)
    pub.publish("t", b"zero", qos=0)
    assert [(p["payload"], p["qos"]) for p in q0.publishes()] == [(b"one", 0), (b"zero", 0)]
    assert [(p["payload"], p["qos"]) for p in q1.publishes()] == [(b"one", 1), (b"zero", 0)]


def test_qos1_for_offline_persistent_client_is_delivered_on_reconnect():
    b, _ = broker()
    m = Peer(b, "meter-1")
    m.subscribe("down")
    m.pipe.send(frame(DISCONNECT << 4))
    assert b.sessions()["meter-1"]["connected"] is False
    he, _ = headend(b)
    he.connect()
    he.publish("down", b"t1")
    he.publish("down", b"t2", qos=0)
    he.publish("down", b"t3")
    assert b.sessions()["meter-1"]["queued"] == 2, "QoS 1 for the offline session not queued (QoS 0 dropped)"
    assert b.stats["dropped_offline_qos0"] == 1
    m2 = Peer(b, "meter-1")
    assert m2.connack["session_present"] is True
    pubs = m2.publishes()
    assert [(p["payload"], p["dup"]) for p in pubs] == [(b"t1", False), (b"t3", False)], \
        "queued messages not delivered in order on reconnect: %r" % pubs
    assert b.sessions()["meter-1"]["subs"] == {"down": 1}, "subscription lost with the connection"


def test_unacked_inflight_resent_with_dup_before_queued_after_reconnect():
    b, _ = broker(max_inflight=2)
    m = Peer(b, "meter-1")
    m.subscribe("down")
    he, _ = headend(b)
    he.connect()
    for i in range(4):
        he.publish("down", b"t%d" % i)
    first = m.publishes()
    assert [p["payload"] for p in first] == [b"t0", b"t1"], "max_inflight not honoured"
    m.pipe.close()     # never acknowledged
    m2 = Peer(b, "meter-1")
    pubs = m2.publishes()
    assert [(p["payload"], p["dup"]) for p in pubs] == [(b"t0", True), (b"t1", True)], \
        "in-flight not resent with DUP first: %r" % pubs
    assert [p["pid"] for p in pubs] == [p["pid"] for p in first], "a resend must keep its packet id"
    m2.pipe.send(puback_pkt(pubs[0]["pid"]) + puback_pkt(pubs[1]["pid"]))
    assert [(p["payload"], p["dup"]) for p in m2.publishes()] == [(b"t2", False), (b"t3", False)]
    assert b.stats["resent"] == 2


def test_clean_session_is_discarded_at_disconnect():
    b, _ = broker()
    m = Peer(b, "c", clean=True)
    m.subscribe("down")
    m.pipe.send(frame(DISCONNECT << 4))
    assert "c" not in b.sessions(), "a clean session outlived its connection"
    m2 = Peer(b, "c", clean=False)
    assert m2.connack["session_present"] is False
    m = Peer(b, "p")
    m.subscribe("down")
    m.pipe.close()
    assert Peer(b, "p", clean=True).connack["session_present"] is False, "clean=1 must discard a stored session"


def test_max_inflight_queues_the_rest_and_keeps_publisher_order():
    b, _ = broker(max_inflight=3)
    sub = Peer(b, "sub")
    sub.subscribe("seq/#")
    pub = Peer(b, "pub")
    for i in range(10):
        pub.publish("seq/%d" % (i % 2), b"%d" % i, pid=i + 1)
    window = sub.publishes()
    assert len(window) == 3, "%d in flight, max 3" % len(window)
    assert b.sessions()["sub"]["queued"] == 7
    seen = [p["payload"] for p in window]
    while window:
        sub.pipe.send(puback_pkt(window.pop(0)["pid"]))     # one ack frees one slot: one more comes
        more = sub.publishes()
        assert len(more) <= 1, "an ack released %d messages" % len(more)
        assert b.sessions()["sub"]["inflight"] <= 3
        window += more
        seen += [p["payload"] for p in more]
    assert seen == [b"%d" % i for i in range(10)], "order changed under max_inflight: %r" % seen


def test_max_queued_drops_the_oldest_and_counts_it():
    b, _ = broker(max_queued=3)
    m = Peer(b, "m")
    m.subscribe("d")
    m.pipe.close()
    he, _ = headend(b)
    he.connect()
    for i in range(5):
        he.publish("d", b"%d" % i)
    assert b.stats["dropped_queue_full"] == 2
    assert [p["payload"] for p in Peer(b, "m").publishes()] == [b"2", b"3", b"4"]


def test_local_client_qos1_acked_after_on_message_and_redelivered_with_dup_when_it_raised():
    b, _ = broker()
    he, got = headend(b, fail_on=b"boom", listen="up")
    m = Peer(b, "m")
    m.publish("up", b"ok1", pid=1)
    m.publish("up", b"boom", pid=2)
    m.publish("up", b"ok2", pid=3)
    b.pump()
    assert [g[1] for g in got] == [b"ok1", b"ok2"]
    assert b.sessions()["headend"]["inflight"] == 1, "the message on_message failed must stay unacknowledged"
    assert len(he.errors) == 1 and "head-end crashed" in he.errors[0][2]
    he.disconnect()
    he.connect()
    b.pump()
    assert got[2:] == [], "a raising message is redelivered, not dropped: %r" % got
    assert b.sessions()["headend"]["inflight"] == 1
    he.on_message = lambda *a: got.append(a)
    he.disconnect()
    assert he.connect() == 0
    b.pump()
    assert got[2:] == [("up", b"boom", 1, True, False)], "not redelivered with DUP: %r" % got[2:]
    assert b.sessions()["headend"]["inflight"] == 0


def test_local_client_on_connect_sees_session_present_and_on_disconnect_the_reason():
    b, _ = broker()
    events = []
    he = b.client("he", on_connect=lambda sp: events.append(("up", sp)),
                  on_disconnect=lambda why: events.append(("down", why)))
    assert he.publish("x", b"y") is False and he.subscribe("x") is None, "acting while disconnected"
    he.connect()
    he.disconnect()
    he.connect()
    assert events == [("up", False), ("down", "DISCONNECT"), ("up", True)]


# -- takeover, keepalive, close --------------------------------------------------------------
def test_takeover_by_same_client_id_closes_old_pipe_with_eof_and_publishes_its_will():
    b, _ = broker()
    he, got = headend(b, listen="status/#")
    old = Peer(b, "meter-1", will=("status/meter-1", b"offline", 1, False))
    new = Peer(b, "meter-1")
    assert new.connack == {"type": CONNACK, "session_present": True, "code": 0}
    assert old.take() == [{"type": "EOF"}], "the old pipe did not see EOF on takeover"
    b.pump()
    assert got == [("status/meter-1", b"offline", 1, False, False)], "will not published on takeover: %r" % got
    assert b.stats["takeovers"] == 1 and b.sessions()["meter-1"]["connected"]


def test_reconnect_over_a_half_open_link_takes_over_and_resends_what_the_dead_link_swallowed():
    b, clock = broker()
    he, got = headend(b, listen="status/+")
    m = Peer(b, "meter-1", keepalive=60, will=("status/meter-1", b"lost", 1, False))
    m.subscribe("down")
    m.pipe.abandon()                          # coverage gone; the broker still thinks the meter is online
    he.publish("down", b"token-1")
    assert b.sessions()["meter-1"] == {"connected": True, "subs": {"down": 1}, "queued": 0, "inflight": 1}
    assert m.publishes() == [], "a message crossed a vanished network"
    clock.t = 30.0                            # back in coverage before the keepalive runs out
    m2 = Peer(b, "meter-1", keepalive=60)
    pubs = m2.publishes()
    assert [(p["payload"], p["dup"]) for p in pubs] == [(b"token-1", True)], "swallowed message: %r" % pubs
    b.pump()
    assert got == [("status/meter-1", b"lost", 1, False, False)], "takeover of a half-open link: will %r" % got
    clock.t = 1000.0
    m2.pipe.send(frame(PINGREQ << 4))
    b.pump()
    assert b.stats["expired"] == 0, "the taken-over connection expired later all the same"


def test_keepalive_expiry_of_abandoned_pipe_publishes_will_only_after_one_and_a_half_keepalives():
    b, clock = broker()
    he, got = headend(b, listen="status/+")
    clock.t = 100.0
    m = Peer(b, "meter-1", keepalive=60, will=("status/meter-1", b"lost", 1, True))
    m.pipe.abandon()
    assert m.pipe.send(frame(PINGREQ << 4)) == 2, "a send into a vanished network still 'succeeds'"
    clock.t = 100.0 + 90.0                  # exactly 1.5 x keepalive: still within the allowance
    b.pump()
    assert got == [] and b.sessions()["meter-1"]["connected"], "expired at 1.5 x keepalive, not after"
    clock.t = 190.5
    b.pump()
    assert got == [("status/meter-1", b"lost", 1, False, False)], "no will after keepalive expiry: %r" % got
    assert b.sessions()["meter-1"]["connected"] is False and b.stats["expired"] == 1
    assert b.retained == {"status/meter-1": b"lost"}, "a retained will must be kept"
    with pytest.raises(BlockingIOError):
        m.pipe.recv(10)                     # the client's half of a half-open link hears nothing


def test_packets_keep_the_keepalive_alive():
    b, clock = broker()
    m = Peer(b, "m", keepalive=10)
    for _ in range(10):
        clock.t += 14.0
        m.pipe.send(frame(PINGREQ << 4))
        b.pump()
    assert b.sessions()["m"]["connected"] and b.stats["expired"] == 0
    clock.t += 15.5
    b.pump()
    assert m.take()[-1] == {"type": "EOF"}, "expired pipe not closed"


def test_client_close_is_seen_at_once_and_publishes_the_will_but_disconnect_does_not():
    b, _ = broker()
    he, got = headend(b, listen="w/+")
    a = Peer(b, "a", will=("w/a", b"gone-a", 0, False))
    c = Peer(b, "c", will=("w/c", b"gone-c", 0, False))
    a.pipe.close()
    assert b.sessions()["a"]["connected"] is False
    c.pipe.send(frame(DISCONNECT << 4))
    b.pump()
    assert got == [("w/a", b"gone-a", 0, False, False)], "wills: %r" % got
    with pytest.raises(OSError):
        a.pipe.send(b"x")


def test_connection_without_connect_is_closed_after_the_connect_timeout():
    b, clock = broker()
    pipe = b.connect()
    clock.t = 20.0
    b.pump()
    assert pipe.pending == 0
    clock.t = 20.5
    b.pump()
    assert pipe.recv(10) == b"", "a silent connection was never closed"


# -- restart --------------------------------------------------------------------------------
def _restart_script(persistent):
    b, _ = broker(persistent=persistent)
    events = []
    he = b.client("he", on_disconnect=lambda why: events.append(why))
    he.connect()
    m = Peer(b, "meter-1")
    m.subscribe("down")
    m.pipe.close()
    he.publish("down", b"queued-token")
    he.publish("status", b"retained", retain=True)
    live = Peer(b, "other", clean=True)
    b.restart()
    return b, he, events, live


def test_restart_persistent_keeps_sessions_queue_and_retained():
    b, he, events, live = _restart_script(persistent=True)
    assert live.take() == [{"type": "EOF"}], "a pipe must see EOF on restart"
    assert events == ["broker restart"] and not he.connected
    assert b.sessions()["meter-1"] == {"connected": False, "subs": {"down": 1}, "queued": 1, "inflight": 0}
    assert "other" not in b.sessions(), "a clean session survived a restart"
    m = Peer(b, "meter-1")
    assert m.connack["session_present"] is True
    assert [p["payload"] for p in m.publishes()] == [b"queued-token"]
    assert b.retained == {"status": b"retained"}


def test_restart_not_persistent_loses_sessions_and_retained():
    b, he, events, live = _restart_script(persistent=False)
    assert live.take() == [{"type": "EOF"}] and events == ["broker restart"]
    assert b.sessions() == {} and b.retained == {}
    m = Peer(b, "meter-1")
    assert m.connack["session_present"] is False
    assert m.publishes() == [], "a message queued before an amqtt-like restart was delivered"


# -- topics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flt,topic,match", [
    ("meters/+/up", "meters/m1/up", True),
    ("meters/+/up", "meters/m1/down", False),
    ("meters/+/up", "meters/m1/up/x", False),
    ("meters/#", "meters", True),
    ("meters/#", "meters/m1/up", True),
    ("#", "a/b/c", True),
    ("+/+", "a/b", True),
    ("+", "/a", False),
    ("+/a", "/a", True),
    ("a/+", "a/", True),
    ("#", "$SYS/broker", False),
    ("+/broker", "$SYS/broker", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a/b", "a/b", True),
    ("a/b", "A/b", False),
])
def test_wildcard_matching(flt, topic, match):
    assert topic_matches(flt, topic) is match, "%r vs %r" % (flt, topic)


def test_wildcard_subscription_routes_one_copy_at_the_highest_qos():
    b, _ = broker()
    s = Peer(b, "s")
    s.subscribe("meters/+/up", qos=0)
    s.subscribe("meters/#", qos=1, pid=2)
    pub = Peer(b, "p")
    pub.publish("meters/m1/up", b"r")
    pub.publish("$SYS/x", b"sys")
    pubs = s.publishes()
    assert [(p["topic"], p["qos"]) for p in pubs] == [("meters/m1/up", 1)], "overlapping subs: %r" % pubs


# -- retained -------------------------------------------------------------------------------
def test_retained_sent_on_subscribe_flagged_and_empty_payload_clears():
    b, _ = broker()
    pub = Peer(b, "p")
    pub.publish("status/m1", b"online", retain=True)
    pub.publish("status/m2", b"offline", qos=0, retain=True)
    s = Peer(b, "s")
    s.subscribe("status/+")
    got = [(p["topic"], p["payload"], p["qos"], p["retain"]) for p in s.publishes()]
    assert got == [("status/m1", b"online", 1, True), ("status/m2", b"offline", 0, True)], got
    pub.publish("status/m1", b"", retain=True)
    live = s.publishes()
    assert [(p["payload"], p["retain"]) for p in live] == [(b"", False)], \
        "live delivery must carry retain=0 (3.1.1 3.3.1.3): %r" % live
    assert b.retained == {"status/m2": b"offline"}, "an empty retained publish must clear the topic"
    late = Peer(b, "late")
    late.subscribe("status/+")
    assert [p["topic"] for p in late.publishes()] == ["status/m2"]


# -- auth -----------------------------------------------------------------------------------
def test_authenticate_refusal_gives_connack_4_or_5_and_closes():
    creds = {"meter-1": b"secret"}
    b, _ = broker(authenticate=lambda cid, user, pw: user in creds and creds[user] == pw)
    assert Peer(b, "meter-1", user="meter-1", password="secret").connack["code"] == 0
    bad = Peer(b, "meter-1", user="meter-1", password="wrong")
    assert bad.connack["code"] == 4 and bad.take() == [{"type": "EOF"}], "bad password: CONNACK 4 then close"
    anon = Peer(b, "x")
    assert anon.connack["code"] == 5, "anonymous refused: CONNACK 5"
    lc = b.client("he", username="he", password=b"nope")
    assert lc.connect() == 4 and not lc.connected
    assert b.sessions()["meter-1"]["connected"], "a refused CONNECT must not take the session over"
    assert b.stats["connects_refused"] == 3


def test_bad_client_id_and_protocol_level_refused():
    b, _ = broker()
    assert Peer(b, "", clean=False).connack["code"] == 2, "empty id with clean_session=0 must get CONNACK 2"
    assert Peer(b, "", clean=True).connack["code"] == 0, "empty id with clean_session=1 is allowed"
    assert Peer(b, "m", level=3).connack["code"] == 1


def test_authorize_refuses_subscribe_with_0x80_and_drops_refused_publish():
    def authorize(cid, user, topic, action):
        return topic.startswith("meters/%s/" % cid) or cid == "he"
    b, _ = broker(authorize=authorize)
    m = Peer(b, "m1")
    assert m.subscribe("meters/m1/down", "meters/m2/down", pid=5) == [{"type": SUBACK, "pid": 5, "codes": [1, 0x80]}]
    he, got = headend(b, "he", listen="meters/#")
    assert m.publish("meters/m2/up", b"forged", pid=6) == [{"type": PUBACK, "pid": 6}], \
        "a refused publish is still acknowledged (mosquitto), just not routed"
    m.publish("meters/m1/up", b"mine")
    b.pump()
    assert [g[1] for g in got] == [b"mine"] and b.stats["publishes_refused"] == 1


# -- malformed input ------------------------------------------------------------------------
MALFORMED = {
    "publish_before_connect": None,
    "second_connect": connect_pkt("m"),
    "qos3_publish": frame((PUBLISH << 4) | 6, s16("t") + u16(1)),
    "wildcard_in_topic": publish_pkt("a/+", b"x"),
    "bad_subscribe_flags": frame(SUBSCRIBE << 4, u16(1) + s16("a") + b"\x01"),
    "bad_filter": subscribe_pkt(1, "a/#/b"),
    "truncated_string": frame((PUBLISH << 4) | 2, b"\x00\x09ab"),
    "invalid_utf8": frame((PUBLISH << 4) | 2, u16(2) + b"\xff\xfe" + u16(1)),
    "five_byte_length": bytes((PUBLISH << 4, 0x80, 0x80, 0x80, 0x80, 0x01)),
    "broker_only_type": frame(CONNACK << 4, b"\x00\x00"),
    "qos2_publish": publish_pkt("t", b"x", qos=2),
    "qos2_flow": frame((PUBREL << 4) | 2, u16(1)),
    "packet_id_zero": publish_pkt("t", b"x", pid=0),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_closes_only_that_connection(case):
    b, _ = broker()
    he, got = headend(b, listen="w/#")
    good = Peer(b, "good")
    good.subscribe("d")
    if case == "publish_before_connect":
        bad = b.connect()
        bad.send(publish_pkt("d", b"x"))
        assert bad.recv(10) == b"", "%s: connection left open" % case
    else:
        bad = Peer(b, "bad", will=("w/bad", b"bad-gone", 0, False))
        bad.pipe.send(MALFORMED[case])
        assert bad.take() == [{"type": "EOF"}], "%s: connection left open" % case
        b.pump()
        assert got == [("w/bad", b"bad-gone", 0, False, False)], "%s: will not published: %r" % (case, got)
    assert b.sessions()["good"]["connected"], "%s closed another connection" % case
    he.publish("d", b"still-works")
    assert [p["payload"] for p in good.publishes()] == [b"still-works"], case


# -- determinism ----------------------------------------------------------------------------
def _script():
    b, clock = broker(max_inflight=2, max_queued=5)
    he, got = headend(b, fail_on=b"r4", listen="meters/+/up")
    meters = [Peer(b, "m%d" % i, keepalive=30, will=("meters/m%d/up" % i, b"bye", 1, False)) for i in range(3)]
    for i, m in enumerate(meters):
        m.subscribe("meters/m%d/down" % i)
    for step in range(40):
        clock.t += 7.0
        he.publish("meters/m%d/down" % (step % 3), b"t%d" % step)
        m = meters[step % 3]
        for p in m.publishes():
            if step % 5:
                m.pipe.send(puback_pkt(p["pid"]))
        m.publish("meters/m%d/up" % (step % 3), b"r%d" % step, pid=step + 1)
        if step == 10:
            meters[1].pipe.abandon()
        if step == 20:
            b.restart()
            he.connect()
            meters = [Peer(b, "m%d" % i, keepalive=30) for i in range(3)]
        b.pump()
    return b.log, b.stats, got, b.sessions()


def test_two_runs_of_the_same_script_give_identical_logs():
    one, two = _script(), _script()
    assert len(one[0]) > 150, "the script did too little to prove anything (%d log lines)" % len(one[0])
    for i, (a, c) in enumerate(zip(one[0], two[0])):
        assert a == c, "logs differ at line %d: %r vs %r" % (i, a, c)
    assert one == two
    assert one[1]["expired"] >= 1 and one[1]["resent"] >= 1 and one[1]["callback_errors"] >= 1, one[1]


# -- the firmware's own client ------------------------------------------------------------
def test_firmware_mqtt_client_connects_subscribes_and_gets_a_qos1_message_through_a_pipe():
    from comms.mqtt import UP, MQTTClient
    from comms_support import FakeClock

    fclock = FakeClock()
    b = SimBroker(lambda: fclock.ms / 1000.0)
    pipe = b.connect()
    got = []

    def on_message(topic, payload, pid):
        got.append((topic, payload, pid))
        return True

    c = MQTTClient(fclock, pipe.send, "meter-1", user="meter-1", password="pw", keepalive_s=120,
                   will=("meters/meter-1/status", b"offline", 1, True), on_message=on_message)

    def pump_wire():
        while True:
            try:
                data = pipe.recv(64)
            except BlockingIOError:
                return
            if not data:
                return
            c.feed(data)

    c.start()
    pump_wire()
    assert c.state == UP, "firmware client not UP: %r" % c.error
    c.subscribe("meters/meter-1/down", 1)
    pump_wire()
    assert c.subs == {}, "SUBACK not received"
    he, heard = headend(b, listen="meters/+/up")
    he.publish("meters/meter-1/down", b'{"t":"token"}')
    pump_wire()
    assert got == [("meters/meter-1/down", b'{"t":"token"}', 1)]
    assert b.sessions()["meter-1"]["inflight"] == 0, "the firmware's PUBACK did not reach the broker"
    pid = c.publish("meters/meter-1/up", b"result", 1)
    pump_wire()
    assert pid and c.inflight == {}, "the broker's PUBACK did not reach the firmware"
    b.pump()
    assert heard == [("meters/meter-1/up", b"result", 1, False, False)]
    fclock.ms += 90_000            # the firmware pings at 3/4 keepalive; the broker answers
    c.poll()
    pump_wire()
    assert c._ping_due is None and c.state == UP and b.stats["pings"] == 1


# -- the simulated modem, unchanged, with a Pipe for its socket ---------------------------------
def test_simulated_modem_bridges_the_firmware_to_the_broker_through_a_pipe(monkeypatch):
    """What the scenario will do: the modem's TCP bridge opens broker.connect() instead of a socket.
    Its select() wait is stubbed (a Pipe has no descriptor: a send is answered before it returns)."""
    import types

    from host_tools.sim.modem import core as modem_mod
    from test_sim_modem import ATClient, open_sim7600_link

    b, clock = broker()
    opened = []

    def create_connection(addr, timeout=None):
        opened.append(addr)
        return b.connect()

    monkeypatch.setattr(modem_mod, "socket", types.SimpleNamespace(
        create_connection=create_connection, IPPROTO_TCP=6, TCP_NODELAY=1))
    monkeypatch.setattr(modem_mod, "select", types.SimpleNamespace(select=lambda r, w, x, t=None: (r, [], [])))
    he, got = headend(b, listen="meters/+/up")
    c = ATClient(broker=("sim", 1883))
    c.boot()
    assert open_sim7600_link(c)[-1] == "CONNECT 115200" and opened == [("sim", 1883)]
    c.send_raw(connect_pkt("meter-1", will=("meters/meter-1/up", b"offline", 1, False))
               + subscribe_pkt(1, "meters/meter-1/down"))
    c.advance(100)
    assert parse(c.take()) == [{"type": CONNACK, "session_present": False, "code": 0},
                               {"type": SUBACK, "pid": 1, "codes": [1]}]
    he.publish("meters/meter-1/down", b"token")
    c.advance(100)
    (down,) = parse(c.take())
    assert (down["topic"], down["payload"], down["qos"]) == ("meters/meter-1/down", b"token", 1)
    c.send_raw(puback_pkt(down["pid"]) + publish_pkt("meters/meter-1/up", b"accepted", pid=2))
    c.advance(100)
    assert parse(c.take()) == [{"type": PUBACK, "pid": 2}]
    b.pump()
    assert got == [("meters/meter-1/up", b"accepted", 1, False, False)]
    assert b.sessions()["meter-1"]["inflight"] == 0
    c.m.drop_link()              # the radio link is gone: no FIN reaches the broker (half-open)
    b.pump()
    assert b.sessions()["meter-1"]["connected"] is True, "the broker saw a drop no packet told it of"
    clock.t += 1.5 * 60 + 1      # past 1.5 x the keepalive of 60 s
    b.pump()
    assert b.sessions()["meter-1"]["connected"] is False
    assert got[-1] == ("meters/meter-1/up", b"offline", 1, False, False), "no will after the keepalive expired"
