"""The MQTT 3.1.1 codec and client session: every packet type round-trips, QoS 1 retransmission
with DUP until acknowledged, inbound QoS 1 acknowledged only after processing, keepalive, bounds."""
import json

import pytest

from comms import mqttpkt as pkt
from comms.mqtt import CONNECTING, DOWN, UP, MQTTClient
from comms.protocol import Protocol
from comms_support import FakeClock, FakeStore, split_packets


class Wire:
    def __init__(self):
        self.data = b""

    def __call__(self, b):
        self.data += bytes(b)

    def packets(self):
        pk, rest = split_packets(self.data)
        assert rest == b""
        self.data = b""
        return [pkt.decode(f, b) for f, b in pk]


def client(**kw):
    clock = FakeClock()
    wire = Wire()
    got = []

    def on_message(topic, payload, pid):
        got.append((topic, payload, pid))
        return True

    args = dict(user="u", password="p", will=("s", b"offline", 1, True), on_message=on_message)
    args.update(kw)
    c = MQTTClient(clock, wire, "meter-1", **args)
    c.start()
    c.feed(pkt.connack(False, 0))
    return c, clock, wire, got


def ends_after(c, clock, ms, why, before=UP):
    """The session is still `before` 1 ms short of `ms` from now, and ends with `why` at `ms`."""
    clock.advance(ms - 1)
    c.poll()
    assert c.state == before, (c.state, c.error)
    clock.advance(1)
    c.poll()
    assert c.state == DOWN and c.error == why, (c.state, c.error)


ROUND_TRIPS = [
    (pkt.connect("id", 120, "user", "pw", ("w/t", b"bye", 1, True), clean=False),
     {"type": pkt.CONNECT, "clean": False, "keepalive": 120, "client_id": "id", "will": ("w/t", b"bye", 1, True),
      "user": "user", "password": b"pw"}),
    (pkt.connect("id", 0, clean=True), {"type": pkt.CONNECT, "clean": True, "keepalive": 0, "client_id": "id",
                                        "will": None, "user": None, "password": None}),
    (pkt.connack(True, 0), {"type": pkt.CONNACK, "session_present": True, "code": 0}),
    (pkt.publish("a/b", b"\x00\xff", 1, 77, retain=True, dup=True),
     {"type": pkt.PUBLISH, "qos": 1, "dup": True, "retain": True, "topic": "a/b", "pid": 77, "payload": b"\x00\xff"}),
    (pkt.publish("t", "é", 0), {"type": pkt.PUBLISH, "qos": 0, "dup": False, "retain": False, "topic": "t", "pid": 0,
                                "payload": "é".encode()}),
    (pkt.ack(pkt.PUBACK, 65535), {"type": pkt.PUBACK, "pid": 65535}),
    (pkt.ack(pkt.PUBREC, 1), {"type": pkt.PUBREC, "pid": 1}),
    (pkt.ack(pkt.PUBREL, 2), {"type": pkt.PUBREL, "pid": 2}),
    (pkt.ack(pkt.PUBCOMP, 3), {"type": pkt.PUBCOMP, "pid": 3}),
    (pkt.subscribe(9, [("meters/x/down", 1), ("b", 0)]), {"type": pkt.SUBSCRIBE, "pid": 9,
                                                          "topics": [("meters/x/down", 1), ("b", 0)]}),
    (pkt.suback(9, [1, 0x80]), {"type": pkt.SUBACK, "pid": 9, "codes": [1, 0x80]}),
    (pkt.unsubscribe(4, ["a", "b"]), {"type": pkt.UNSUBSCRIBE, "pid": 4, "topics": ["a", "b"]}),
    (pkt.ack(pkt.UNSUBACK, 4), {"type": pkt.UNSUBACK, "pid": 4}),
    (pkt.simple(pkt.PINGREQ), {"type": pkt.PINGREQ}),
    (pkt.simple(pkt.PINGRESP), {"type": pkt.PINGRESP}),
    (pkt.simple(pkt.DISCONNECT), {"type": pkt.DISCONNECT}),
]


@pytest.mark.parametrize("raw,expect", ROUND_TRIPS)
def test_every_packet_type_round_trips(raw, expect):
    (first, body), = split_packets(raw)[0]
    assert pkt.decode(first, body) == expect


def test_connect_bytes_match_the_spec_layout():
    # 3.1.1 section 3.1: remaining length 10 (variable header) + 5 strings of 3 = 25; "MQTT", level 4, flags user|password|will-retain|will-qos1|will, keepalive 120.
    raw = pkt.connect("m", 120, "u", "p", ("t", b"x", 1, True))
    assert raw == bytes([0x10, 25, 0, 4]) + b"MQTT" + bytes([4, 0xEC, 0, 120, 0, 1]) + b"m" + \
        bytes([0, 1]) + b"t" + bytes([0, 1]) + b"x" + bytes([0, 1]) + b"u" + bytes([0, 1]) + b"p"


