"""A stepped, in-process MQTT 3.1.1 broker for deterministic scenarios: the subset the meter and the
head-end use (QoS 0/1, persistent sessions, retained messages, wills, keepalive), on virtual time.

Nothing happens on its own: no threads, sockets, asyncio, wall clock or randomness. Bytes a client
`Pipe.send`s are parsed and answered inside that call; `pump()` delivers what is waiting for in-process
clients and expires keepalives; `restart()` is a broker crash. So one script gives one `log`.
See docs/sim-broker.md for what it models and what it does not."""
from collections import deque

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

ACCEPTED, BAD_PROTOCOL, BAD_CLIENT_ID, BAD_CREDENTIALS, NOT_AUTHORISED = 0, 1, 2, 4, 5
SUBACK_FAILURE = 0x80
CONNECT_TIMEOUT_S = 20.0     # a connection that sends no CONNECT this long is closed (mosquitto does too)


class Malformed(ValueError):
    """A packet that breaks MQTT 3.1.1; the connection that sent it is closed."""


# -- codec: what a broker sends, and a reader for what it receives ---------------------------------
def _u16(n):
    return bytes(((n >> 8) & 0xFF, n & 0xFF))


def _text(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return _u16(len(b)) + b


def _packet(ptype, flags, body=b""):
    n = len(body)
    head = bytearray(((ptype << 4) | flags,))
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | 0x80 if n else b)
        if not n:
            return bytes(head) + body


