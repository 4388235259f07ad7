"""The broker attacks of issue 16, each now failing to do harm, on real brokers: mosquitto started from
the configuration `meterkit headend broker-config` writes (mqtts, a user per meter, ACLs, client id =
user name) and the embedded amqtt broker, with the real head-end service listening. With one meter's
login an attacker subscribes to `#`, publishes on another meter's topics, spoofs its `offline` (as a
message and as a last will) and connects with client id `headend`; none of it reaches anyone or deafens
the head-end. Plus: mqtts refuses plaintext and clients that do not trust the utility CA."""
import json
import os
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from host_tools.headend import brokerconfig, envelope
from host_tools.headend.broker import EmbeddedBroker, free_port
from host_tools.headend.demo import make_fleet
from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store

WAIT_S = 1.0        # how long a message that should not arrive is given to arrive anyway


class Probe:
    """A paho client that records what happens to it."""

    def __init__(self, broker, client_id, user, password, will=None, clean=False):
        self.events = []
        self.msgs = []
        self.sub_codes = None
        self.refused = None
        self.ready = threading.Event()
        c = self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                                 protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if user is not None:
            c.username_pw_set(user, password)
        if will:
            c.will_set(will, b"offline", 1, True)
        if broker.tls:
            c.tls_set(ca_certs=broker.ca)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda c, u, mid, codes, p: (setattr(self, "sub_codes", [x.is_failure for x in codes]),
                                                      self.ready.set())
        c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload))
        c.on_disconnect = lambda c, u, f, r, p: (self.events.append(("disconnect", str(r))), self.done.set())
        self.connected = threading.Event()
        self.done = threading.Event()
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.done.wait(5)

    def _on_connect(self, c, u, flags, reason, props):
        self.refused = reason.is_failure
        if not reason.is_failure:
            self.connected.set()
        self.done.set()

    def subscribe(self, topic):
        self.ready.clear()
        self.c.subscribe(topic, 1)
        self.ready.wait(5)
        return self.sub_codes

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(3)
        except (RuntimeError, ValueError):
            pass

    def close(self, clean=True):
        if clean:
            self.c.disconnect()
        else:
            self.c.socket().close()           # a dropped link: the broker publishes the will
        self.c.loop_stop()


class BrokerUnderTest:
    def __init__(self, kind, store, rows, tmp_path):
        self.kind, self.rows = kind, rows
        self.host, self.tls, self.ca = "127.0.0.1", False, None
        if kind == "mosquitto":
            assert mosquitto_path(), "mosquitto is not installed: apt-get install -y mosquitto"
            port = free_port()
            out = brokerconfig.build(store, tmp_path / "broker", hostnames=["localhost", "127.0.0.1"], port=port,
                                     persistence=False, run_as="root" if os.geteuid() == 0 else None)
            self.b = Mosquitto(config=out["conf"], port=port).start()
            self.host, self.port, self.tls, self.ca = "localhost", port, True, out["ca"]
            self.url = open(out["url_file"]).read().strip()
        else:
            self.b = EmbeddedBroker(db=store.path).start()
            self.port, self.url = self.b.port, self.b.url

    def stop(self):
        self.b.stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
def world(request, tmp_path):
    yield from _world(request.param, tmp_path)


@pytest.fixture
def tls_world(tmp_path):
    """The production broker only: the embedded amqtt one is the development broker (plain TCP)."""
    yield from _world("mosquitto", tmp_path)


def _world(kind, tmp_path):
    csv_path, ks_path, rows = make_fleet(str(tmp_path / "fleet"), 2)
    store = Store(tmp_path / "he.db")
    store.import_csv(csv_path)
    broker = BrokerUnderTest(kind, store, rows, tmp_path)
    he = HeadEnd(store, broker.url, poll_s=0.05, ca_file=broker.ca)
    he.start()
    stop = threading.Event()
    t = threading.Thread(target=he.serve, args=(stop,), daemon=True)
    t.start()
    probes = []

    def probe(client_id, user, password, **kw):
        p = Probe(broker, client_id, user, password, **kw)
        probes.append(p)
        return p
    yield store, broker, he, rows, probe
    for p in probes:
        try:
            p.close()
        except Exception:
            pass
    stop.set()
    t.join(5)
    he.stop()
    broker.stop()
    store.close()


def login(row):
    return row["meter_id"], row["meter_id"], row["broker_password"]


def uplink(row, seq, kind="low_credit"):
    return envelope.seal(bytes.fromhex(row["message_key_hex"]), row["meter_id"], seq,
                         {"t": "event", "seq": seq, "ts": 1767571200, "kind": kind, "data": {}}, direction=envelope.UP)


