"""The uplink queue: readings on a period and events as they happen, sealed into envelopes and kept
in flash until the head-end's broker PUBACKs them, sent oldest first whenever the MQTT session is up.

Bounded: when full the oldest reading is dropped (the cumulative registers in the readings after it
cover it), or the oldest entry when only results and events are left, and counted; once there is room again a
`queue_overflow` event with the count is queued behind what is left, so sequence numbers stay in
sending order (the head-end rejects s <= last accepted, so nothing may overtake an older entry)."""

_RECORD = "uplink"
_READING = '\\"t\\": \\"reading\\"'   # how a reading's inner text shows inside its envelope


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
        self.dropped = st.get("dropped", 0)
        self.ev_seq = st.get("ev", 0)
        self._sent = {}  # pid -> envelope text, for this MQTT session only
        self._next_reading = None
        self.stats = {"queued": 0, "sent": 0, "acked": 0, "dropped_total": 0}

    def _save(self):
        self.store.commit(_RECORD, {"q": self.queue, "dropped": self.dropped, "ev": self.ev_seq})

    def enqueue(self, envelope):
        """Add a sealed envelope (bytes or str); the oldest goes if the queue is full."""
        if isinstance(envelope, bytes):
            envelope = envelope.decode()
        while len(self.queue) >= self.capacity:
            q = self.queue
            at = 0
            for i in range(len(q)):     # readings go first: the registers in the next one cover them
                if _READING in q[i]:
                    at = i
                    break
            old = q.pop(at)
            for pid in self._sent:
                if self._sent[pid] is old:
                    self._sent.pop(pid)
                    break
            self.dropped += 1
            self.stats["dropped_total"] += 1
        self.queue.append(envelope)
        self.stats["queued"] += 1
        self._save()

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
        if self.dropped and len(self.queue) < self.capacity:
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
                self.stats["acked"] += 1
                self._save()
                return