def encode_publish(topic, payload, qos, pid, dup=False, retain=False):
    flags = (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    return _packet(PUBLISH, flags, _text(topic) + (_u16(pid) if qos else b"") + bytes(payload))


class _Reader:
    def __init__(self, body):
        self.body = body
        self.i = 0

    def take(self, n):
        if self.i + n > len(self.body):
            raise Malformed("packet shorter than its fields")
        self.i += n
        return bytes(self.body[self.i - n:self.i])

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        hi, lo = self.take(2)
        return (hi << 8) | lo

    def blob(self):
        return self.take(self.u16())

    def text(self):
        try:
            s = self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("string is not UTF-8")
        if "\x00" in s:
            raise Malformed("string holds U+0000")
        return s

    def more(self):
        return self.i < len(self.body)

    def rest(self):
        out = bytes(self.body[self.i:])
        self.i = len(self.body)
        return out

    def end(self):
        if self.more():
            raise Malformed("trailing bytes after the fields")


def _fixed_flags(ptype, flags):
    want = 2 if ptype in (SUBSCRIBE, UNSUBSCRIBE, PUBREL) else 0
    if flags != want:
        raise Malformed("packet type %d with flags %d (must be %d)" % (ptype, flags, want))


def decode_client_packet(first, body):
    """One complete packet a client sends to a broker, as a dict with "type"; raises Malformed."""
    ptype, flags = first >> 4, first & 0x0F
    r = _Reader(body)
    d = {"type": ptype}
    if ptype == PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise Malformed("PUBLISH with QoS 3")
        if qos == 0 and flags & 8:
            raise Malformed("DUP set on a QoS 0 PUBLISH")
        d.update(qos=qos, dup=bool(flags & 8), retain=bool(flags & 1), topic=r.text())
        d["pid"] = r.u16() if qos else 0
        if qos and d["pid"] == 0:
            raise Malformed("PUBLISH with packet id 0")
        check_topic(d["topic"])
        d["payload"] = r.rest()
        return d
    if ptype in (CONNACK, SUBACK, UNSUBACK, PINGRESP) or not CONNECT <= ptype <= DISCONNECT:
        raise Malformed("packet type %d is not sent by clients" % ptype)
    _fixed_flags(ptype, flags)
    if ptype == CONNECT:
        d["protocol"] = r.text()
        d["level"] = r.byte()
        if d["protocol"] != "MQTT":
            raise Malformed("protocol name %r" % d["protocol"])
        if d["level"] != 4:
            return d          # answered with CONNACK 1 before anything else is read
        f = r.byte()
        if f & 1:
            raise Malformed("CONNECT reserved flag set")
        will_qos = (f >> 3) & 3
        if not f & 4 and (will_qos or f & 0x20):
            raise Malformed("will QoS/retain without a will")
        if will_qos == 3:
            raise Malformed("will QoS 3")
        if f & 0x40 and not f & 0x80:
            raise Malformed("password without a user name")
        d["clean"] = bool(f & 2)
        d["keepalive"] = r.u16()
        d["client_id"] = r.text()
        d["will"] = None
        if f & 4:
            topic = r.text()
            check_topic(topic)
            d["will"] = (topic, r.blob(), will_qos, bool(f & 0x20))
        d["username"] = r.text() if f & 0x80 else None
        d["password"] = r.blob() if f & 0x40 else None
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        d["pid"] = r.u16()
    elif ptype in (SUBSCRIBE, UNSUBSCRIBE):
        d["pid"] = r.u16()
        if d["pid"] == 0:
            raise Malformed("packet id 0")
        topics = []
        while r.more():
            f = r.text()
            check_filter(f)
            if ptype == SUBSCRIBE:
                q = r.byte()
                if q > 2:
                    raise Malformed("requested QoS %d" % q)
                topics.append((f, q))
            else:
                topics.append(f)
        if not topics:
            raise Malformed("no topic filters")
        d["topics"] = topics
    r.end()
    return d


def check_topic(topic):
    if not topic or "+" in topic or "#" in topic:
        raise Malformed("bad topic name %r" % topic)


def check_filter(f):
    levels = f.split("/") if f else []
    if not levels:
        raise Malformed("empty topic filter")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            raise Malformed("bad topic filter %r" % f)


def topic_matches(flt, topic):
    """MQTT 3.1.1 section 4.7: `+` one level, `#` this level and all below (and the parent itself);
    a wildcard at the first level does not match a topic starting with `$`."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    fl, tl = flt.split("/"), topic.split("/")
    for i, f in enumerate(fl):
        if f == "#":
            return True
        if i >= len(tl) or (f != "+" and f != tl[i]):
            return False
    return len(fl) == len(tl)


# -- broker state -----------------------------------------------------------------------------
class _Message:
    """One application message as published, numbered in arrival order for the log."""
    __slots__ = ("n", "topic", "payload", "qos", "origin")

    def __init__(self, n, topic, payload, qos, origin):
        self.n, self.topic, self.payload, self.qos, self.origin = n, topic, bytes(payload), qos, origin


class _Session:
    def __init__(self, client_id, clean):
        self.client_id = client_id
        self.clean = clean
        self.subs = {}            # filter -> granted QoS, in subscription order
        self.inflight = {}        # pid -> (_Message, qos), in send order
        self.queue = deque()      # (_Message, qos) waiting: offline, or max_inflight reached
        self.last_pid = 0
        self.conn = None          # the live connection, or None


class _Conn:
    """The broker's side of one network connection (a Pipe) or of one in-process client."""

    def __init__(self, broker, label, transport):
        self.broker = broker
        self.label = label                 # "pipe3" / "local1": stable names for the log
        self.transport = transport
        self.opened_t = broker.clock()
        self.last_rx = self.opened_t
        self.open = True
        self.session = None                # set by an accepted CONNECT
        self.username = None
        self.will = None
        self.keepalive = 0
        self.buf = bytearray()

    @property
    def who(self):
        return self.session.client_id if self.session else self.label


class SimBroker:
    def __init__(self, clock, persistent=True, max_inflight=20, max_queued=1000,
                 authenticate=None, authorize=None, name="sim"):
        """clock(): virtual seconds (float). persistent: sessions with clean_session=0 (and retained
        messages) survive restart(), as mosquitto with persistence; False behaves like amqtt (lost).
        authenticate(client_id, username, password) -> bool (None: accept all).
        authorize(client_id, username, topic, action) -> bool, action 'publish'|'subscribe' (None: all).
        max_inflight 0 means no limit."""
        self.clock = clock
        self.persistent = persistent
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.authenticate = authenticate
        self.authorize = authorize
        self.name = name
        self.log = []
        self.stats = dict.fromkeys((
            "connects", "connects_refused", "disconnects", "takeovers", "expired", "malformed", "closed_by_client",
            "wills", "publishes_in", "publishes_refused", "no_subscribers", "delivered", "resent", "acked",
            "queued", "dropped_queue_full", "dropped_offline_qos0", "subscribes", "subscribes_refused",
            "unsubscribes", "retained_set", "retained_cleared", "pings", "restarts", "callback_errors",
            "bytes_lost"), 0)
        self._sessions = {}       # client_id -> _Session
        self._retained = {}       # topic -> _Message
        self._conns = []          # open connections in the order they were opened
        self._n_conn = 0
        self._n_msg = 0
        self._n_auto = 0
        self._locals = []         # LocalClients in creation order: pump() visits them in this order

    def _log(self, text):
        self.log.append((self.clock(), text))

    def _new_conn(self, kind, transport):
        self._n_conn += 1
        c = _Conn(self, "%s%d" % (kind, self._n_conn), transport)
        self._conns.append(c)
        return c

    # -- the interface ----------------------------------------------------------------------------
    def connect(self):
        """A new network connection from a client (the modem's TCP): a Pipe."""
        pipe = Pipe(self)
        self._log("open %s" % pipe._conn.label)
        return pipe

    def client(self, client_id, clean_session=False, will=None, username=None, password=None,
               keepalive_s=60, on_message=None, on_connect=None, on_disconnect=None):
        """An in-process client (the head-end) under the same session rules; call .connect() on it."""
        lc = LocalClient(self, client_id, clean_session, will, username, password, keepalive_s,
                         on_message, on_connect, on_disconnect)
        self._locals.append(lc)
        return lc

    def pump(self):
        """Expire keepalives (no packet for more than 1.5 x keepalive: closed, will published), close
        connections that never sent CONNECT, then hand every waiting message to the in-process clients.
        Nothing else is retried: in-flight QoS 1 is resent only on the next connect of its session."""
        now = self.clock()
        for c in list(self._conns):
            if not c.open or c.transport.__class__ is not Pipe:
                continue       # in-process clients ping from their own loop: never silent
            if c.session is None:
                if now - c.opened_t > CONNECT_TIMEOUT_S:
                    self._close(c, "no CONNECT within %gs" % CONNECT_TIMEOUT_S, will=False)
            elif c.keepalive and now - c.last_rx > 1.5 * c.keepalive:
                self.stats["expired"] += 1
                self._close(c, "keepalive expired (%gs silent, keepalive %ds)" % (now - c.last_rx, c.keepalive),
                            will=True)
        busy = True
        while busy:
            busy = False
            for lc in list(self._locals):
                if lc._inbox:
                    lc._deliver_one()
                    busy = True

    def restart(self):
        """A broker crash and restart: every connection closed (pipes see EOF, in-process clients get
        on_disconnect), no wills; sessions with clean_session=0 and retained messages kept iff persistent."""
        self.stats["restarts"] += 1
        self._log("restart (persistent=%s)" % self.persistent)
        for c in list(self._conns):
            self._close(c, "broker restart", will=False)
        if not self.persistent:
            self._sessions.clear()
            self._retained.clear()

    def sessions(self):
        return {cid: {"connected": s.conn is not None, "subs": dict(s.subs), "queued": len(s.queue),
                      "inflight": len(s.inflight)} for cid, s in self._sessions.items()}

    @property
    def retained(self):
        return {t: m.payload for t, m in self._retained.items()}

    # -- packets --------------------------------------------------------------------------------
    def _feed(self, c, data):
        """Parse every whole packet in what a pipe sent; a partial packet waits for the rest."""
        c.buf += data
        while c.open and len(c.buf) >= 2:
            n, shift, i = 0, 0, 1
            while True:
                if i >= len(c.buf):
                    return
                b = c.buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if shift >= 28:
                    return self._malformed(c, "remaining length longer than 4 bytes")
            if len(c.buf) < i + n:
                return
            first, body = c.buf[0], bytes(c.buf[i:i + n])
            del c.buf[:i + n]
            c.last_rx = self.clock()
            try:
                d = decode_client_packet(first, body)
            except Malformed as e:
                return self._malformed(c, str(e))
            self._packet(c, d)

    def _malformed(self, c, why):
        self.stats["malformed"] += 1
        self._close(c, "malformed: " + why, will=True)

    def _packet(self, c, d):
        t = d["type"]
        if c.session is None:
            if t != CONNECT:
                return self._malformed(c, "packet type %d before CONNECT" % t)
            return self._connect(c, d)
        if t == CONNECT:
            self._malformed(c, "second CONNECT")
        elif t == PUBLISH:
            if d["qos"] == 2:
                self._close(c, "QoS 2 PUBLISH (unsupported)", will=True)
                return
            self._publish_in(c, d["topic"], d["payload"], d["qos"], d["retain"], d["dup"])
            if d["qos"] == 1 and c.open:
                self._write(c, _packet(PUBACK, 0, _u16(d["pid"])))
        elif t == PUBACK:
            self._puback(c.session, d["pid"])
        elif t == SUBSCRIBE:
            codes = self._subscribe(c, d["topics"])
            self._write(c, _packet(SUBACK, 0, _u16(d["pid"]) + bytes(codes)))
            self._send_retained(c, d["topics"], codes)
        elif t == UNSUBSCRIBE:
            self._unsubscribe(c, d["topics"])
            self._write(c, _packet(UNSUBACK, 0, _u16(d["pid"])))
        elif t == PINGREQ:
            self.stats["pings"] += 1
            self._write(c, _packet(PINGRESP, 0))
        elif t == DISCONNECT:
            self.stats["disconnects"] += 1
            self._close(c, "DISCONNECT", will=False)
        else:   # PUBREC, PUBREL, PUBCOMP: QoS 2 flows
            self._close(c, "QoS 2 packet type %d (unsupported)" % t, will=True)

    def _connect(self, c, d):
        """CONNECT -> CONNACK; on success the session is created or resumed, an older connection with
        the same client id is taken over, in-flight messages are resent with DUP, then the queue."""
        if d["level"] != 4:
            return self._refuse(c, d.get("client_id", "?"), BAD_PROTOCOL, "protocol level %d" % d["level"])
        cid, clean = d["client_id"], d["clean"]
        if not cid:
            if not clean:
                return self._refuse(c, cid, BAD_CLIENT_ID, "empty client id with clean_session=0")
            self._n_auto += 1
            cid = "auto-%d" % self._n_auto
        if self.authenticate and not self.authenticate(cid, d["username"], d["password"]):
            code = BAD_CREDENTIALS if d["username"] is not None else NOT_AUTHORISED
            return self._refuse(c, cid, code, "authentication failed")
        old = self._sessions.get(cid)
        if old is not None and old.conn is not None:
            self.stats["takeovers"] += 1
            self._close(old.conn, "taken over by %s" % c.label, will=True)
            old = self._sessions.get(cid)          # a clean session ended with its connection
        if clean and old is not None:
            del self._sessions[cid]
            old = None
        present = old is not None
        s = old or _Session(cid, clean)
        s.clean = clean
        self._sessions[cid] = s
        s.conn = c
        c.session, c.username, c.will, c.keepalive = s, d["username"], d["will"], d["keepalive"]
        self.stats["connects"] += 1
        self._log("connect %s via %s clean=%d keepalive=%d session_present=%d inflight=%d queued=%d"
                  % (cid, c.label, clean, c.keepalive, present, len(s.inflight), len(s.queue)))
        self._write(c, _packet(CONNACK, 0, bytes((1 if present else 0, ACCEPTED))))
        for pid, (m, q) in list(s.inflight.items()):
            self._log("resend msg%d %s -> %s pid=%d dup=1" % (m.n, m.topic, cid, pid))
            self._emit(c, m, q, pid, dup=True, retain=False)
        self._drain(s)
        # last, as a client reads CONNACK and acts on it after these were already on their way
        c.transport._connected(present)

    def _refuse(self, c, cid, code, why):
        self.stats["connects_refused"] += 1
        self._log("refuse %s via %s code=%d (%s)" % (cid, c.label, code, why))
        self._write(c, _packet(CONNACK, 0, bytes((0, code))))
        c.transport._refused(code)
        self._close(c, "CONNACK %d" % code, will=False)

    def _close(self, c, why, will):
        """End a connection: the pipe sees EOF (once its bytes are read), a local client gets
        on_disconnect; the will is published if asked; a clean session ends with it."""
        if not c.open:
            return
        c.open = False
        self._conns.remove(c)
        s = c.session
        self._log("close %s (%s)" % (c.who + ("" if c.who == c.label else " via " + c.label), why))
        if s is not None and s.conn is c:
            s.conn = None
            if s.clean and self._sessions.get(s.client_id) is s:
                del self._sessions[s.client_id]
        c.transport._closed(why)
        if will and c.will is not None and s is not None:
            topic, payload, qos, retain = c.will
            self.stats["wills"] += 1
            self._log("will of %s: %s" % (s.client_id, topic))
            self._publish_in(c, topic, payload, min(qos, 1), retain, False, will=True)

    # -- routing ------------------------------------------------------------------------------
    def _allowed(self, c, topic, action):
        if self.authorize is None:
            return True
        s = c.session
        return bool(self.authorize(s.client_id, c.username, topic, action))

    def _publish_in(self, c, topic, payload, qos, retain, dup, will=False):
        """A message from a client (or its will): retained if asked, routed to every matching session
        at min(publish QoS, subscription QoS), one copy per session, sessions in the order they began."""
        src = c.session.client_id
        self.stats["publishes_in"] += 1
        if not self._allowed(c, topic, "publish"):
            self.stats["publishes_refused"] += 1
            self._log("refuse publish %s from %s (not authorised)" % (topic, src))
            return
        self._n_msg += 1
        m = _Message(self._n_msg, topic, payload, qos, src)
        self._log("publish msg%d %s qos=%d%s%s from %s (%d bytes%s)" % (
            m.n, topic, qos, " retain" if retain else "", " dup" if dup else "", src, len(m.payload),
            ", its will" if will else ""))
        if retain:
            self._retained.pop(topic, None)
            if m.payload:
                self._retained[topic] = m
                self.stats["retained_set"] += 1
            else:
                self.stats["retained_cleared"] += 1
        routed = 0
        for s in list(self._sessions.values()):
            granted = [q for f, q in s.subs.items() if topic_matches(f, topic)]
            if granted:
                routed += 1
                self._route(s, m, min(qos, max(granted)), retain=False)
        if not routed:
            self.stats["no_subscribers"] += 1
            self._log("route msg%d to nobody (no matching subscription)" % m.n)

    def _route(self, s, m, q, retain):
        if s.conn is None:
            if q == 0:
                self.stats["dropped_offline_qos0"] += 1
                self._log("drop msg%d -> %s (offline, qos 0)" % (m.n, s.client_id))
                return
            return self._enqueue(s, m, q)
        if q == 0:
            return self._emit(s.conn, m, 0, 0, dup=False, retain=retain)
        if s.queue or (self.max_inflight and len(s.inflight) >= self.max_inflight):
            return self._enqueue(s, m, q)
        self._send_new(s, m, q, retain)

    def _enqueue(self, s, m, q):
        if self.max_queued and len(s.queue) >= self.max_queued:
            old, _ = s.queue.popleft()
            self.stats["dropped_queue_full"] += 1
            self._log("drop msg%d -> %s (queue full, %d)" % (old.n, s.client_id, self.max_queued))
        s.queue.append((m, q))
        self.stats["queued"] += 1
        self._log("queue msg%d -> %s (%s, %d queued)" % (
            m.n, s.client_id, "offline" if s.conn is None else "inflight full", len(s.queue)))

    def _send_new(self, s, m, q, retain=False):
        pid = self._next_pid(s)
        s.inflight[pid] = (m, q)
        self._log("send msg%d %s -> %s pid=%d qos=%d" % (m.n, m.topic, s.client_id, pid, q))
        self._emit(s.conn, m, q, pid, dup=False, retain=retain)

    def _drain(self, s):
        """Move queued messages in flight, oldest first, while the session is online and has room."""
        while s.queue and s.conn is not None and not (self.max_inflight and len(s.inflight) >= self.max_inflight):
            m, q = s.queue.popleft()
            self._send_new(s, m, q)

    @staticmethod
    def _next_pid(s):
        while True:
            s.last_pid = s.last_pid % 0xFFFF + 1
            if s.last_pid not in s.inflight:
                return s.last_pid

    def _emit(self, c, m, q, pid, dup, retain):
        self.stats["resent" if dup else "delivered"] += 1
        c.transport._publish(m, q, pid, dup, retain)

    def _puback(self, s, pid):
        if s.inflight.pop(pid, None) is None:
            self._log("puback from %s for unknown pid %d (ignored)" % (s.client_id, pid))
            return
        self.stats["acked"] += 1
        self._drain(s)

    def _subscribe(self, c, topics):
        s = c.session
        codes = []
        for f, q in topics:
            self.stats["subscribes"] += 1
            if not self._allowed(c, f, "subscribe"):
                self.stats["subscribes_refused"] += 1
                self._log("refuse subscribe %s by %s (not authorised)" % (f, s.client_id))
                codes.append(SUBACK_FAILURE)
                continue
            s.subs[f] = min(q, 1)
            codes.append(s.subs[f])
            self._log("subscribe %s to %s qos=%d" % (s.client_id, f, s.subs[f]))
        return codes

    def _send_retained(self, c, topics, codes):
        s = c.session
        for (f, _), code in zip(topics, codes):
            if code == SUBACK_FAILURE:
                continue
            for topic in sorted(self._retained):
                if c.open and topic_matches(f, topic):
                    m = self._retained[topic]
                    q = min(m.qos, code)
                    self._log("retained msg%d %s -> %s" % (m.n, topic, s.client_id))
                    if q == 0:
                        self._emit(c, m, 0, 0, dup=False, retain=True)
                    elif s.queue or (self.max_inflight and len(s.inflight) >= self.max_inflight):
                        self._enqueue(s, m, q)
                    else:
                        self._send_new(s, m, q, retain=True)

    def _unsubscribe(self, c, topics):
        s = c.session
        for f in topics:
            self.stats["unsubscribes"] += 1
            if s.subs.pop(f, None) is not None:
                self._log("unsubscribe %s from %s" % (s.client_id, f))

    def _write(self, c, data):
        c.transport._write(data)


class Pipe:
    """What the simulated modem uses in place of a TCP socket to the broker. Bytes sent are handled at
    once; the broker's answers wait for recv. close() is a FIN the broker sees now; abandon() is a
    network that vanished: the broker notices only when the keepalive expires."""

    def __init__(self, broker):
        self._broker = broker
        self._conn = broker._new_conn("pipe", self)
        self._out = bytearray()
        self._eof = False            # the broker closed: recv gives b"" after the bytes before it
        self._client_closed = False  # the client closed
        self._abandoned = False

    # socket stand-ins
    def setblocking(self, flag):
        pass

    def setsockopt(self, *a):
        pass

    @property
    def pending(self):
        return 0 if self._abandoned else len(self._out)

    def send(self, data):
        if self._client_closed:
            raise OSError(9, "send on a closed pipe")
        if self._abandoned or self._eof:
            self._broker.stats["bytes_lost"] += len(data)   # into a dead network / a closed peer
            return len(data)
        self._broker._feed(self._conn, bytes(data))
        return len(data)

    sendall = send

    def recv(self, n):
        if self._client_closed:
            raise OSError(9, "recv on a closed pipe")
        if self._abandoned or (not self._out and not self._eof):
            raise BlockingIOError(11, "nothing waiting")
        out = bytes(self._out[:n])
        del self._out[:n]
        return out               # b"" once the broker closed and everything before it was read

    def close(self):
        if self._client_closed:
            return
        self._client_closed = True
        if not self._abandoned and self._conn.open:
            self._broker.stats["closed_by_client"] += 1
            self._broker._close(self._conn, "closed by the client", will=True)

    def abandon(self):
        """The network between client and broker vanished: nothing more arrives either way."""
        if not self._abandoned:
            self._abandoned = True
            self._out.clear()
            self._broker._log("network gone under %s (the broker does not know)" % self._conn.who)

    # the broker's side
    def _write(self, data):
        if self._abandoned:
            self._broker.stats["bytes_lost"] += len(data)
        else:
            self._out += data

    def _publish(self, m, q, pid, dup, retain):
        self._write(encode_publish(m.topic, m.payload, q, pid, dup, retain))

    def _connected(self, present):
        pass

    def _refused(self, code):
        pass

    def _closed(self, why):
        self._eof = True


class LocalClient:
    """An in-process client (the head-end) with the same session rules as a network client. Its
    packets reach the broker inside the call; messages for it wait until the broker's pump().
    on_connect(session_present), on_disconnect(reason), on_message(topic, payload, qos, dup, retain):
    a QoS 1 message is acknowledged when on_message returns; if it raises, it stays unacknowledged
    (redelivered with DUP on the next connect of a persistent session) and the error is kept in .errors."""

    def __init__(self, broker, client_id, clean_session, will, username, password, keepalive_s,
                 on_message, on_connect, on_disconnect):
        self._broker = broker
        self.client_id = client_id
        self.clean_session = clean_session
        self.will = will
        self.username = username
        self.password = password
        self.keepalive_s = keepalive_s
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self._conn = None
        self._inbox = deque()
        self.last_code = None      # the last CONNACK return code
        self.errors = []           # (t, topic, repr(exception)) from on_message

    @property
    def connected(self):
        return self._conn is not None and self._conn.open and self._conn.session is not None

    def connect(self):
        """(Re)connect. Returns the CONNACK code (0 accepted); on_connect(session_present) runs on
        success. Connecting while connected first drops the old link as a lost network connection
        would (the broker publishes its will), as a client that reconnects does."""
        b = self._broker
        if self.connected:
            b._close(self._conn, "link dropped by %s to reconnect" % self.client_id, will=True)
        c = b._new_conn("local", self)
        b._log("open %s for %s" % (c.label, self.client_id))
        self._conn = c
        b._connect(c, {"type": CONNECT, "level": 4, "clean": self.clean_session, "keepalive": self.keepalive_s,
                       "client_id": self.client_id, "will": self.will, "username": self.username,
                       "password": self.password})
        return self.last_code

    def publish(self, topic, payload, qos=1, retain=False):
        """Returns True once the broker has it (a QoS 1 PUBACK is immediate in-process), False when not
        connected (nothing is queued client-side)."""
        if not self.connected:
            return False
        check_topic(topic)
        if isinstance(payload, str):
            payload = payload.encode()
        self._broker._publish_in(self._conn, topic, payload, min(qos, 1), retain, False)
        return True

    def subscribe(self, topic_filter, qos=1):
        """Returns the granted QoS (0x80 refused), or None when not connected."""
        if not self.connected:
            return None
        check_filter(topic_filter)
        c = self._conn
        codes = self._broker._subscribe(c, [(topic_filter, qos)])
        self._broker._send_retained(c, [(topic_filter, qos)], codes)
        return codes[0]

    def unsubscribe(self, topic_filter):
        if self.connected:
            self._broker._unsubscribe(self._conn, [topic_filter])

    def disconnect(self):
        """A clean DISCONNECT: no will; a clean session ends."""
        if self.connected:
            self._broker.stats["disconnects"] += 1
            self._broker._close(self._conn, "DISCONNECT", will=False)

    # the broker's side
    def _write(self, data):
        pass     # CONNACK/SUBACK/... are return values here

    def _publish(self, m, q, pid, dup, retain):
        self._inbox.append((self._conn, m, q, pid, dup, retain))

    def _connected(self, present):
        self.last_code = ACCEPTED
        if self.on_connect:
            self.on_connect(present)

    def _refused(self, code):
        self.last_code = code

    def _closed(self, why):
        self._inbox.clear()        # QoS 1 among them stay in flight in the session: resent on reconnect
        if self.on_disconnect and self.last_code == ACCEPTED:
            self.on_disconnect(why)

    def _deliver_one(self):
        conn, m, q, pid, dup, retain = self._inbox.popleft()
        if conn is not self._conn or not conn.open:
            return
        try:
            if self.on_message:
                self.on_message(m.topic, m.payload, q, dup, retain)
        except Exception as e:      # the head-end crashed while handling it: no PUBACK
            self._broker.stats["callback_errors"] += 1
            self.errors.append((self._broker.clock(), m.topic, repr(e)))
            self._broker._log("on_message of %s raised %r on msg%d (left unacknowledged)" % (
                self.client_id, e, m.n))
            return
        if q == 1 and conn.open and conn is self._conn:
            self._broker._puback(conn.session, pid)
