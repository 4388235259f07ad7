"""The head-end against real brokers (embedded amqtt and mosquitto): delivery, retry until a result,
idempotent redelivery, persistent sessions for offline meters, signed commands, uplink checks."""
import json
import threading
import time

import pytest

from host_tools.headend import vending
from host_tools.headend.broker import EmbeddedBroker
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakemeter import FakeMeter, FakeMeterPool
from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store


@pytest.fixture
def fleet(tmp_path, store_target):
    """Three meters in a store on SQLite, then on PostgreSQL (every test here runs on both)."""
    csv_path, ks_path, rows = make_fleet(str(tmp_path), 3)
    store = Store(store_target)
    store.import_csv(csv_path)
    ks = vending.load_keystore(ks_path)
    yield store, ks, rows
    store.close()


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request, fleet):
    """A real broker with password auth: meters log in with their provisioned passwords."""
    store, ks, rows = fleet
    if request.param == "mosquitto":
        if not mosquitto_path():
            pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
        users = {r["meter_id"]: r["broker_password"] for r in rows}
        users["headend"] = "he-secret"
        b = Mosquitto(passwords=users).start()
    else:
        b = EmbeddedBroker(db=store.path).start()
    yield b
    b.stop()


def fake(row, ks, store, **kw):
    dk = vending.decoder_key(ks, store.meter(row["meter_id"]))
    return FakeMeter(row["meter_id"], bytes.fromhex(row["message_key_hex"]), row["broker_password"], dk, **kw)


class Running:
    """A head-end serving in a thread, stopped at exit."""

    def __init__(self, store, url, **kw):
        self.he = HeadEnd(store, url, poll_s=0.05, **kw)
        self.stop = threading.Event()

    def __enter__(self):
        self.he.start()
        self.t = threading.Thread(target=self.he.serve, args=(self.stop,), daemon=True)
        self.t.start()
        return self.he

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(5)
        self.he.stop()


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def msg(store, msg_id):
    return store.q1("SELECT * FROM messages WHERE msg_id=?", (msg_id,))


def host_port(b):
    return "127.0.0.1", b.port


def test_topup_delivered_and_accepted_once(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[0], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    assert pool.start() == 1
    try:
        with Running(store, broker.url):
            v = vending.vend_topup(store, ks, rows[0]["meter_id"], kwh="12.5")
            assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "done")
    finally:
        pool.stop()
    m = msg(store, v["msg_id"])
    assert m["code"] == "accepted" and m["attempts"] == 1
    assert fm.credited == [(v["msg_id"], v["token"])]
    assert json.loads(m["detail"])["amount"] == 125      # 12.5 kWh in 0.1 kWh, decoded by the firmware
    kinds = [e["kind"] for e in store.events(rows[0]["meter_id"])]
    assert "vended" in kinds and "result" in kinds and "online" in kinds


def test_delivery_retried_with_same_id_until_a_result_arrives(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[0], ks, store, ignore_first=2)   # the first two deliveries are lost
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    try:
        with Running(store, broker.url, retry_s=0.3, retry_max_s=0.6):
            v = vending.vend_topup(store, ks, rows[0]["meter_id"], kwh="5")
            assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "done", 15)
    finally:
        pool.stop()
    m = msg(store, v["msg_id"])
    assert m["code"] == "accepted"
    assert m["attempts"] == 3 and fm.seen_deliveries[v["msg_id"]] == 3
    assert len(fm.credited) == 1
    redeliveries = [e for e in store.events(rows[0]["meter_id"]) if e["kind"] == "redelivery"]
    assert [e["data"]["attempt"] for e in redeliveries] == [2, 3]


def test_resent_message_gets_same_result_and_never_acts_twice(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[0], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    try:
        with Running(store, broker.url):
            v = vending.vend_topup(store, ks, rows[0]["meter_id"], kwh="3")
            assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "done")
            # the head-end lost the result (e.g. restored database): the message goes out again
            store.q("UPDATE messages SET state='sent', next_try=0, code=NULL WHERE msg_id=?", (v["msg_id"],))
            assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "done")
    finally:
        pool.stop()
    assert msg(store, v["msg_id"])["code"] == "accepted"
    assert fm.seen_deliveries[v["msg_id"]] == 2 and len(fm.credited) == 1


