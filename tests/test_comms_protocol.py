"""The authenticated envelope protocol: good messages accepted; replayed, reordered, stale and forged
ones rejected and reported, never acted on; redelivered ids answered with the same result; sequence
numbers and remembered results survive a reboot; HMAC-SHA-256 against RFC 4231."""
import json

import pytest

from comms import auth
from comms.protocol import Protocol
from comms_support import FakeStore

KEY = bytes(range(100, 132))
MID = "012345678901234567"


def env(seq, inner, key=KEY, mid=MID, sign=True):
    p = json.dumps(inner)
    h = auth.hmac_hex(key, ("down\n%s\n%d\n%s" % (mid, seq, p)).encode()) if sign else ""
    return json.dumps({"m": mid, "s": seq, "p": p, "h": h}).encode()


def cmd(mid_, name="relay_open", args=None):
    return {"t": "cmd", "id": mid_, "cmd": name, "args": args or {}}


class Harness:
    def __init__(self, store=None):
        self.store = store or FakeStore()
        self.up = []
        self.acted = []
        self.events = []
        self.sources = []
        self.p = Protocol(MID, KEY, self.store, self.up.append, self.on_token, self.on_command,
                          lambda k, d: self.events.append((k, d)))

    def on_token(self, digits, source):
        self.acted.append(("token", digits))
        self.sources.append(source)
        return "accepted", {"added": 100}

    def on_command(self, name, args):
        self.acted.append((name, args))
        return "done", {"name": name}

    def inner_up(self):
        out = []
        for e in self.up:
            d = json.loads(e)
            # The uplink verifies as the head-end would.
            assert auth.equal(d["h"], auth.hmac_hex(KEY, ("up\n%s\n%d\n%s" % (d["m"], d["s"], d["p"])).encode()))
            out.append(json.loads(d["p"]))
        return out


@pytest.mark.parametrize("key,msg,mac", [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
])
def test_hmac_sha256_matches_rfc4231(key, msg, mac):
    assert auth.hmac_hex(key, msg) == mac


def test_constant_time_compare():
    assert auth.equal("abcd", "abcd") and not auth.equal("abcd", "abce") and not auth.equal("ab", "abc")


def test_good_command_is_acted_on_and_answered_with_result():
    h = Harness()
    assert h.p.receive(env(1, cmd("c1"))) == "accepted"
    assert h.acted == [("relay_open", {})]
    assert h.inner_up() == [{"t": "result", "ref": "c1", "code": "done", "detail": {"name": "relay_open"}}]


def test_unsigned_token_accepted_whatever_its_seq():
    h = Harness()
    h.p.receive(env(50, cmd("c1")))
    tok = {"t": "token", "id": "t1", "token": "12345678901234567890"}
    assert h.p.receive(env(0, tok, sign=False)) == "accepted"
    assert h.acted[-1] == ("token", "12345678901234567890")
    assert h.p.rx == 50  # an unsigned token never moves the sequence
    assert h.sources == ["mqtt"]     # unauthenticated: it counts towards that source's lockout


def test_a_signed_token_comes_from_the_headend_and_takes_its_sequence():
    h = Harness()
    tok = {"t": "token", "id": "t1", "token": "12345678901234567890"}
    assert h.p.receive(env(7, tok)) == "accepted"
    assert h.sources == ["headend"] and h.p.rx == 7
    forged = {"t": "token", "id": "t2", "token": "12345678901234567891"}
    assert h.p.receive(env(8, forged, key=bytes(32))) == "bad_mac"   # a bad MAC is not "unsigned"
    assert h.p.receive(env(7, dict(tok, id="t3"))) == "stale"
    assert h.sources == ["headend"]


def test_unsigned_command_is_rejected_as_bad_mac():
    h = Harness()
    assert h.p.receive(env(1, cmd("c1"), sign=False)) == "bad_mac"
    assert h.acted == []
    assert h.inner_up() == [{"t": "reject", "why": "bad_mac", "s": 1}]