def test_remaining_length_encoding_boundaries():
    assert pkt.remaining_length(127) == b"\x7f"
    assert pkt.remaining_length(128) == b"\x80\x01"
    assert pkt.remaining_length(16383) == b"\xff\x7f"
    assert pkt.remaining_length(268435455) == b"\xff\xff\xff\x7f"
    with pytest.raises(pkt.MQTTError):
        pkt.remaining_length(268435456)


def test_connect_then_connack_brings_session_up():
    c, clock, wire, _ = client()
    assert c.state == UP
    (conn,) = wire.packets()
    assert conn["type"] == pkt.CONNECT and conn["clean"] is False and conn["will"][1] == b"offline"


def test_refused_connack_closes_with_reason():
    clock = FakeClock()
    c = MQTTClient(clock, Wire(), "m")
    c.start()
    c.feed(pkt.connack(False, 5))
    assert c.state == DOWN and c.error == "connack refused 5"


def test_no_connack_times_out():
    clock = FakeClock()
    c = MQTTClient(clock, Wire(), "m")
    c.start()
    clock.advance(29000)
    c.poll()
    assert c.state == CONNECTING
    ends_after(c, clock, 1000, "connack timeout", before=CONNECTING)


def test_qos1_publish_retransmitted_with_dup_until_acked():
    acked = []
    c, clock, wire, _ = client(on_puback=acked.append, retry_ms=20000)
    wire.packets()
    pid = c.publish("meters/x/up", b"hello", 1)
    first = wire.packets()[0]
    assert first["dup"] is False and first["pid"] == pid
    for _ in range(3):
        clock.advance(20000)
        c.poll()
        sent = wire.packets()
        again = [p for p in sent if p["type"] == pkt.PUBLISH]
        assert len(again) == 1 and again[0]["dup"] is True and again[0]["pid"] == pid, sent
        assert again[0]["payload"] == b"hello"
        # the owed PUBACK made the client prove the link with a ping; the link is alive (a slow broker)
        assert {"type": pkt.PINGREQ} in sent, sent
        c.feed(pkt.simple(pkt.PINGRESP))
    c.feed(pkt.ack(pkt.PUBACK, pid))
    assert acked == [pid] and not c.inflight
    clock.advance(60000)
    c.poll()
    assert not [p for p in wire.packets() if p["type"] == pkt.PUBLISH]
    assert c.stats["retx"] == 3 and c.state == UP


def test_inflight_is_bounded():
    c, clock, wire, _ = client(max_inflight=2)
    assert c.publish("t", b"1") and c.publish("t", b"2")
    assert c.publish("t", b"3") is None
    assert c.publish("t", b"0", qos=0) == 0  # QoS 0 needs no slot


def test_inbound_qos1_acked_only_after_processing():
    decisions = [False]
    seen = []

    def on_message(topic, payload, pid):
        seen.append(pid)
        return decisions[0]

    c, clock, wire, _ = client(on_message=on_message)
    wire.packets()
    c.feed(pkt.publish("d", b"x", 1, 5))
    assert seen == [5] and wire.packets() == []  # not processed yet: no PUBACK
    c.ack(5)
    assert wire.packets() == [{"type": pkt.PUBACK, "pid": 5}]
    decisions[0] = True
    c.feed(pkt.publish("d", b"y", 1, 6))
    assert wire.packets() == [{"type": pkt.PUBACK, "pid": 6}]


def test_inbound_redelivery_after_crash_is_processed_once():
    """The meter acts, persists the result, then dies before PUBACK: the broker redelivers with DUP
    to the rebooted meter, which answers the remembered result without acting again."""
    store = FakeStore()
    acted = []
    up = []

    def on_command(name, args):
        acted.append(name)
        return "done", {"n": len(acted)}

    key = b"k" * 32
    inner = json.dumps({"t": "cmd", "id": "c-7", "cmd": "relay_open", "args": {}})
    from comms import auth
    h = auth.hmac_hex(key, ("down\nM\n3\n" + inner).encode())
    payload = json.dumps({"m": "M", "s": 3, "p": inner, "h": h}).encode()
    for attempt in range(2):  # second pass = after the reboot
        proto = Protocol("M", key, store, up.append, on_command=on_command)
        c, clock, wire, _ = client(on_message=lambda t, p, pid: proto.receive(p) and False)
        wire.packets()
        c.feed(pkt.publish("meters/M/down", payload, 1, 9, dup=attempt == 1))
        # crash: the PUBACK is never sent
    assert acted == ["relay_open"]
    results = [json.loads(json.loads(e)["p"]) for e in up]
    assert [r["code"] for r in results] == ["done", "done"] and results[0] == results[1]


