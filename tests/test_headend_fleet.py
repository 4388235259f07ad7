"""The benchmark's fleet driver (host_tools/headend/fakefleet.py): many meter sessions on one asyncio
loop, each its own paho MQTT session with its own login, against mosquitto as `broker-config` writes it
(users, ACLs, client id = user name; over TLS here). Every session connects, its uplinks reach the
head-end, and a downlink reaches the meter it was sealed for and is answered."""
import os
import threading

import pytest

from host_tools.headend import brokerconfig, vending
from host_tools.headend.broker import free_port
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakefleet import AsyncMeterFleet
from host_tools.headend.fakemeter import FakeMeter
from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store

METERS = 60


def wait_for(pred, timeout=60.0):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.fixture
def world(tmp_path):
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
    csv_path, ks_path, rows = make_fleet(str(tmp_path / "fleet"), METERS)
    store = Store(tmp_path / "he.db")
    store.import_csv(csv_path)
    ks = vending.load_keystore(ks_path)
    port = free_port()
    out = brokerconfig.build(store, tmp_path / "broker", port=port, persistence=False, bind="127.0.0.1",
                             run_as="root" if os.geteuid() == 0 else None)
    broker = Mosquitto(config=out["conf"], port=port).start()
    he = HeadEnd(store, open(out["url_file"]).read().strip(),
                 poll_s=0.05, ca_file=out["ca"]).start()
    stop = threading.Event()
    t = threading.Thread(target=he.serve, args=(stop,), daemon=True)
    t.start()
    yield store, ks, rows, out, port
    stop.set()
    t.join(10)
    he.stop()
    broker.stop()
    store.close()


def test_every_session_connects_over_tls_sends_its_reading_and_answers_its_downlink(world):
    store, ks, rows, out, port = world
    meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                        vending.decoder_key(ks, store.meter(r["meter_id"])) if i < 5 else None)
              for i, r in enumerate(rows)]
    # one session with a wrong password: refused, and counted as such
    meters.append(FakeMeter(rows[0]["meter_id"] + "0", b"k" * 32, "wrong"))
    fleet = AsyncMeterFleet("localhost", port, meters, in_flight=8, rate=200.0, ca_file=out["ca"])
    try:
        assert fleet.start(timeout=120) == METERS, f"{fleet.connected} of {METERS} connected"
        assert fleet.refused == 1, f"{fleet.refused} refused, expected the one with the wrong password"
        fleet.publish_each(lambda fm: fm.uplink({"t": "reading", "ts": 1796601600, "import_wh": 5, "credit": 9}),
                           chunk=7)
        got = wait_for(lambda: store.q1("SELECT COUNT(*) AS n FROM readings")["n"] >= METERS)
        assert got, f"{store.q1('SELECT COUNT(*) AS n FROM readings')['n']} readings of {METERS}"
        vends = [vending.vend_topup(store, ks, fm.meter_id, kwh="1") for fm in meters[:5]]
        done = wait_for(lambda: store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"] == 5)
        assert done, store.q("SELECT msg_id, state, attempts FROM messages")
    finally:
        fleet.stop()
    assert {c["code"] for c in store.q("SELECT code FROM messages")} == {"accepted"}
    for fm, v in zip(meters[:5], vends):
        assert [m for m, _ in fm.credited] == [v["msg_id"]], f"{fm.meter_id} credited {fm.credited}"
    assert all(not fm.credited for fm in meters[5:])
    n = store.q1("SELECT COUNT(*) AS n, COUNT(DISTINCT meter_id) AS d FROM readings")
    assert n["n"] == n["d"] == METERS, dict(n)