def meter_events(store, row, source="meter"):
    return [e["kind"] for e in store.events(row["meter_id"]) if e["source"] == source]


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_a_meter_login_reads_no_other_meters_traffic_even_subscribed_to_everything(world):
    store, broker, he, (a, b), probe = world
    spy = probe(*login(a))
    assert spy.connected.is_set(), "meter A could not log in with its own password"
    for f in ("#", "meters/+/up", f"meters/{b['meter_id']}/down", "meters/#"):
        spy.subscribe(f)
    victim = probe(*login(b))
    victim.subscribe(f"meters/{b['meter_id']}/down")
    victim.publish(f"meters/{b['meter_id']}/up", uplink(b, 1))
    from host_tools.headend import vending
    vending.queue_command(store, b["meter_id"], "get_readings")
    assert wait_for(lambda: victim.msgs), "the control failed: B's own downlink never reached B"
    assert wait_for(lambda: "low_credit" in meter_events(store, b)), "the head-end did not get B's uplink"
    time.sleep(WAIT_S)
    assert spy.msgs == [], f"meter A read other traffic on {broker.kind}: {[t for t, _ in spy.msgs]}"


def test_a_meter_cannot_publish_on_another_meters_topics_or_spoof_its_offline(world):
    store, broker, he, (a, b), probe = world
    victim = probe(*login(b))
    victim.publish(f"meters/{b['meter_id']}/status", b"online")
    assert wait_for(lambda: store.meter(b["meter_id"])["status"] == "online")
    attacker = probe(*login(a))
    attacker.publish(f"meters/{b['meter_id']}/status", b"offline")
    attacker.publish(f"meters/{b['meter_id']}/up", uplink(b, 5, "tamper"))    # B's bytes, replayed from A
    attacker.publish(f"meters/{b['meter_id']}/down", b"{}")
    # a last will naming B's status: refused at CONNECT (mosquitto, amqtt)
    willing = probe(a["meter_id"], a["meter_id"], a["broker_password"], will=f"meters/{b['meter_id']}/status")
    if willing.connected.is_set():
        willing.close(clean=False)
    time.sleep(WAIT_S)
    assert store.meter(b["meter_id"])["status"] == "online", "a spoofed offline was recorded"
    assert "tamper" not in meter_events(store, b)
    assert [k for k in meter_events(store, b, "broker")] == ["online"], store.events(b["meter_id"])
    assert victim.msgs == []


def test_client_id_takeover_of_the_headend_leaves_it_hearing_every_uplink(world):
    store, broker, he, (a, b), probe = world
    meter = probe(*login(b))
    assert meter.connected.is_set()
    taker = probe("headend", a["meter_id"], a["broker_password"])
    guesser = probe("headend", "headend", "a-guessed-password")      # no login at all, the head-end's id
    time.sleep(1.5)                                    # the 1.5 s of the issue
    assert not guesser.connected.is_set()
    for s in range(1, 5):
        meter.publish(f"meters/{b['meter_id']}/up", uplink(b, s))
    assert wait_for(lambda: meter_events(store, b).count("low_credit") == 4, timeout=15), \
        f"{broker.kind}: the head-end heard {meter_events(store, b).count('low_credit')} of 4 uplinks"
    assert he.connected.is_set()
    # amqtt refuses a client id that is not the user name; mosquitto renames it to the user name
    assert not taker.connected.is_set() or broker.kind == "mosquitto"


def test_wrong_passwords_unknown_users_and_the_headends_name_are_refused(world):
    store, broker, he, (a, b), probe = world
    # refused: a CONNACK with a failure code (mosquitto), or the connection closed at once (amqtt)
    for args in ((a["meter_id"], a["meter_id"], "wrong-password"), ("nobody", "nobody", "whatever-it-is"),
                 ("x", None, None), ("headend", "headend", b["broker_password"])):
        p = probe(*args, clean=args[1] is None)
        assert not p.connected.is_set(), f"{broker.kind} let {args[1]!r} in"
    assert he.connected.is_set(), "a refused client disturbed the head-end's session"