def test_keepalive_ping_and_missing_pingresp_closes():
    c, clock, wire, _ = client(keepalive_s=120)
    wire.packets()
    clock.advance(89000)
    c.poll()
    assert wire.packets() == []
    clock.advance(1000)
    c.poll()
    assert wire.packets() == [{"type": pkt.PINGREQ}]
    c.feed(pkt.simple(pkt.PINGRESP))
    clock.advance(90000)
    c.poll()
    assert wire.packets() == [{"type": pkt.PINGREQ}]
    # CONNACK and PINGRESP came back at once: the wait is the shortest one
    assert c.ping_wait() == 3000
    ends_after(c, clock, 3000, "no pingresp")


def test_the_ping_wait_follows_the_round_trips_the_link_has_shown():
    clock = FakeClock()
    wire = Wire()
    c = MQTTClient(clock, wire, "meter-1", keepalive_s=120, ping_wait_ms=10000)
    assert c.ping_wait() == 10000            # nothing measured yet: the configured wait
    c.start()
    clock.advance(2000)                      # a slow link: CONNACK after 2 s
    c.feed(pkt.connack(False, 0))
    assert c.state == UP
    assert c.ping_wait() == 2000 + 4 * 1000  # smoothed round trip plus four variations (RFC 6298)
    for _ in range(30):                      # then it answers pings in 300 ms
        clock.advance(90000)
        c.poll()
        assert wire.packets()[-1] == {"type": pkt.PINGREQ}
        clock.advance(300)
        c.feed(pkt.simple(pkt.PINGRESP))
    assert c.ping_wait() == 3000             # never below the floor however fast the link
    c.close("link lost")                     # a new connection: its own round trips from its CONNACK
    c.start()
    clock.advance(1500)
    c.feed(pkt.connack(True, 0))
    assert c.ping_wait() == 1500 + 4 * 750
    c2 = MQTTClient(clock, Wire(), "meter-2", keepalive_s=120, ping_wait_ms=10000)
    c2.start()
    clock.advance(9000)                      # a very slow link: the configured wait is the ceiling
    c2.feed(pkt.connack(False, 0))
    assert c2.ping_wait() == 10000


def test_a_byte_heard_after_the_ping_restarts_its_wait():
    # A PINGRESP queued behind a download on a slow link: the link is alive while bytes come.
    c, clock, wire, _ = client(keepalive_s=120)
    wire.packets()
    clock.advance(90000)
    c.poll()
    assert wire.packets() == [{"type": pkt.PINGREQ}]
    big = pkt.publish("meters/M/ota", b"x" * 300, 0)
    clock.advance(2500)
    c.feed(big[:100])                         # part of a packet
    clock.advance(2500)
    c.poll()
    assert c.state == UP                      # 5 s after the ping, 2.5 s after the last byte
    c.feed(big[100:])
    ends_after(c, clock, 3000, "no pingresp")


def test_an_owed_puback_on_a_quiet_link_is_proved_by_a_ping_within_seconds():
    # A hung modem swallows what the meter writes: the session must end in seconds, not keepalives.
    c, clock, wire, _ = client(keepalive_s=120, probe_ms=4000, ping_wait_ms=10000)
    wire.packets()
    c.publish("meters/M/up", b"result", 1)
    wire.packets()
    clock.advance(3999)
    c.poll()
    assert wire.packets() == []
    clock.advance(1)
    c.poll()
    assert wire.packets() == [{"type": pkt.PINGREQ}]
    clock.advance(10000)
    c.poll()
    assert c.state == DOWN and c.error == "no pingresp"


def test_after_a_message_from_the_head_end_the_quiet_link_is_probed_then_the_long_keepalive_returns():
    c, clock, wire, got = client(keepalive_s=120, probe_ms=4000, ping_wait_ms=10000, brisk_ms=20000)
    wire.packets()
    c.feed(pkt.publish("meters/M/down", b"token", 1, 7))
    assert got and wire.packets() == [{"type": pkt.PUBACK, "pid": 7}]
    pings = 0
    for _ in range(40):                 # 40 s: probes while the window lasts, then quiet
        clock.advance(1000)
        c.poll()
        for p in wire.packets():
            assert p == {"type": pkt.PINGREQ}, p
            pings += 1
            c.feed(pkt.simple(pkt.PINGRESP))
    assert 4 <= pings <= 6, pings       # every 4 s for the 20 s window, none after
    assert c.state == UP
    # a link that dies inside the window is noticed within probe + ping wait
    c.feed(pkt.publish("meters/M/down", b"token2", 1, 8))
    wire.packets()
    clock.advance(4000)
    c.poll()
    assert wire.packets() == [{"type": pkt.PINGREQ}]
    clock.advance(10000)
    c.poll()
    assert c.state == DOWN and c.error == "no pingresp"


