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

    def __init__(self, store, broker, n, retry_s=30.0, extra=()):
        url = broker if isinstance(broker, str) else broker.url
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", store.path, "--broker", url,
             "--workers", str(n), "--retry-s", str(retry_s), "--retry-max-s", str(retry_s)] + list(extra),
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
            m = re.match(r"worker (\d+) started \(pid (\d+)", line)
            if m:
                out[int(m.group(1))] = int(m.group(2))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)             # longer than the supervisor gives its workers (30 s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.t.join(30)                    # until every worker has closed the output (its stop line)
        return self.lines

    def readings_per_worker(self):
        return [int(n) for n in re.findall(r"(\d+) reading\(s\)", "\n".join(self.lines))]

    def stopped(self):
        """{worker index: {count name: value}} from each worker's stop line."""
        out = {}
        text = "\n".join(self.lines)
        for i, counts in re.findall(r"head-end worker (\d+) stopped: (.*?broker disconnect\(s\))", text):
            out[int(i)] = {name: int(v) for v, name in re.findall(r"(\d+) ([a-z ]+?)\(s\)", counts)}
        return out


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


# -- the locked-down broker: a login per worker ---------------------------------------------------------
class Probe:
    """A paho client on the TLS broker that records whether it got in, its SUBACK codes and what reached it."""

    def __init__(self, port, ca, client_id, user, password):
        import paho.mqtt.client as mqtt
        self.msgs, self.refused, self.sub_failed = [], None, None
        self.connacked, self.subacked = threading.Event(), threading.Event()
        c = self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                                 protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        c.username_pw_set(user, password)
        c.tls_set(ca_certs=ca)
        c.on_connect = lambda c_, u, f, reason, p: (setattr(self, "refused", reason.is_failure), self.connacked.set())
        c.on_subscribe = lambda c_, u, mid, codes, p: (setattr(self, "sub_failed", [x.is_failure for x in codes]),
                                                       self.subacked.set())
        c.on_message = lambda c_, u, m: self.msgs.append(m.topic)
        c.connect("localhost", port, keepalive=30)
        c.loop_start()
        assert self.connacked.wait(10), f"no CONNACK for {user} as {client_id}"

    def subscribe(self, *topics):
        self.subacked.clear()
        self.c.subscribe([(t, 1) for t in topics])
        assert self.subacked.wait(10), f"no SUBACK for {topics}"
        return self.sub_failed

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def locked_fleet(tmp_path, postgres_server):
    """mosquitto run from `broker-config --workers 2` (TLS, a user per meter and per worker, ACLs, client id =
    user name), a PostgreSQL store, and the meters connected over TLS as their modems would."""
    from host_tools.headend import brokerconfig
    from host_tools.headend.broker import free_port
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
    # one meter more than connect: its login is the attacker's (taking a connected meter's would drop that meter)
    csv_path, ks_path, rows = make_fleet(str(tmp_path / "fleet"), METERS + 1)
    store = Store(postgres_server.database())
    store.import_csv(csv_path)
    ks = vending.load_keystore(ks_path)
    port = free_port()
    out = brokerconfig.build(store, tmp_path / "broker", hostnames=["localhost", "127.0.0.1"], port=port, workers=2,
                             persistence=False, run_as="root" if os.geteuid() == 0 else None)
    broker = Mosquitto(config=out["conf"], port=port).start()
    meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                        vending.decoder_key(ks, store.meter(r["meter_id"]))) for r in rows[:METERS]]
    pool = FakeMeterPool("localhost", port, meters, ca_file=out["ca"])
    assert pool.start() == METERS, f"{pool.connected} of {METERS} meters reached the TLS broker"
    yield store, ks, meters, pool, out, rows
    pool.stop()
    broker.stop()
    store.close()


