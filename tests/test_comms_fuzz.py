"""Seeded fuzzing of every parser that meets bytes from outside: the AT line assembler, the MQTT
framing and codec, the PDU decoder and the envelope protocol. Random and mutated inputs; no
exception may escape and each parser's invariants must hold. FUZZ_ITERATIONS scales the run
(default 40k per parser, about 200k inputs in total)."""
import json
import os
import random

from comms import auth, mqttpkt as pkt, pdu, sms
from comms.at import ATEngine, Cmd, CONNECT, ESCAPE, LINE
from comms.mqtt import DOWN, UP, MQTTClient
from comms.protocol import Protocol
from comms_support import FakeClock, FakeStore
from host_tools.fuzz.mutate import mutate_bytes as mutate

N = int(os.environ.get("FUZZ_ITERATIONS", "40000"))  # per parser; 5 parsers


AT_SAMPLES = [b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 10\r\n", b"\r\n+CREG: 0,1\r\n", b'+CMTI: "SM",2\r\n',
              b"\r\nCONNECT 115200\r\n", b"\r\n> ", b"\r\nCLOSED\r\n", b"\r\nNO CARRIER\r\n", b"+CSQ: 31,99\r\n",
              b"RING\r\n", b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n", b"\x30\x05\x00\x01ab"]


class Stream:
    def __init__(self):
        self.rx = []

    def read(self):
        return self.rx.pop(0) if self.rx else None

    def write(self, b):
        pass


def test_fuzz_at_engine():
    rng = random.Random(1)
    clock = FakeClock()
    s = Stream()
    e = ATEngine(s, clock, lambda line: None, max_line=128)
    e.sink = lambda d: None
    kinds = [Cmd("AT"), Cmd("AT+CSQ"), Cmd("ATO", 3000, CONNECT), Cmd("AT+CIFSR", 3000, LINE),
             Cmd("+++", 2000, ESCAPE), Cmd("AT+CMGS=5", 3000, payload=b"00")]
    for i in range(N):
        if not e.busy() and rng.random() < 0.3:
            k = kinds[rng.randrange(len(kinds))]
            e.send(Cmd(k.text, k.timeout_ms, k.kind, k.payload))
        r = rng.random()
        if r < 0.4:
            chunk = mutate(rng, rng.choice(AT_SAMPLES))
        elif r < 0.7:
            chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        else:
            chunk = b"".join(rng.choice(AT_SAMPLES) for _ in range(rng.randint(1, 4)))
        s.rx.append(chunk)
        clock.advance(rng.choice((0, 10, 100, 1000, 4000)))
        e.poll()
        assert 0 <= e._n <= 128
        assert e.cur is None or e.cur.result is None
        assert len(e._held) < 16
        assert all(v >= 0 for v in e.stats.values())
        if rng.random() < 0.01:
            e.flush()


MQTT_SAMPLES = [pkt.connack(False, 0), pkt.publish("meters/x/down", b'{"a":1}', 1, 7), pkt.ack(pkt.PUBACK, 1),
                pkt.suback(1, [1]), pkt.simple(pkt.PINGRESP), pkt.publish("t", b"", 0), pkt.ack(pkt.UNSUBACK, 2)]


def test_fuzz_mqtt_client_parser():
    rng = random.Random(2)
    clock = FakeClock()
    delivered = []
    c = MQTTClient(clock, lambda b: None, "m", max_packet=512, max_inflight=3,
                   on_message=lambda t, p, pid: delivered.append(len(p)) or True)
    for i in range(N):
        if c.state == DOWN:
            c.start()
            c.feed(pkt.connack(False, 0))
        if c.state == UP and rng.random() < 0.2:
            c.publish("up", b"x" * rng.randrange(50), 1)
        r = rng.random()
        if r < 0.5:
            data = mutate(rng, b"".join(rng.choice(MQTT_SAMPLES) for _ in range(rng.randint(1, 3))))
        elif r < 0.8:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            data = rng.choice(MQTT_SAMPLES)
        c.feed(data)
        clock.advance(rng.choice((0, 1000, 30000)))
        c.poll()
        assert c.state in (0, 1, 2)
        assert c._got <= 512 and c._rlen <= 512 or c.state == DOWN
        assert len(c.inflight) <= 3
    assert delivered  # the fuzz did reach the application sometimes


def test_fuzz_mqtt_codec_decode():
    rng = random.Random(3)
    for i in range(N):
        raw = mutate(rng, rng.choice(MQTT_SAMPLES + [pkt.connect("id", 60, "u", "p", ("w", b"x", 1, False)),
                                                     pkt.subscribe(3, [("a", 1)])]))
        if len(raw) < 2:
            continue
        try:
            d = pkt.decode(raw[0], raw[2:])
        except pkt.MQTTError:
            continue
        assert 1 <= d["type"] <= 14


def test_fuzz_pdu_decoder():
    rng = random.Random(4)
    samples = [bytes.fromhex(h) for _, h in sms.encode("+22236000001", "Solde " * 40, 3)]
    samples += [bytes.fromhex(h) for _, h in sms.encode("+22236000001", "رصيد " * 20, 4)]
    samples.append(bytes.fromhex("07912222000000F0040B912232060000F1000062115201030000" "05D3379B5C06"))
    for i in range(N):
        r = rng.random()
        if r < 0.6:
            data = mutate(rng, rng.choice(samples))
        else:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
        m = pdu.decode(data) if rng.random() < 0.7 else pdu.decode(data.hex() + rng.choice(("", "Z", "0")))
        if m is not None:
            assert isinstance(m["text"], str) and isinstance(m["addr"], str)
            assert m["concat"] is None or 1 <= m["concat"][2] <= m["concat"][1]
    for _ in range(min(N // 10, 3000)):
        t = "".join(rng.choice("abcé€[ رصيد0123") for _ in range(rng.randint(0, 400)))
        parts = sms.encode("+22236000001", t)
        assert "".join(pdu.decode(h)["text"] for _, h in parts) == t or len(parts) == 8


def test_fuzz_protocol_decoder_never_acts_on_forgeries():
    rng = random.Random(5)
    key = b"\x42" * 32
    acted = []
    p = Protocol("M", key, FakeStore(), lambda e: None,
                 on_token=lambda d, s: acted.append(d) or ("accepted", {}),
                 on_command=lambda n, a: acted.append(n) or ("done", {}))
    good = []
    for s in range(1, 5):
        inner = json.dumps({"t": "cmd", "id": "c%d" % s, "cmd": "get_readings", "args": {}})
        h = auth.hmac_hex(key, ("down\nM\n%d\n%s" % (s, inner)).encode())
        good.append(json.dumps({"m": "M", "s": s, "p": inner, "h": h}).encode())
    good.append(json.dumps({"m": "M", "s": 1, "p": json.dumps({"t": "token", "id": "t", "token": "1" * 20}),
                            "h": ""}).encode())
    outcomes = set()
    for i in range(N):
        before = len(acted)
        raw = mutate(rng, rng.choice(good)) if rng.random() < 0.8 else \
            bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
        out = p.receive(raw)
        outcomes.add(out)
        assert out in ("accepted", "repeat", "malformed", "bad_mac", "stale")
        if out != "accepted":
            assert len(acted) == before
        else:
            # Only a message whose MAC verifies (or an unsigned token) may act.
            env = json.loads(raw)
            inner = json.loads(env["p"])
            assert env["h"] == "" and inner["t"] == "token" or auth.equal(
                env["h"], auth.hmac_hex(key, ("down\nM\n%d\n%s" % (env["s"], env["p"])).encode()))
    assert "bad_mac" in outcomes and "malformed" in outcomes
    assert len(p.ids) <= 64
