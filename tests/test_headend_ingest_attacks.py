"""The head-end's uplink checks against an attacker who holds a meter's broker login (issue 16): its own
downlink reflected back as an uplink, replayed, reordered and stale uplinks, wrong types and fields
that do not fit; each is rejected, reported (`uplink_rejected` with why) and never moves `up_seq`, so
the meter's genuine next uplink is still taken. Also: a bad outbox record or a failing publish stays
with its meter, silence alarms, and no kWh token for a money meter. The real HeadEnd on the
simulator's in-process broker, in a virtual clock."""
import json
import random

import pytest

from host_tools.errors import UsageError
from host_tools.headend import envelope, silence, vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store
from host_tools.sim.net.headend_client import SimHeadEndClient
from host_tools.sim.net.mqttbroker import SimBroker


class Clock:
    def __init__(self):
        self.t = 1767571200.0

    def __call__(self):
        return self.t


@pytest.fixture
def he(tmp_path):
    clock = Clock()
    csv_path, ks_path, rows = make_fleet(str(tmp_path / "fleet"), 2, rng=random.Random(7))
    store = Store(tmp_path / "he.db", clock=clock)
    store.import_csv(csv_path)
    broker = SimBroker(clock)
    h = HeadEnd(store, "mqtt://in-process", clock=clock, client=SimHeadEndClient(broker, clock=clock),
                fleet_silence_s=600, meter_silence_s=3600, silence_check_s=0).start()
    h.vclock, h.rows, h.broker = clock, rows, broker
    h.ks = vending.load_keystore(ks_path)
    yield h
    h.stop()
    store.close()


def key_of(row):
    return bytes.fromhex(row["message_key_hex"])


def up(row, seq, inner, key=None):
    return envelope.seal(key or key_of(row), row["meter_id"], seq, inner, direction=envelope.UP)


def up_seq(h, row):
    return h.store.meter(row["meter_id"])["up_seq"]


def rejections(h, row):
    return [e["data"]["why"] for e in h.store.events(row["meter_id"]) if e["kind"] == "uplink_rejected"]


def result(ref, code="accepted"):
    return {"t": "result", "ref": ref, "code": code, "detail": {}}


def test_reflected_downlink_is_rejected_and_the_meters_next_uplink_still_counts(he):
    row = he.rows[0]
    mid = row["meter_id"]
    assert he.ingest(mid, up(row, 10, result("x"))) == "result"
    # the head-end's own signed downlink with a high seq, republished on the meter's `up` topic
    down = envelope.seal(key_of(row), mid, 500, {"t": "cmd", "id": "c-1", "cmd": "relay_open", "args": {}})
    assert he.ingest(mid, down) == "rejected:wrong_type"
    # the same downlink type-disguised would still not verify: the MAC covers the direction
    body = json.loads(down)
    forged = json.dumps(dict(body, p=json.dumps(result("c-1")))).encode()
    assert he.ingest(mid, forged) == "rejected:bad_mac"
    # a downlink MAC'd body with an uplink type: sealed for `down`, so it fails as an uplink
    as_down = envelope.seal(key_of(row), mid, 600, result("c-1"), direction=envelope.DOWN)
    assert he.ingest(mid, as_down) == "rejected:bad_mac"
    assert up_seq(he, row) == 10, "a rejected uplink moved the counter"
    assert he.ingest(mid, up(row, 11, result("y"))) == "result"     # the genuine s=11 is taken
    assert rejections(he, row) == ["wrong_type", "bad_mac", "bad_mac"]


def test_replayed_reordered_and_stale_uplinks_never_act_or_move_the_counter(he):
    row = he.rows[0]
    mid = row["meter_id"]
    first = up(row, 5, {"t": "event", "seq": 1, "ts": 1767571200, "kind": "low_credit", "data": {}})
    newer = up(row, 7, {"t": "event", "seq": 2, "ts": 1767571260, "kind": "tamper", "data": {}})
    older = up(row, 6, {"t": "event", "seq": 3, "ts": 1767571230, "kind": "supply_open", "data": {}})
    assert [he.ingest(mid, p) for p in (first, newer, first, older, newer)] == \
        ["event", "event", "rejected:stale", "rejected:stale", "rejected:stale"]
    kinds = [e["kind"] for e in he.store.events(mid) if e["source"] == "meter"]
    assert kinds == ["low_credit", "tamper"], kinds
    assert up_seq(he, row) == 7 and rejections(he, row) == ["stale"] * 3


def test_another_meters_key_or_topic_is_rejected(he):
    a, b = he.rows
    # meter B's genuine uplink published on meter A's topic (B's login, A's topic)
    assert he.ingest(a["meter_id"], up(b, 1, result("z"))) == "rejected:bad_mac"
    # A's id in the envelope but signed with B's key
    env = envelope.seal(key_of(b), a["meter_id"], 1, result("z"), direction=envelope.UP)
    assert he.ingest(a["meter_id"], env) == "rejected:bad_mac"
    assert up_seq(he, a) is None and up_seq(he, b) is None


@pytest.mark.parametrize("inner, why", [
    ({"t": "reading", "ts": "soon", "import_wh": 5}, "malformed"),
    ({"t": "reading", "ts": 1767571200, "import_wh": 2 ** 70}, "malformed"),
    ({"t": "reading", "ts": 1767571200, "tamper": [{"x": 1}]}, "malformed"),
    ({"t": "result", "ref": 7, "code": "accepted"}, "malformed"),
    ({"t": "statement", "month": "2026-13", "import_wh": 1}, "malformed"),
    ({"t": "event", "kind": "", "data": {}}, "malformed"),
    ({"t": "token", "id": "t-1", "token": "1" * 20}, "wrong_type"),
    ({"t": "surprise"}, "wrong_type"),
])
def test_signed_uplinks_with_fields_that_do_not_fit_are_rejected_before_acting(he, inner, why):
    row = he.rows[0]
    assert he.ingest(row["meter_id"], up(row, 3, inner)) == "rejected:" + why
    assert up_seq(he, row) is None
    assert he.store.q1("SELECT COUNT(*) AS n FROM readings")["n"] == 0


