"""An MQTT 3.1.1 client session for a byte transport that never blocks: `feed(bytes)` with what the
link delivered, `poll()` for timers (keepalive, retransmission, CONNACK wait), `write` injected.

QoS 1 both ways. Outgoing QoS 1 publishes stay in a bounded in-flight table until PUBACKed and are
re-sent with DUP after `retry_ms`; inbound QoS 1 is acknowledged only after `on_message` returned
True (the application has processed and persisted it), so a crash before that gets it redelivered.
A broker redelivers only on a new connection, so a message the application failed on (an exception:
memory, flash) ends the session after `redo_ms` (doubling while failures repeat, back to the start
after a success): the reconnect brings it again, and a full window of unacknowledged messages can
never stall the downlink of a link that stays up.
Any protocol error closes the session (`state` DOWN, `error` says why); the supervisor reconnects.

Liveness. A transparent cellular link fails silently (a hung modem swallows bytes), so the session
proves the link by pings: when idle, at three quarters of the keepalive; when a PUBACK is owed and
nothing was heard for `probe_ms`, at once; and for `brisk_ms` after a message from the head-end (a
transaction is under way and another often follows), whenever the link has been quiet `probe_ms`.
Nothing heard within the ping wait after a PINGREQ ends the session. The wait is tuned to the link:
the round trips of CONNACK and PINGRESP give a smoothed round trip and its variation (as TCP's
retransmission timer, RFC 6298), and the wait is their sum with four variations, at least
`_WAIT_MIN_MS` and at most `ping_wait_ms` (which also applies until a round trip has been seen). A
hung modem on a link answering in half a second is found in seconds, not tens of seconds; a slow or
jittery link keeps a longer wait, and a byte heard after the ping (a PINGRESP queued behind a
download) restarts it. The brisk window costs a few dozen two-byte pings per head-end message, a few
per month on a normal meter; the idle keepalive stays long."""
from micropython import const
from comms import mqttpkt as pkt

DOWN = const(0)
CONNECTING = const(1)
UP = const(2)

_CONNACK_MS = const(30000)
_REDO_MS = const(5000)
_REDO_MAX_MS = const(3600000)
_WAIT_MIN_MS = const(3000)      # the shortest ping wait, however fast the link has answered
_HDR = const(0)
_LEN = const(1)
_BODY = const(2)