def test_two_workers_on_the_locked_down_broker_each_log_in_as_their_own_user_and_share_the_uplinks(locked_fleet):
    store, ks, meters, pool, out, rows = locked_fleet
    import json
    settings = json.loads(open(out["logins_file"]).read())
    logins = settings["logins"]
    assert sorted(logins) == ["headend-w0", "headend-w1"] and len(set(logins.values())) == 2, sorted(logins)
    assert settings["group"].startswith("headend-") and len(settings["group"]) >= 40, settings["group"]
    assert os.stat(out["logins_file"]).st_mode & 0o777 == 0o600, oct(os.stat(out["logins_file"]).st_mode)
    url = open(out["url_file"]).read().strip()
    w = Workers(store, url, 2, extra=["--ca-file", out["ca"], "--broker-logins", out["logins_file"]])
    try:
        assert ready(store, 2), w.lines
        assert any("broker user headend-w0" in x for x in w.lines) and any("broker user headend-w1" in x for x in w.lines), \
            w.lines
        assert not any(logins["headend-w0"] in x or logins["headend-w1"] in x or settings["group"] in x
                       for x in w.lines), "a password or the group printed"
        vends = [vending.vend_topup(store, ks, fm.meter_id, kwh="1") for fm in meters]
        send_readings(pool, meters, 10, 1796601600)
        first = wait_for(lambda: readings(store)["n"] >= 10 * METERS and store.q1(
            "SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"] == len(vends))
        assert first, f"{readings(store)['n']} readings of {10 * METERS}, " \
                      f"{store.q1('SELECT COUNT(*) AS n FROM messages WHERE state=?', ('done',))['n']} of {len(vends)} top-ups"

        # a meter's login asks for worker 1's client id and for the workers' subscriptions (mosquitto's acl_file
        # grants any SUBSCRIBE: in the group `headend` the meter would be dealt a share of every uplink, which the
        # ACL then drops; the workers' group is a secret from broker-config)
        spy = Probe(out["port"], out["ca"], "headend-w1", rows[-1]["meter_id"], rows[-1]["broker_password"])
        assert spy.refused is False
        # (mosquitto grants a SUBACK and then delivers nothing that the ACL denies: judged by what arrives)
        spy.subscribe("$share/headend/meters/+/up", "meters/+/up", f"meters/{rows[1]['meter_id']}/down")
        spy.c.publish(f"meters/{rows[1]['meter_id']}/down", b'{"m":"forged"}', qos=1)   # a worker's topic
        spy.c.publish(f"meters/{rows[1]['meter_id']}/up", meters[1].uplink({"t": "event", "kind": "tamper"},
                                                                            seq=10 ** 6)[1], qos=1)
        send_readings(pool, meters, 10, 1796602600)
        second = wait_for(lambda: readings(store)["n"] >= 20 * METERS)
        spy.close()
        # worker 0's own login asks for worker 1's client id: the broker makes it headend-w0, its own session
        # (so worker 0 is the one taken over; worker 1 is never touched)
        w0 = Probe(out["port"], out["ca"], "headend-w1", "headend-w0", logins["headend-w0"])
        assert w0.refused is False
        time.sleep(1.0)
        w0.close()
        time.sleep(1.0)
    finally:
        w.stop()
    got = readings(store)
    assert second and got["n"] == got["d"] == 20 * METERS, f"{dict(got)} readings of {20 * METERS}; {w.lines[-8:]}"
    assert spy.msgs == [], f"a meter's login received {spy.msgs[:3]}"
    assert meters[1].rejects == [], f"a meter's login delivered a downlink to another meter: {meters[1].rejects}"
    assert store.meter(meters[1].meter_id)["up_seq"] < 10 ** 6, "a meter's login published as another meter"
    stopped = w.stopped()
    assert sorted(stopped) == [0, 1], w.lines[-6:]
    assert stopped[1]["broker disconnect"] == 0, f"worker 1 was disconnected: {stopped[1]}"
    assert stopped[0]["broker disconnect"] >= 1, f"the login headend-w0 did not reach worker 0's session: {stopped[0]}"
    assert all(stopped[i]["reading"] > 0 for i in (0, 1)), f"one worker got no uplinks: {stopped}"
    assert sum(stopped[i]["reading"] for i in (0, 1)) == 20 * METERS, stopped
    for fm in meters:
        assert len(fm.credited) == 1, f"{fm.meter_id} credited {fm.credited}"