def test_oversized_packet_closes_session_without_buffering_it():
    c, clock, wire, _ = client(max_packet=4096)
    c.feed(bytes([0x30]) + pkt.remaining_length(4097))
    assert c.state == DOWN and c.error == "packet too long"
    assert len(c._buf) == 4096


def test_protocol_errors_close_the_session():
    for bad in (pkt.ack(pkt.PUBREC, 1), bytes([0x62, 2, 0, 1]), bytes([0x36, 3, 0, 1, 0x61]),
                pkt.connack(False, 0), bytes([0x00, 0])):
        c, clock, wire, _ = client()
        c.feed(bad)
        assert c.state == DOWN and c.error


def test_packets_split_across_any_boundary_are_reassembled():
    c, clock, wire, got = client()
    stream = pkt.publish("a", b"one", 1, 1) + pkt.publish("b", b"two" * 100, 0) + pkt.simple(pkt.PINGRESP)
    for i in range(len(stream)):
        c.feed(stream[i:i + 1])
    assert [(t, p) for t, p, _ in got] == [("a", b"one"), ("b", b"two" * 100)]
    assert c.state == UP


def test_an_application_failure_on_one_message_leaves_it_unacked_and_the_stream_in_step():
    """A MemoryError or flash error while handling a message must not leave the parser in the middle
    of the next packet (which closed every later session with `short packet`)."""
    seen = []

    def on_message(topic, payload, pid):
        seen.append(pid)
        if pid == 7:
            raise MemoryError("memory allocation failed")
        return True

    c, clock, wire, _ = client(on_message=on_message)
    wire.packets()
    c.feed(pkt.publish("d", b"a", 1, 7) + pkt.publish("d", b"b", 1, 8) + pkt.simple(pkt.PINGRESP))
    assert c.state == UP, c.error
    assert seen == [7, 8]
    assert wire.packets() == [{"type": pkt.PUBACK, "pid": 8}]     # 7 stays for the broker to resend


def test_a_message_the_application_failed_on_is_fetched_again_by_a_reconnect():
    """A broker redelivers only on a new connection: without one, each failure held a slot of its
    in-flight window (20 on mosquitto) for the life of the link, and 20 of them stalled the downlink."""
    fail = [True]

    def on_message(topic, payload, pid):
        if fail[0]:
            raise OSError(28)            # e.g. the flash is full
        return True

    c, clock, wire, _ = client(on_message=on_message)
    wire.packets()
    c.feed(pkt.publish("d", b"a", 1, 7))
    c.poll()
    assert c.state == UP
    clock.advance(4999)
    c.poll()
    assert c.state == UP, "ended before redo_ms"
    clock.advance(1)
    c.poll()
    assert (c.state, c.error) == (DOWN, "redeliver")
    # failing again on the redelivery: the next wait doubles (a message that always fails costs a
    # reconnect now and then, never a loop)
    c.start()
    c.feed(pkt.connack(True, 0) + pkt.publish("d", b"a", 1, 7, dup=True))
    clock.advance(9999)
    c.poll()
    assert c.state == UP, c.error
    clock.advance(1)
    c.poll()
    assert c.error == "redeliver"
    # handled at last: acknowledged, and the wait is back to 5 s for the next failure
    fail[0] = False
    c.start()
    wire.packets()
    c.feed(pkt.connack(True, 0) + pkt.publish("d", b"a", 1, 7, dup=True))
    assert wire.packets() == [{"type": pkt.PUBACK, "pid": 7}]
    fail[0] = True
    c.feed(pkt.publish("d", b"b", 1, 8))
    clock.advance(5000)
    c.poll()
    assert c.error == "redeliver"


def test_a_failure_waits_for_the_own_publishes_in_flight_before_reconnecting():
    def on_message(topic, payload, pid):
        raise MemoryError

    c, clock, wire, _ = client(on_message=on_message)
    c.publish("up", b"x")
    c.feed(pkt.publish("d", b"a", 1, 7))
    clock.advance(6000)
    c.poll()
    assert c.state == UP, "a reconnect now would only resend the publish"
    c.feed(pkt.ack(pkt.PUBACK, 1))
    c.poll()
    assert (c.state, c.error) == (DOWN, "redeliver")