def test_a_bad_outbox_record_or_failing_publish_stays_with_its_meter(he):
    a, b = he.rows
    bad = vending.queue_command(he.store, a["meter_id"], "get_readings")
    good = vending.queue_command(he.store, b["meter_id"], "get_readings")
    with he.store.tx() as db:      # a record the publish chokes on (e.g. imported before ids were checked)
        db.execute("UPDATE messages SET body='{not json' WHERE msg_id=?", (bad,))
    assert he.tick() == 1
    assert he.store.q1("SELECT state FROM messages WHERE msg_id=?", (good,))["state"] == "sent"
    failed = [e for e in he.store.events(a["meter_id"]) if e["kind"] == "delivery_failed"]
    assert len(failed) == 1 and failed[0]["data"]["msg_id"] == bad and "JSONDecodeError" in failed[0]["data"]["error"]
    # a publish that raises for one topic (paho refuses wildcards in topic names)
    real = he.client.publish

    def publish(topic, payload, qos=0, retain=False):
        if a["meter_id"] in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        return real(topic, payload, qos=qos)
    he.client.publish = publish
    with he.store.tx() as db:
        db.execute("UPDATE messages SET body=(SELECT body FROM messages WHERE msg_id=?), next_try=0 WHERE msg_id=?",
                   (good, bad))
    again = vending.queue_command(he.store, b["meter_id"], "get_readings")
    assert he.tick() == 1
    assert he.store.q1("SELECT state FROM messages WHERE msg_id=?", (again,))["state"] == "sent"
    assert he.counts["failed"] == 2


def test_silence_alarms_for_the_fleet_and_one_meter_raise_and_clear(he):
    a, b = he.rows
    clock = he.vclock
    he.ingest(a["meter_id"], up(a, 1, result("r1")))
    he.ingest(b["meter_id"], up(b, 1, result("r2")))
    assert he.check_silence() == {"fleet": False, "meters": []}
    clock.t += 601                       # nothing from anyone for 10 minutes: the head-end is deaf
    assert he.check_silence()["fleet"] is True
    kinds = [x["kind"] for x in silence.open_alarms(he.store)]
    assert kinds == ["uplinks_stopped"]
    he.check_silence()                   # raised once, not every check
    assert len(he.store.q("SELECT * FROM uplink_alarms")) == 1
    he.ingest(b["meter_id"], up(b, 2, result("r3")))
    assert he.check_silence()["fleet"] is False and silence.open_alarms(he.store) == []
    clock.t += 3000                      # A silent past an hour, B heard 3000 s ago
    he.ingest(b["meter_id"], up(b, 3, result("r4")))
    out = he.check_silence()
    assert out == {"fleet": False, "meters": [a["meter_id"]]}, out
    assert [(x["meter_id"], x["kind"]) for x in silence.open_alarms(he.store)] == [(a["meter_id"], "meter_silent")]
    assert [e["kind"] for e in he.store.events(a["meter_id"])][-1] == "meter_silent"
    he.ingest(a["meter_id"], up(a, 2, result("r5")))
    assert he.check_silence()["meters"] == [] and silence.open_alarms(he.store) == []
    assert [e["kind"] for e in he.store.events(a["meter_id"])][-1] == "meter_heard"


def test_a_kwh_top_up_for_a_money_meter_is_refused_before_vending(he):
    row = he.rows[0]
    mid = row["meter_id"]
    he.ingest(mid, up(row, 1, {"t": "reading", "ts": 1767571200, "credit": 5000, "mode": "money"}))
    with pytest.raises(UsageError, match="keeps its credit in money"):
        vending.vend_topup(he.store, he.ks, mid, kwh="5")
    assert he.store.q1("SELECT COUNT(*) AS n FROM vends")["n"] == 0
    assert vending.vend_topup(he.store, he.ks, mid, amount="50")["what"] == "currency"
    he.ingest(mid, up(row, 2, {"t": "reading", "ts": 1767572100, "credit": 5000, "mode": "kwh"}))
    with pytest.raises(UsageError, match="keeps its credit in kWh"):
        vending.vend_topup(he.store, he.ks, mid, amount="50")


def test_fuzzed_uplinks_never_crash_ingest_nor_move_a_counter_when_rejected():
    """A seeded sample of the benchmark's 10^5 (host_tools/bench/fuzz_bench.py)."""
    from host_tools.bench.fuzz_bench import fuzz_ingest
    s = fuzz_ingest(1500, seed=9)
    assert s["crashes"] == [], s["crashes"][:2]
    assert s["counter_errors"] == [], s["counter_errors"][:5]
    assert s["accepted"] > 200 and {"malformed", "bad_mac", "stale", "wrong_type"} <= set(s["rejected"]), s


def test_a_mac_with_non_ascii_characters_is_a_bad_mac_not_a_crash(he):
    """Found by the fuzz benchmark: compare_digest raised TypeError on non-ASCII text."""
    row = he.rows[0]
    env = json.loads(up(row, 4, result("q")))
    env["h"] = env["h"][:30] + "\u9795" + env["h"][31:]
    assert he.ingest(row["meter_id"], json.dumps(env).encode()) == "rejected:bad_mac"
    assert up_seq(he, row) is None
