"""The uplink queue: readings on a period and events as they happen, sealed into envelopes and kept
in flash until the head-end's broker PUBACKs them, sent oldest first whenever the MQTT session is up.

Bounded in entries and in bytes: the whole queue is one store record, which holds at most 4096 bytes
once JSON has escaped the envelopes' quotes, so the queue keeps its encoded size under `_MAX_BYTES`
(a queue that outgrew its record could never be saved again, and every message after it would fail:
a long outage must not end the meter's link). A result replaces an older unsent result for the same
message (the meter's answer to a redelivery says the same). When full the oldest reading is dropped
(the cumulative registers in the readings after it cover it), else the oldest event or statement,
else the oldest result, and counted; once there is room again a `queue_overflow` event with the count is
queued behind what is left, so sequence numbers stay in sending order (the head-end rejects s <= last
accepted, so nothing may overtake an older entry). "Room" is an entry and the report's bytes: a report
that pushed another entry out would be due again at the next poll."""
from micropython import const

_RECORD = "uplink"
_READING = '\\"t\\": \\"reading\\"'   # how a reading's inner text shows inside its envelope
_RESULT = '\\"t\\": \\"result\\"'
_MAX_BYTES = const(3800)               # the queue's encoded size, under the store's 4096-byte record
# What a `queue_overflow` report takes in the queue: 273 bytes with a 1-character meter id, 305 with
# 32 characters and 10-digit counters. It is queued only when it fits without pushing anything out.
_OVERFLOW_ROOM = const(340)


def _cost(env):
    """Bytes `env` takes in the queue's JSON record: quotes and backslashes are escaped again."""
    return len(env) + env.count('"') + env.count("\\") + 4


class Uplink:
    def __init__(self, protocol, store, clock, topic, capacity=32, period_s=900, read=None):
        self.protocol = protocol
        self.store = store
        self.clock = clock
        self.topic = topic
        self.capacity = capacity
        self.period_s = period_s
        self.read = read  # () -> reading dict (without "t"), or None when not ready
        st = store.load(_RECORD) or {}
        self.queue = st.get("q", [])  # envelope texts, oldest first
        self._bytes = 0
        for e in self.queue:
            self._bytes += _cost(e)
        self.dropped = st.get("dropped", 0)
        self.ev_seq = st.get("ev", 0)
        self._sent = {}  # pid -> envelope text, for this MQTT session only
        self._next_reading = None
        self._last_ms = None  # ticks of the last entry queued (flowing)
        self.stats = {"queued": 0, "sent": 0, "acked": 0, "dropped_total": 0}

    def set_period(self, period_s):
        """A new reading period (set_config): the next reading falls on its grid."""
        self.period_s = period_s
        self._next_reading = None

    def _save(self):
        self.store.commit(_RECORD, {"q": self.queue, "dropped": self.dropped, "ev": self.ev_seq})

    def _remove(self, i):
        old = self.queue.pop(i)
        self._bytes -= _cost(old)
        for pid in self._sent:
            if self._sent[pid] is old:
                self._sent.pop(pid)
                break

    def enqueue(self, envelope, ref=None):
        """Add a sealed envelope (bytes or str); the oldest goes if the queue is full. `ref`: the
        message id a result answers (an older unsent result for it is replaced)."""
        if isinstance(envelope, bytes):
            envelope = envelope.decode()
        cost = _cost(envelope)
        if cost > _MAX_BYTES // 2:
            self.dropped += 1           # cannot be kept at all: counted, reported with the overflow
            self.stats["dropped_total"] += 1
            return
        q = self.queue
        if ref is not None:
            mark = '\\"ref\\": \\"' + ref + '\\"'
            for i in range(len(q)):
                if mark in q[i] and not self._busy(q[i]):
                    self._remove(i)
                    break
        while q and (len(q) >= self.capacity or self._bytes + cost > _MAX_BYTES):
            self._remove(self._victim())
            self.dropped += 1
            self.stats["dropped_total"] += 1
        q.append(envelope)
        self._last_ms = self.clock.ticks_ms()
        self._bytes += cost
        self.stats["queued"] += 1
        self._save()

    def flowing(self):
        """Entries waiting, or one queued in the last 5 s: a burst (top-ups back to back) empties the
        queue between its entries, and an escape to command mode then would stop it for seconds."""
        c = self.clock
        return len(self.queue) > 0 or (self._last_ms is not None and c.ticks_diff(c.ticks_ms(), self._last_ms) < 5000)

    def _victim(self):
        """The entry to drop: the oldest reading (the registers in the next one cover it), else the
        oldest event or statement, else the oldest result. A result is what closes the head-end's books
        on a downlink; once dropped, a resend may find it forgotten and be answered `used`."""
        q = self.queue
        other = -1
        for i in range(len(q)):
            if _READING in q[i]:
                return i
            if other < 0 and _RESULT not in q[i]:
                other = i
        return other if other >= 0 else 0

    def _busy(self, env):
        for pid in self._sent:
            if self._sent[pid] is env:
                return True
        return False

    def send_inner(self, inner):
        self.enqueue(self.protocol.seal(inner))

    def event(self, kind, data=None):
        """Queue an event message now (its own increasing event number, the meter's Unix time)."""
        self.ev_seq += 1
        self.send_inner({"t": "event", "seq": self.ev_seq, "ts": self.clock.time(), "kind": kind,
                         "data": data or {}})

    def reading_due(self):
        c = self.clock
        now = c.time()
        if self._next_reading is None:
            self._next_reading = now - now % self.period_s + self.period_s
            return False
        return now >= self._next_reading

    def quiet_ms(self):
        """Milliseconds until the next reading is due; 0 while entries wait or a report is owed."""
        if self.queue or self.dropped:
            return 0
        if not self.read:
            return 0x3FFFFFFF
        if self._next_reading is None:
            return 0
        q = (self._next_reading - self.clock.time()) * 1000
        return q if q > 0 else 0

    def poll(self, mqtt):
        """Queue a reading when due; publish unsent entries while the session has room."""
        if self.read and self.reading_due():
            now = self.clock.time()
            self._next_reading = now - now % self.period_s + self.period_s
            r = self.read()
            if r is not None:
                r["t"] = "reading"
                r["ts"] = now
                self.send_inner(r)
        # Room for the report itself: a report that pushed an entry out would count it and be due
        # again at the next poll, rewriting the whole record every poll while the link is down.
        if self.dropped and len(self.queue) < self.capacity and self._bytes + _OVERFLOW_ROOM <= _MAX_BYTES:
            n = self.dropped
            self.dropped = 0
            self.event("queue_overflow", {"dropped": n})
        if mqtt is None:
            return
        sent = self._sent
        for env in self.queue:
            if not mqtt.can_publish():
                break
            busy = False
            for pid in sent:
                if sent[pid] is env:
                    busy = True
                    break
            if busy:
                continue
            pid = mqtt.publish(self.topic, env, 1)
            if pid is None:
                break
            sent[pid] = env
            self.stats["sent"] += 1

    def session_lost(self):
        """Whatever was unacknowledged is sent again, same bytes, in the next session."""
        self._sent = {}

    def on_puback(self, pid):
        env = self._sent.pop(pid, None)
        if env is None:
            return
        for i in range(len(self.queue)):
            if self.queue[i] is env:
                self.queue.pop(i)
                self._bytes -= _cost(env)
                self.stats["acked"] += 1
                self._save()
                return
