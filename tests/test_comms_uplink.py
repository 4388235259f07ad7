"""The uplink queue: kept in flash until PUBACKed, sent oldest first with the same bytes after a lost
session, bounded with the overflow counted and reported once there is room, readings on the period."""
import json

from comms.mqtt import UP
from comms.protocol import Protocol
from comms.uplink import Uplink
from comms_support import FakeClock, FakeStore


class FakeMQTT:
    def __init__(self, room=4):
        self.state = UP
        self.room = room
        self.sent = []
        self.inflight = {}
        self._pid = 0

    def can_publish(self):
        return len(self.inflight) < self.room

    def publish(self, topic, payload, qos=1, retain=False):
        if not self.can_publish():
            return None
        self._pid += 1
        self.inflight[self._pid] = payload
        self.sent.append((self._pid, payload))
        return self._pid


def make(store=None, capacity=5, read=None):
    store = store or FakeStore()
    clock = FakeClock()
    proto = Protocol("M", b"k" * 32, store, lambda e: None)
    return Uplink(proto, store, clock, "meters/M/up", capacity, 900, read), store, clock


def inner(env):
    return json.loads(json.loads(env)["p"])


def test_entries_stay_until_puback_and_survive_reboot():
    up, store, clock = make()
    up.event("tamper", {"n": 1})
    up.event("tamper", {"n": 2})
    m = FakeMQTT()
    up.poll(m)
    assert [inner(p)["data"]["n"] for _, p in m.sent] == [1, 2]
    up.on_puback(1)
    assert len(up.queue) == 1
    up2, _, _ = make(store)  # reboot: what was not acknowledged is still there
    assert [inner(e)["data"]["n"] for e in up2.queue] == [2]
    assert up2.ev_seq == 2


def test_lost_session_resends_the_same_bytes_in_order():
    up, store, clock = make()
    for n in range(3):
        up.event("x", {"n": n})
    m = FakeMQTT()
    up.poll(m)
    first = [p for _, p in m.sent]
    up.session_lost()
    m2 = FakeMQTT()
    up.poll(m2)
    assert [p for _, p in m2.sent] == first
    up.poll(m2)
    assert len(m2.sent) == 3  # nothing sent twice within one session


def test_overflow_drops_oldest_and_reports_count_when_room_returns():
    up, store, clock = make(capacity=5)
    for n in range(8):
        up.event("x", {"n": n})
    assert [inner(e)["data"]["n"] for e in up.queue] == [3, 4, 5, 6, 7] and up.dropped == 3
    up.poll(None)
    assert not any(inner(e)["kind"] == "queue_overflow" for e in up.queue)  # still full
    m = FakeMQTT(room=1)
    up.poll(m)
    up.on_puback(1)
    up.poll(m)
    kinds = [inner(e)["kind"] for e in up.queue]
    assert kinds[-1] == "queue_overflow" and inner(up.queue[-1])["data"] == {"dropped": 3}
    seqs = [json.loads(e)["s"] for e in up.queue]
    assert seqs == sorted(seqs)  # the report never overtakes older entries


def test_publishing_respects_the_in_flight_room():
    up, store, clock = make(capacity=10)
    for n in range(6):
        up.event("x", {"n": n})
    m = FakeMQTT(room=2)
    up.poll(m)
    assert len(m.sent) == 2


def test_readings_on_the_period_boundary():
    up, store, clock = make(read=lambda: {"import_wh": 5})
    up.poll(None)
    clock.advance(3600 * 1000)
    up.poll(None)
    up.poll(None)
    r = [inner(e) for e in up.queue]
    assert len(r) == 1 and r[0]["t"] == "reading" and r[0]["ts"] % 900 == 0 and r[0]["import_wh"] == 5


def test_when_full_readings_are_dropped_before_results_and_events():
    up, store, clock = make(capacity=5)
    up.event("supply_open", {"n": 0})
    for n in range(3):
        up.send_inner({"t": "reading", "import_wh": 100 + n})
    up.event("tamper", {"n": 1})
    up.event("low_credit", {"n": 2})          # full: the oldest reading goes, not the older event
    up.event("supply_close", {"n": 3})        # and the next one
    kinds = [inner(e).get("kind") or inner(e)["t"] for e in up.queue]
    assert kinds == ["supply_open", "reading", "tamper", "low_credit", "supply_close"]
    assert inner(up.queue[1])["import_wh"] == 102                  # the newest reading is kept
    up.event("x", {"n": 4})
    up.event("y", {"n": 5})                   # no reading left to give: the oldest entry goes
    kinds = [inner(e).get("kind") for e in up.queue]
    assert kinds == ["tamper", "low_credit", "supply_close", "x", "y"] and up.dropped == 4


class RecordStore:
    """A store with the firmware's own record encoding and its 4096-byte limit."""

    def __init__(self):
        from store.records import encode
        self.encode = encode
        self.recs = {}

    def load(self, name):
        return self.recs.get(name)

    def commit(self, name, obj):
        self.encode(obj)            # raises ValueError past the record limit, as on the meter
        self.recs[name] = json.loads(json.dumps(obj))