class MQTTClient:
    def __init__(self, clock, write, client_id, user=None, password=None, keepalive_s=120, will=None,
                 on_message=None, on_puback=None, max_packet=4096, max_inflight=4, retry_ms=20000,
                 ping_wait_ms=10000, probe_ms=4000, brisk_ms=120000):
        self.clock = clock
        self.write = write
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.will = will
        self.on_message = on_message  # (topic, payload bytes, pid) -> True when processed
        self.on_puback = on_puback  # (pid) -> None
        self.max_packet = max_packet
        self.max_inflight = max_inflight
        self.retry_ms = retry_ms
        self.ping_wait_ms = ping_wait_ms
        self.probe_ms = probe_ms
        self.brisk_ms = brisk_ms
        self._brisk_until = None     # ticks until which the quiet link is probed every probe_ms
        self._redo_at = None         # ticks at which to reconnect for a redelivery
        self._redo_ms = _REDO_MS
        self._srtt = -1              # smoothed round trip, ms (-1: none seen yet)
        self._rttvar = 0
        self._buf = bytearray(max_packet)  # one body at a time, allocated once
        self.inflight = {}  # pid -> [packet bytes, sent ticks]
        self.subs = {}  # pid -> [filters]
        self._pid = 0
        self.state = DOWN
        self.error = None
        self.session_present = False
        self.stats = {"rx": 0, "tx": 0, "retx": 0, "errors": 0}
        self._reset_parser()

    # -- session -----------------------------------------------------------------------------
    def start(self):
        """Send CONNECT over a freshly opened transport."""
        self._reset_parser()
        self.state = CONNECTING
        self.error = None
        self._since = self._last_rx = self.clock.ticks_ms()
        self._srtt = -1      # a new connection may run over another bearer (2G after LTE): measured afresh
        self._send(pkt.connect(self.client_id, self.keepalive_s, self.user, self.password, self.will))

    def close(self, why):
        """The session is over (protocol error, link lost, or our choice); in-flight entries are
        dropped because the uplink queue keeps every message until its PUBACK and resends it."""
        if self.state != DOWN:
            self.state = DOWN
            self.error = why
            if why:
                self.stats["errors"] += 1
        self.inflight = {}
        self.subs = {}
        self._ping_due = None
        self._brisk_until = None
        self._redo_at = None  # the new connection is the redelivery

    def disconnect(self):
        if self.state == UP:
            self._send(pkt.simple(pkt.DISCONNECT))
        self.close(None)

    def quiet_ms(self):
        """Milliseconds until a timer of this session is due, 0 while anything is under way (a
        connect, a publish or subscription unacknowledged, a ping unanswered, the brisk window, a
        packet half-read, a redelivery planned)."""
        if (self.state != UP or self.inflight or self.subs or self._ping_due is not None
                or self._brisk_until is not None or self._redo_at is not None or self._phase != _HDR):
            return 0
        if not self.keepalive_s:
            return 0x3FFFFFFF
        q = self.keepalive_s * 750 - self.clock.ticks_diff(self.clock.ticks_ms(), self._last_tx)
        return q if q > 0 else 0

    def ping_wait(self):
        """How long a PINGREQ may go unanswered (nothing heard) before the link counts as dead, ms."""
        if self._srtt < 0:
            return self.ping_wait_ms
        w = self._srtt + 4 * self._rttvar
        return self.ping_wait_ms if w > self.ping_wait_ms else (_WAIT_MIN_MS if w < _WAIT_MIN_MS else w)

    def _rtt_sample(self, sent):
        r = self.clock.ticks_diff(self.clock.ticks_ms(), sent)
        if r < 0:
            return
        if self._srtt < 0:
            self._srtt = r
            self._rttvar = r // 2
        else:
            d = self._srtt - r
            self._rttvar = (3 * self._rttvar + (d if d >= 0 else -d)) // 4
            self._srtt = (7 * self._srtt + r) // 8

    def _send(self, data):
        self.write(data)
        self._last_tx = self.clock.ticks_ms()
        self.stats["tx"] += 1

    def next_pid(self):
        for _ in range(0xFFFF):
            self._pid = self._pid % 0xFFFF + 1
            if self._pid not in self.inflight and self._pid not in self.subs:
                return self._pid
        return 0

    def idle(self):
        """Nothing in flight and no packet half-received: a safe moment to leave data mode."""
        return not self.inflight and self._phase == _HDR

    def can_publish(self):
        return self.state == UP and len(self.inflight) < self.max_inflight

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish; returns the packet id (QoS 1), 0 for QoS 0, or None when not possible now."""
        if self.state != UP or (qos and len(self.inflight) >= self.max_inflight):
            return None
        pid = self.next_pid() if qos else 0
        p = pkt.publish(topic, payload, qos, pid, retain)
        if qos:
            self.inflight[pid] = [p, self.clock.ticks_ms()]
        self._send(p)
        return pid

    def subscribe(self, topic, qos=1):
        if self.state != UP:
            return None
        pid = self.next_pid()
        self.subs[pid] = [topic]
        self._send(pkt.subscribe(pid, [(topic, qos)]))
        return pid

    def poll(self):
        """Timers: CONNACK wait, retransmission with DUP, keepalive PINGREQ and its answer."""
        if self.state == DOWN:
            return
        c = self.clock
        now = c.ticks_ms()
        if self.state == CONNECTING:
            if c.ticks_diff(now, self._since) >= _CONNACK_MS:
                self.close("connack timeout")
            return
        for pid in self.inflight:
            e = self.inflight[pid]
            if c.ticks_diff(now, e[1]) >= self.retry_ms:
                p = e[0]
                if not p[0] & 8:
                    p = bytes((p[0] | 8,)) + p[1:]  # the DUP flag, once, then the same bytes
                    e[0] = p
                e[1] = now
                self.stats["retx"] += 1
                self._send(p)
        if self._redo_at is not None and c.ticks_diff(now, self._redo_at) >= 0 and not self.inflight:
            self._redo_at = None
            self._redo_ms = min(self._redo_ms * 2, _REDO_MAX_MS)
            self.close("redeliver")
            return
        if self.inflight and self.keepalive_s and c.ticks_diff(now, self._last_rx) >= self.keepalive_s * 1500:
            # Resends keep the idle ping below from ever running; nothing heard for 1.5 keepalives
            # while a PUBACK is owed means a dead link (a hung modem): end the session.
            self.close("no answer")
            return
        if self._ping_due is not None:
            heard = self._last_rx if c.ticks_diff(self._last_rx, self._ping_due) > 0 else self._ping_due
            if c.ticks_diff(now, heard) >= self.ping_wait():
                self.close("no pingresp")
            return
        quiet = c.ticks_diff(now, self._last_rx)
        if ((self.keepalive_s and c.ticks_diff(now, self._last_tx) >= self.keepalive_s * 1000 * 3 // 4)
                # ping at three quarters of the keepalive so the broker never sees silence past 1.5x
                or (self.inflight and quiet >= self.probe_ms)
                # a PUBACK is owed and the link went quiet: prove it now rather than at the keepalive
                or (self._brisk_until is not None and quiet >= self.probe_ms
                    and c.ticks_diff(now, self._last_tx) >= self.probe_ms)):
            # a transaction is under way: a link that died now must be noticed in seconds
            if self._brisk_until is not None and c.ticks_diff(now, self._brisk_until) >= 0:
                self._brisk_until = None
            self._ping_due = now
            self._send(pkt.simple(pkt.PINGREQ))

    # -- inbound framing -------------------------------------------------------------------
    def _reset_parser(self):
        self._phase = _HDR
        self._first = 0
        self._rlen = 0
        self._shift = 0
        self._got = 0
        self._ping_due = None

    def feed(self, data):
        """Consume bytes from the link; complete packets are handled as they finish."""
        self._last_rx = self.clock.ticks_ms()
        i = 0
        n = len(data)
        while i < n and self.state != DOWN:
            b = data[i]
            if self._phase == _HDR:
                self._first = b
                self._rlen = 0
                self._shift = 0
                self._phase = _LEN
                i += 1
            elif self._phase == _LEN:
                self._rlen |= (b & 0x7F) << self._shift
                self._shift += 7
                i += 1
                if self._rlen > self.max_packet or (b & 0x80 and self._shift >= 28):
                    self.close("packet too long")
                    return
                if not b & 0x80:
                    self._got = 0
                    self._phase = _BODY
                    if self._rlen == 0:
                        self._packet()
            else:
                take = self._rlen - self._got
                if take > n - i:
                    take = n - i
                self._buf[self._got:self._got + take] = data[i:i + take]
                self._got += take
                i += take
                if self._got == self._rlen:
                    self._packet()

    def _packet(self):
        self._phase = _HDR
        self.stats["rx"] += 1
        try:
            d = pkt.decode(self._first, memoryview(self._buf)[:self._rlen])
        except pkt.MQTTError as e:
            self.close("protocol: " + str(e))
            return
        t = d["type"]
        if self.state == CONNECTING:
            if t != pkt.CONNACK:
                self.close("expected connack")
            elif d["code"] != 0:
                self.close("connack refused %d" % d["code"])
            else:
                self.state = UP
                self.session_present = d["session_present"]
                self._rtt_sample(self._since)
            return
        if t == pkt.PUBLISH:
            if self.brisk_ms:
                self._brisk_until = self.clock.ticks_add(self.clock.ticks_ms(), self.brisk_ms)
            self._inbound(d)
        elif t == pkt.PUBACK:
            if self.inflight.pop(d["pid"], None) is not None and self.on_puback:
                self.on_puback(d["pid"])
        elif t == pkt.SUBACK:
            if self.subs.pop(d["pid"], None) is None:
                return
            if 0x80 in d["codes"]:
                self.close("subscription refused")
        elif t == pkt.PINGRESP:
            if self._ping_due is not None:
                self._rtt_sample(self._ping_due)
            self._ping_due = None
        elif t == pkt.UNSUBACK:
            pass
        else:  # QoS 2 flows, CONNACK twice, client-only packets: the broker is not speaking 3.1.1 to us
            self.close("unexpected packet %d" % t)

    def _inbound(self, d):
        done = True
        if self.on_message:
            try:
                done = self.on_message(d["topic"], d["payload"], d["pid"])
            except Exception as e:
                # The application failed on this message (memory, flash): leave it unacknowledged,
                # so the broker delivers it again, and keep reading the stream: an exception that
                # escaped here would leave the parser in the middle of the next packet.
                self.stats["errors"] += 1
                self.error = "on_message: %s" % type(e).__name__
                done = False
                if self._redo_at is None:
                    self._redo_at = self.clock.ticks_add(self.clock.ticks_ms(), self._redo_ms)
        if done and self._redo_at is None:
            self._redo_ms = _REDO_MS
        if d["qos"] == 1 and done and self.state == UP:
            self._send(pkt.ack(pkt.PUBACK, d["pid"]))

    def ack(self, pid):
        """Acknowledge an inbound QoS 1 message the application finished later (on_message False)."""
        if self.state == UP:
            self._send(pkt.ack(pkt.PUBACK, pid))