def test_broker_logins_missing_a_worker_stop_serve_with_the_command_that_makes_them(tmp_path):
    import json
    (tmp_path / "users.json").write_text(json.dumps({"group": "headend-abc", "logins": {"headend-w0": "y"}}))
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", str(tmp_path / "he.db"),
                        "--broker", "mqtt://headend:x@127.0.0.1:1", "--workers", "2", "--broker-logins",
                        str(tmp_path / "users.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "no login for headend-w1" in r.stderr and "broker-config --workers 2" in r.stderr, r.stderr


# -- the uplink sequence window across workers -----------------------------------------------------------
def near_sorted(items, block, rng):
    """items reordered within consecutive blocks (a late uplink is at most one block late)."""
    out = []
    for b in range(0, len(items), block):
        chunk = items[b:b + block]
        rng.shuffle(chunk)
        out += chunk
    return out


class _NoClient:
    """Stands in for the MQTT client where a test calls ingest() directly."""


def test_two_workers_racing_on_the_same_uplinks_accept_each_seq_exactly_once(store_target, tmp_path):
    """Both workers are handed every uplink of two meters (as after a takeover redelivery), each in its own
    near-sorted order, at once: the check and the advance of up_seq are one row-locked transaction, so each
    seq is accepted by exactly one of them, the late-but-unseen ones included, and refused by the other."""
    import random

    from host_tools.headend import workers
    from host_tools.headend.service import HeadEnd
    csv_path, _, rows = make_fleet(str(tmp_path / "fleet"), 2)
    setup = Store(store_target)
    setup.import_csv(csv_path)
    meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"])) for r in rows]
    n = 60
    sent = [(fm.meter_id, fm.uplink({"t": "reading", "ts": 1796601600 + i, "import_wh": i, "credit": 7})[1])
            for i in range(n) for fm in meters]
    heads = [HeadEnd(Store(store_target), "mqtt://127.0.0.1:1", client=_NoClient(), shared_group="g",
                     seq_window=workers.SEQ_WINDOW) for _ in range(2)]
    results = [[], []]
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        for mid, payload in near_sorted(list(sent), 16, random.Random(i)):
            results[i].append(heads[i].store.retrying(lambda: heads[i].ingest(mid, payload)))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    replay = heads[0].ingest(meters[0].meter_id, sent[0][1])           # a replay after the race
    for h in heads:
        h.store.close()
    outcomes = results[0] + results[1]
    assert len(outcomes) == 4 * n, f"{len(outcomes)} outcomes of {4 * n}"
    assert outcomes.count("reading") == 2 * n, f"{outcomes.count('reading')} accepted of {2 * n} seqs: " \
                                               f"{[o for o in outcomes if o != 'reading'][:5]}"
    assert outcomes.count("rejected:stale") == 2 * n, {o: outcomes.count(o) for o in set(outcomes)}
    assert replay == "rejected:stale"
    got = setup.q1("SELECT COUNT(*) AS n, COUNT(DISTINCT meter_id || ':' || ts) AS d FROM readings")
    assert got["n"] == got["d"] == 2 * n, f"readings {dict(got)}, expected {2 * n} distinct"
    for fm in meters:
        assert setup.meter(fm.meter_id)["up_seq"] == n
    setup.close()


def test_two_workers_take_reordered_and_replayed_uplinks_no_replay_accepted_no_genuine_one_refused(fleet):
    """Meters publish their uplinks out of order (each at most one block of 8 late) and some of them again
    (replays, the same bytes): through the shared subscription the two workers take them interleaved."""
    import random
    store, ks, meters, pool, broker = fleet
    w = Workers(store, broker, 2)
    rng = random.Random(16)
    n, replays = 40, {}
    try:
        assert ready(store, 2), w.lines
        for fm in meters:
            ups = [fm.uplink({"t": "reading", "ts": 1796601600 + i, "import_wh": i, "credit": 3}) for i in range(n)]
            again = rng.sample(range(n), 6)
            replays[fm.meter_id] = len(again)
            order = near_sorted(ups, 8, rng)
            order += [ups[i] for i in again]
            for topic, payload in order:
                pool.publish(fm, topic, payload)
        total = sum(replays.values())
        rejected = lambda: store.q1("SELECT COUNT(*) AS n FROM events WHERE kind='uplink_rejected'")["n"]  # noqa: E731
        done = wait_for(lambda: readings(store)["n"] >= n * METERS and rejected() >= total, 90)
    finally:
        w.stop()
    got = readings(store)
    whys = [e["data"]["why"] for fm in meters for e in store.events(fm.meter_id, 1000) if e["kind"] == "uplink_rejected"]
    assert done and got["n"] == got["d"] == n * METERS, \
        f"{dict(got)} readings of {n * METERS} genuine uplinks; {len(whys)} rejected of {total} replays; {w.lines[-4:]}"
    assert len(whys) == total and set(whys) == {"stale"}, f"{len(whys)} rejected of {total} replays: {set(whys)}"
    for fm in meters:
        assert store.meter(fm.meter_id)["up_seq"] == n
    per_worker = w.readings_per_worker()
    assert len(per_worker) == 2 and min(per_worker) > 0, per_worker