def test_a_long_outage_never_grows_the_queue_past_what_its_record_can_hold():
    """Readings and results pile up while the link is down; every save must still fit the store's
    record (a queue that outgrew it failed every message after it, and the link never recovered)."""
    store = RecordStore()
    up, _, clock = make(store, capacity=32)
    proto = up.protocol
    proto.send_result = up.enqueue
    for n in range(200):
        up.send_inner({"t": "reading", "ts": n, "import_wh": 10 ** 6 + n, "credit": 123456, "debt": 0,
                       "reasons": "no_credit,remote", "tamper": ["imbalance"], "link": {"rssi": -75}})
        proto._result("t-%012d" % (n % 7), "accepted", {"added": 250, "credit": 123456})
    kept = store.recs["uplink"]["q"]
    assert len(store.encode(store.recs["uplink"])[1]) <= 4096
    refs = [inner(e)["ref"] for e in kept if inner(e)["t"] == "result"]
    assert len(refs) == len(set(refs)), "two queued results answer the same message: %r" % refs
    assert sorted(refs) == ["t-%012d" % i for i in range(7)], refs    # every message still has its answer
    seqs = [json.loads(e)["s"] for e in kept]
    assert seqs == sorted(seqs), "the queue no longer sends in sequence order"
    assert up.dropped > 0


def test_a_result_replaces_an_older_unsent_result_for_the_same_message():
    up, store, clock = make(capacity=10)
    up.protocol.send_result = up.enqueue
    up.protocol._result("t-1", "fault", {"error": "MemoryError"})
    up.protocol._result("t-2", "accepted", {})
    up.protocol._result("t-1", "accepted", {"added": 5})
    got = [(inner(e)["ref"], inner(e)["code"]) for e in up.queue]
    assert got == [("t-2", "accepted"), ("t-1", "accepted")], got


def test_a_queue_full_by_bytes_reports_its_overflow_once_room_returns_and_is_not_rewritten_meanwhile():
    """An offline meter whose queue is full by its bytes (fewer entries than its capacity) once queued a
    `queue_overflow` event at every poll: each pushed the oldest entry out, so the count was never
    cleared, and every poll rewrote the whole 3.8 KB record (twice with the store's mirror)."""
    store = RecordStore()
    commits = []
    real_commit = store.commit
    store.commit = lambda name, obj: (commits.append(name), real_commit(name, obj))
    up, _, clock = make(store, capacity=32)
    big = "z" * 900
    for n in range(6):
        up.event("big", {"n": n, "pad": big})
    assert len(up.queue) < up.capacity and up.dropped > 0, (len(up.queue), up.dropped)
    dropped, queue, ev = up.dropped, list(up.queue), up.ev_seq
    del commits[:]
    for _ in range(50):                  # offline polls: nothing to say until there is room
        up.poll(None)
    assert commits == [], "%d commits while nothing changed" % len(commits)
    assert up.queue == queue and up.dropped == dropped and up.ev_seq == ev
    m = FakeMQTT(room=8)
    up.poll(m)
    for pid in list(m.inflight):
        up.on_puback(pid)
    up.poll(m)
    overflow = [inner(e)["data"] for e in up.queue if inner(e)["kind"] == "queue_overflow"]
    assert overflow == [{"dropped": dropped}], overflow
    assert up.dropped == 0, "the report itself pushed an entry out (%d dropped)" % up.dropped


def test_the_room_kept_for_the_overflow_report_holds_one_with_a_long_meter_id_and_large_counters():
    from comms.uplink import _OVERFLOW_ROOM, _cost
    store = FakeStore()
    proto = Protocol("M" * 32, b"k" * 32, store, lambda e: None)
    proto._tx = proto._tx_limit = 10 ** 10 - 2
    up = Uplink(proto, store, FakeClock(), "meters/%s/up" % ("M" * 32), 32, 900)
    up.ev_seq = 10 ** 10 - 2
    up.event("queue_overflow", {"dropped": 10 ** 6})
    assert _cost(up.queue[-1]) <= _OVERFLOW_ROOM, (_cost(up.queue[-1]), up.queue[-1])


def test_when_full_events_go_before_results_so_the_head_ends_books_close():
    """A burst of remote top-ups (a result and a `topup` event each) while the link pauses: the results
    stay, the events go first. A dropped result made the head-end resend the top-up, and a meter that
    had forgotten it answered `used`."""
    up, store, clock = make(capacity=6)
    up.protocol.send_result = up.enqueue
    for n in range(5):
        up.protocol._result("t-%d" % n, "accepted", {"added": 100 + n})
        up.event("topup", {"ref": "t-%d" % n})
    kept = [(inner(e)["t"], inner(e).get("ref") or inner(e)["data"]["ref"]) for e in up.queue]
    assert kept == [("result", "t-0"), ("result", "t-1"), ("result", "t-2"), ("result", "t-3"),
                    ("result", "t-4"), ("event", "t-4")], kept
    assert up.dropped == 4
    seqs = [json.loads(e)["s"] for e in up.queue]
    assert seqs == sorted(seqs)
    for n in range(5, 8):            # only results left to give: the oldest result goes
        up.protocol._result("t-%d" % n, "accepted", {})
    refs = [inner(e).get("ref") for e in up.queue if inner(e)["t"] == "result"]
    assert refs == ["t-2", "t-3", "t-4", "t-5", "t-6", "t-7"], refs