@pytest.mark.parametrize("forged", [
    lambda: env(1, cmd("c1"), key=b"x" * 32),  # wrong key
    lambda: env(1, cmd("c1"), mid="999999999999999999"),  # another meter's id
    lambda: env(1, cmd("c1")).replace(b"relay_open", b"relay_close"),  # tampered inner text
    lambda: env(1, cmd("c1")).replace(b'"s": 1', b'"s": 2'),  # tampered seq
])
def test_forged_messages_are_rejected_reported_and_not_acted_on(forged):
    h = Harness()
    assert h.p.receive(forged()) == "bad_mac"
    assert h.acted == []
    assert h.inner_up()[0]["t"] == "reject" and h.inner_up()[0]["why"] == "bad_mac"
    assert h.events and h.events[0][0] == "msg_rejected"


def test_reordered_and_stale_sequence_numbers_are_rejected():
    h = Harness()
    assert h.p.receive(env(10, cmd("c10"))) == "accepted"
    assert h.p.receive(env(9, cmd("c9"))) == "stale"  # older seq arriving later
    assert h.p.receive(env(10, cmd("c10b"))) == "stale"  # same seq, new id
    assert h.acted == [("relay_open", {})]
    rejects = [i for i in h.inner_up() if i["t"] == "reject"]
    assert rejects == [{"t": "reject", "why": "stale", "s": 9}, {"t": "reject", "why": "stale", "s": 10}]


def test_redelivered_id_gets_the_same_result_without_acting_again():
    h = Harness()
    m = env(3, cmd("c3"))
    assert h.p.receive(m) == "accepted"
    assert h.p.receive(m) == "repeat"
    assert h.p.receive(m) == "repeat"
    assert len(h.acted) == 1
    results = [i for i in h.inner_up() if i["t"] == "result"]
    assert len(results) == 3 and results[0] == results[1] == results[2]


def test_replay_of_an_id_forgotten_long_ago_is_stale():
    h = Harness()
    old = env(1, cmd("c1"))
    h.p.receive(old)
    for i in range(2, 70):
        h.p.receive(env(i, cmd("c%d" % i, "get_readings")))
    assert len(h.p.ids) == 64
    assert h.p.receive(old) == "stale"
    assert h.acted.count(("relay_open", {})) == 1


def test_remembered_results_always_fit_the_record():
    """Regression: 64 remembered top-up results (about 66 bytes each) outgrew the record's 4 KB, so from
    the 62nd remote top-up on every commit raised, the message was left unacknowledged and, with the
    broker's 20 in flight, the downlink stalled on a link that never dropped."""
    h = Harness()
    h.on_token = lambda digits, source: (h.acted.append(("token", digits)) or
                                         ("accepted", {"credit": 123456789, "added": 10000}))
    h.p.on_token = h.on_token
    for i in range(1, 301):
        mid = "9f%030d" % i            # the head-end's message ids are 32 hex digits
        assert h.p.receive(env(i, {"t": "token", "id": mid, "token": "%020d" % i})) == "accepted", i
    assert h.store.commits >= 300 and len(h.acted) == 300
    assert 30 <= len(h.p.ids) < 64, len(h.p.ids)   # bounded by bytes before the count
    # the newest are still answered from memory, across a reboot as well
    h2 = Harness(h.store)
    assert h2.p.receive(env(300, {"t": "token", "id": "9f%030d" % 300, "token": "%020d" % 300})) == "repeat"
    assert h2.acted == [] and h2.inner_up()[-1]["detail"] == {"credit": 123456789, "added": 10000}


def test_a_long_result_is_remembered_without_its_detail():
    h = Harness()
    big = {"readings": "x" * 600}
    h.on_command = lambda name, args: (h.acted.append(name) or ("done", big if name.startswith("get") else {}))
    h.p.on_command = h.on_command
    for i in range(1, 41):
        assert h.p.receive(env(i, cmd("r%d" % i, "get_readings"))) == "accepted"
    assert h.p.ids[-1] == ["r40", "done", None]
    # a read asked again is read again (it changes nothing) and answered in full
    assert h.p.receive(env(40, cmd("r40", "get_readings"))) == "repeat"
    assert h.acted.count("get_readings") == 41 and h.inner_up()[-1]["detail"] == big
    # anything else with a long result is answered with its code, never acted on twice
    h.on_command = lambda name, args: (h.acted.append(name) or ("done", big))
    h.p.on_command = h.on_command
    assert h.p.receive(env(41, cmd("o41"))) == "accepted"
    assert h.p.receive(env(41, cmd("o41"))) == "repeat"
    assert h.acted.count("relay_open") == 1 and h.inner_up()[-1] == {"t": "result", "ref": "o41", "code": "done",
                                                                      "detail": {}}