def test_mqtts_refuses_plaintext_and_clients_that_do_not_trust_the_utility_ca(tls_world, tmp_path):
    store, broker, he, rows, probe = tls_world
    assert broker.tls
    import socket
    s = socket.create_connection((broker.host, broker.port), 3)
    s.settimeout(3)
    s.sendall(bytes.fromhex("101000044d5154540402003c0004") + b"test")     # a plaintext CONNECT
    try:
        data = s.recv(16)
    except (socket.timeout, ConnectionResetError):
        data = b""
    s.close()
    assert not data.startswith(b"\x20"), "the TLS port answered a plaintext CONNECT with a CONNACK"
    ctx = ssl.create_default_context()              # the system's CAs only: the utility CA is not among them
    with socket.create_connection((broker.host, broker.port), 3) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    ok = ssl.create_default_context(cafile=broker.ca)
    with socket.create_connection((broker.host, broker.port), 3) as raw:
        with ok.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_broker_config_keeps_the_ca_adds_meters_and_hashes_every_password(tmp_path):
    csv_path, _, rows = make_fleet(str(tmp_path / "fleet"), 3)
    store = Store(tmp_path / "he.db")
    store.import_csv(csv_path)
    out = brokerconfig.build(store, tmp_path / "b", port=18883)
    ca1 = (tmp_path / "b" / "ca.crt").read_bytes()
    users1 = json.loads((tmp_path / "b" / "headend-users.json").read_text())
    passwd = (tmp_path / "b" / "passwd").read_text()
    assert out["meters"] == 3 and all(r["broker_password"] not in passwd for r in rows)
    names = [line.split(":", 1)[0] for line in passwd.split()]
    assert names == sorted(r["meter_id"] for r in rows) + ["headend"]
    assert oct((tmp_path / "b" / "server.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "b" / "passwd").stat().st_mode & 0o777) == "0o600"
    more, _, _ = make_fleet(str(tmp_path / "more"), 1, seed_serial=5000)
    store.import_csv(more)
    out = brokerconfig.build(store, tmp_path / "b", port=18883, workers=2)
    assert out["meters"] == 4 and out["headend_users"] == ["headend", "headend-w0", "headend-w1"]
    assert (tmp_path / "b" / "ca.crt").read_bytes() == ca1, "the CA changed: every meter would lose trust"
    assert json.loads((tmp_path / "b" / "headend-users.json").read_text())["headend"] == users1["headend"]
    # the hash is mosquitto's $7$ PBKDF2-SHA512 form, checked by hand here (mosquitto itself checks it above)
    import base64
    import hashlib
    line = next(x for x in (tmp_path / "b" / "passwd").read_text().split() if x.startswith(rows[0]["meter_id"]))
    _, _, it, salt, dk = line.split(":", 1)[1].split("$")
    assert hashlib.pbkdf2_hmac("sha512", rows[0]["broker_password"].encode(), base64.b64decode(salt), int(it), 64) \
        == base64.b64decode(dk)


def test_the_stepped_broker_enforces_the_same_rules(tmp_path):
    """The simulator's in-process broker with acl.registry_hooks (as every Chain on it runs)."""
    from host_tools.headend import acl
    from host_tools.sim.net.mqttbroker import SimBroker
    csv_path, _, (a, b) = make_fleet(str(tmp_path / "fleet"), 2)
    store = Store(tmp_path / "he.db")
    store.import_csv(csv_path)
    t = [0.0]
    broker = SimBroker(lambda: t[0])
    broker.authenticate, broker.authorize = acl.registry_hooks(store, {"headend": "he-secret-1"})
    got = {"headend": [], "spy": []}
    he = broker.client("headend", username="headend", password="he-secret-1",
                       on_message=lambda topic, p, q, d, r: got["headend"].append((topic, p)))
    assert he.connect() == 0
    assert he.subscribe("meters/+/up") == 1 and he.subscribe("meters/+/status") == 1
    spy = broker.client(a["meter_id"], username=a["meter_id"], password=a["broker_password"],
                        on_message=lambda topic, p, q, d, r: got["spy"].append(topic))
    assert spy.connect() == 0
    assert spy.subscribe("#") == 0x80 and spy.subscribe(f"meters/{b['meter_id']}/down") == 0x80
    spy.publish(f"meters/{b['meter_id']}/status", b"offline")
    spy.publish(f"meters/{b['meter_id']}/up", b"forged")
    victim = broker.client(b["meter_id"], username=b["meter_id"], password=b["broker_password"],
                           will=(f"meters/{a['meter_id']}/status", b"offline", 1, True))
    assert victim.connect() == 0
    victim.connect()                         # a dropped link: its will (on A's topic) is refused too
    victim.publish(f"meters/{b['meter_id']}/up", b"genuine")
    taker = broker.client("headend", username=a["meter_id"], password=a["broker_password"])
    assert taker.connect() != 0 and he.connected, "meter A's login took over the head-end's session"
    assert broker.client("headend", username="headend", password="guess").connect() != 0 and he.connected
    broker.pump()
    assert got["headend"] == [(f"meters/{b['meter_id']}/up", b"genuine")], got["headend"]
    assert got["spy"] == []
    assert broker.stats["publishes_refused"] == 3, broker.stats      # two from A, B's will on A's topic
