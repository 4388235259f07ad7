"""Several head-end workers (`meterkit headend serve --workers N`) on mosquitto and one store, SQLite and
PostgreSQL: uplinks shared through the MQTT v5 shared subscription, every downlink claimed once from the
outbox, and a worker killed with SIGKILL mid-work loses nothing (its restart takes back what the broker
had handed it; what it had claimed goes again at its retry time)."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from host_tools.headend import vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakemeter import FakeMeter, FakeMeterPool
from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
from host_tools.headend.store import Store

METERS = 6


@pytest.fixture
def fleet(tmp_path, store_target):
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
    csv_path, ks_path, rows = make_fleet(str(tmp_path), METERS)
    store = Store(store_target)
    store.import_csv(csv_path)
    ks = vending.load_keystore(ks_path)
    users = {r["meter_id"]: r["broker_password"] for r in rows}
    users["headend"] = "he-secret"
    broker = Mosquitto(passwords=users).start()
    meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                        vending.decoder_key(ks, store.meter(r["meter_id"]))) for r in rows]
    pool = FakeMeterPool("127.0.0.1", broker.port, meters)
    assert pool.start() == METERS
    yield store, ks, meters, pool, broker
    pool.stop()
    broker.stop()
    store.close()


class Workers:
    """`meterkit headend serve --workers N` in a subprocess; its output lines collected; stopped at exit."""

    def __init__(self, store, broker, n, retry_s=30.0):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", store.path, "--broker", broker.url,
             "--workers", str(n), "--retry-s", str(retry_s), "--retry-max-s", str(retry_s)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def pids(self):
        out = {}
        for line in self.lines:
            m = re.match(r"worker (\d+) started \(pid (\d+)\)", line)
            if m:
                out[int(m.group(1))] = int(m.group(2))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.t.join(5)
        return self.lines

    def readings_per_worker(self):
        return [int(m.group(1)) for m in (re.search(r"(\d+) reading\(s\)", x) for x in self.lines) if m]


def wait_for(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def ready(store, n):
    """All n workers are connected and subscribed: each has written its own heartbeat."""
    def fresh(i):
        v = store.service(f"heartbeat:w{i}")
        return v is not None and float(v) > time.time() - 5
    return wait_for(lambda: all(fresh(i) for i in range(n)), 60)


def send_readings(pool, meters, per_meter, start_ts):
    for k in range(per_meter):
        for fm in meters:
            topic, payload = fm.uplink({"t": "reading", "ts": start_ts + k, "import_wh": 1000 + k, "credit": 500})
            pool.publish(fm, topic, payload)


def readings(store):
    return store.q1("SELECT COUNT(*) AS n, COUNT(DISTINCT meter_id || ':' || ts) AS d FROM readings")


def test_two_workers_share_the_uplinks_and_deliver_every_downlink_once(fleet):
    store, ks, meters, pool, broker = fleet
    w = Workers(store, broker, 2)
    try:
        assert ready(store, 2), w.lines
        vends = [vending.vend_topup(store, ks, fm.meter_id, kwh="1") for fm in meters for _ in range(3)]
        send_readings(pool, meters, 10, 1796601600)
        done = wait_for(lambda: store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"] == len(vends))
        r = wait_for(lambda: readings(store)["n"] == 10 * METERS and readings(store))
    finally:
        lines = w.stop()
    assert done, f"{store.q1('SELECT COUNT(*) AS n FROM messages WHERE state=?', ('done',))['n']} of {len(vends)} done"
    assert r and r["d"] == 10 * METERS, f"readings {dict(readings(store))}, expected {10 * METERS} distinct"
    codes = store.q("SELECT code, attempts FROM messages")
    assert {(c["code"], c["attempts"]) for c in codes} == {("accepted", 1)}, [tuple(c) for c in codes]
    for fm in meters:       # each downlink reached its meter exactly once, and was credited once
        mine = [v["msg_id"] for v in vends if v["meter"] == fm.meter_id]
        assert sorted(fm.seen_deliveries) == sorted(mine) and set(fm.seen_deliveries.values()) == {1}
        assert sorted(m for m, _ in fm.credited) == sorted(mine)
    per_worker = w.readings_per_worker()
    assert len(per_worker) == 2 and sum(per_worker) == 10 * METERS and min(per_worker) > 0, (per_worker, lines)


def test_a_worker_killed_mid_work_loses_nothing(fleet):
    store, ks, meters, pool, broker = fleet
    w = Workers(store, broker, 2, retry_s=3.0)
    try:
        assert ready(store, 2), w.lines
        pids = wait_for(lambda: len(w.pids()) == 2 and w.pids())
        vends = [vending.vend_topup(store, ks, fm.meter_id, kwh="2") for fm in meters for _ in range(5)]
        feeder = threading.Thread(target=send_readings, args=(pool, meters, 20, 1796601600))
        feeder.start()
        time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)          # in the middle of deliveries and ingest
        feeder.join(60)
        done = wait_for(lambda: store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"] == len(vends),
                        90)
        r = wait_for(lambda: readings(store)["n"] >= 20 * METERS and readings(store), 90)
    finally:
        lines = w.stop()
    assert any("worker 0 exited" in x for x in lines), lines[-10:]
    assert done, "%d of %d top-ups answered after the kill" % (
        store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"], len(vends))
    assert {c["code"] for c in store.q("SELECT code FROM messages")} == {"accepted"}
    for fm in meters:
        mine = sorted(v["msg_id"] for v in vends if v["meter"] == fm.meter_id)
        assert sorted(m for m, _ in fm.credited) == mine, f"{fm.meter_id} credited {fm.credited}"
    got = readings(store)
    assert got["n"] == 20 * METERS and got["d"] == 20 * METERS, \
        f"{got['n']} readings ({got['d']} distinct) of {20 * METERS} sent"