def test_token_for_offline_meter_arrives_when_it_reconnects(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[1], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    pool.stop()   # the broker now holds a persistent session for the meter
    # no resend when the meter comes back either: only the broker's stored session may deliver
    with Running(store, broker.url, retry_s=60, resend_on_online=False):
        v = vending.vend_topup(store, ks, rows[1]["meter_id"], kwh="1")
        assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "sent")
        time.sleep(0.3)
        assert msg(store, v["msg_id"])["state"] == "sent"
        fm2 = fake(rows[1], ks, store)
        fm2.up_seq = fm.up_seq   # the meter's uplink counter persists across its reboot
        pool2 = FakeMeterPool(*host_port(broker), [fm2])
        pool2.start()
        try:
            assert wait_for(lambda: msg(store, v["msg_id"])["state"] == "done")
        finally:
            pool2.stop()
    assert msg(store, v["msg_id"])["attempts"] == 1    # queued by the broker, not resent by the head-end
    assert len(fm2.credited) == 1


def test_signed_commands_verified_by_meter_with_increasing_seq(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[2], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    try:
        with Running(store, broker.url):
            ids = [vending.queue_command(store, rows[2]["meter_id"], "relay_open"),
                   vending.queue_command(store, rows[2]["meter_id"], "set_time", {"unix": 1767571200}),
                   vending.queue_command(store, rows[2]["meter_id"], "self_destruct")]
            assert wait_for(lambda: all(msg(store, i)["state"] == "done" for i in ids))
    finally:
        pool.stop()
    assert [msg(store, i)["code"] for i in ids] == ["done", "done", "unknown_cmd"]
    assert fm.commands == [("relay_open", {}), ("set_time", {"unix": 1767571200})]
    assert fm.rejects == []
    assert store.meter(rows[2]["meter_id"])["down_seq"] == 3 == fm.down_seq


def test_uplinks_from_meter_ingested_through_broker(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[0], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    try:
        with Running(store, broker.url) as he:
            pool.publish(fm, *fm.uplink({"t": "reading", "ts": 1767571200, "import_wh": 1000, "export_wh": 0,
                                         "credit": 5000, "debt": 0, "p_w": 230, "urms_cv": 23000,
                                         "supply": "closed", "reasons": [], "link": {"rssi": 20}}))
            pool.publish(fm, *fm.uplink({"t": "event", "seq": 7, "ts": 1767571260, "kind": "tamper",
                                         "data": {"cover": 1}}))
            pool.publish(fm, *fm.uplink({"t": "reading", "ts": 1767571300, "import_wh": 1000}, seq=1))  # stale
            assert wait_for(lambda: he.counts["rejected"] == 1 and he.counts["events"] == 1)
    finally:
        pool.stop()
    assert store.q1("SELECT COUNT(*) AS n FROM readings")["n"] == 1
    evs = store.events(rows[0]["meter_id"])
    assert any(e["kind"] == "tamper" and e["data"]["data"] == {"cover": 1} for e in evs)
    assert any(e["kind"] == "uplink_rejected" and e["data"]["why"] == "stale" for e in evs)


def test_meter_with_wrong_broker_password_is_refused(broker, fleet):
    store, ks, rows = fleet
    fm = fake(rows[0], ks, store)
    fm.password = "wrong"
    pool = FakeMeterPool(*host_port(broker), [fm])
    try:
        assert pool.start(timeout=1.5) == 0
    finally:
        pool.stop(clean=False)


def test_persistent_headend_session_receives_uplinks_sent_while_it_was_down(broker, fleet):
    store, ks, rows = fleet
    with Running(store, broker.url):
        pass                                  # the head-end's session (clean_session false) now exists
    fm = fake(rows[0], ks, store)
    pool = FakeMeterPool(*host_port(broker), [fm])
    pool.start()
    try:
        pool.publish(fm, *fm.uplink({"t": "event", "seq": 1, "ts": 1767571260, "kind": "low_credit", "data": {}}))
        time.sleep(0.3)
        with Running(store, broker.url) as he:
            assert wait_for(lambda: he.counts["events"] == 1)
    finally:
        pool.stop()