def test_state_survives_reboot():
    store = FakeStore()
    h = Harness(store)
    h.p.receive(env(7, cmd("c7")))
    seqs = [json.loads(e)["s"] for e in h.up]
    h2 = Harness(store)
    assert h2.p.receive(env(7, cmd("c7"))) == "repeat"
    assert h2.p.receive(env(6, cmd("c6"))) == "stale"
    assert h2.acted == []
    h2.p.receive(env(8, cmd("c8")))
    seqs2 = [json.loads(e)["s"] for e in h2.up]
    assert min(seqs2) > max(seqs)  # uplink seqs never reused across a reboot


def test_uplink_sequence_reservation_limits_flash_writes():
    h = Harness()
    before = h.store.commits
    for _ in range(64):
        h.p.seal({"t": "event"})
    assert h.store.commits - before == 2  # one write per 32 sequence numbers


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1,2]", b'{"m":"x"}', b'{"m":1,"s":1,"p":"{}","h":""}',
                                     env(1, {"t": "what", "id": "x"}), b'{"m":"a","s":-1,"p":"{}","h":""}',
                                     b'{"m":"a","s":true,"p":"{}","h":""}', b"\xff\xfe", b"x" * 5000])
def test_malformed_payloads_are_rejected_as_malformed(payload):
    h = Harness()
    assert h.p.receive(payload) == "malformed"
    assert h.acted == [] and h.inner_up()[0]["why"] == "malformed"


def test_command_names_and_args_are_checked():
    h = Harness()
    h.p.receive(env(1, {"t": "cmd", "id": "a", "cmd": "format_flash", "args": {}}))
    h.p.receive(env(2, {"t": "cmd", "id": "b", "cmd": "set_time", "args": [1]}))
    h.p.receive(env(3, {"t": "token", "id": "c", "token": "١٢٣٤٥٦٧٨٩"}))
    codes = [i["code"] for i in h.inner_up()]
    assert codes == ["unknown_cmd", "bad_args", "format_error"] and h.acted == []


def test_sms_command_authentication():
    h = Harness()
    body = "relay_close"
    mac = h.p.sms_mac(5, body)
    assert len(mac) == 8
    assert h.p.sms_command(5, body, mac, "relay_close", {}) == ("done", {"name": "relay_close"})
    assert h.p.sms_command(5, body, mac, "relay_close", {}) == (None, "stale")
    assert h.p.sms_command(6, body, mac, "relay_close", {}) == (None, "bad_mac")
    assert h.acted == [("relay_close", {})]


def test_rejection_reports_are_bounded_until_a_message_is_accepted():
    h = Harness()
    for i in range(20):
        assert h.p.receive(b"junk") == "malformed"
    assert len(h.up) == 8 and h.p.stats["rejected"] == 20
    h.p.receive(env(1, cmd("c1")))
    h.p.receive(b"junk")
    assert [i["t"] for i in h.inner_up()[8:]] == ["result", "reject"]


def test_worked_vectors_in_docs_protocol_md_hold():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    key = bytes(range(32))
    p = '{"t": "cmd", "id": "c-1", "cmd": "relay_open", "args": {}}'
    h = auth.hmac_hex(key, ("down\n000000000000001234\n7\n" + p).encode())
    assert "p = `%s`" % p in doc and "`h = %s`" % h in doc
    proto = Protocol("000000000000001234", key, FakeStore(), lambda e: None)
    assert "`CMD 12 relay_close %s`" % proto.sms_mac(12, "relay_close") in doc


def test_a_flood_of_unsigned_junk_tokens_is_neither_remembered_nor_written_per_message():
    h = Harness()
    h.on_token = lambda digits, source: (h.sources.append(source), ("crc_error", {}))[1]
    h.p.on_token = h.on_token
    for i in range(64):
        tok = {"t": "token", "id": "junk-%d" % i, "token": "%020d" % i}
        assert h.p.receive(env(0, tok, sign=False)) == "accepted"
    assert h.p.ids == [] and h.sources == ["mqtt"] * 64
    # 64 results went up: the only writes are the uplink sequence blocks (32 numbers each)
    assert h.store.commits == 2, h.store.commits
    assert [i["code"] for i in h.inner_up()] == ["crc_error"] * 64
