"""The TID replay store and the decoder's replay results: used, old, out of order within the store,
key expiry, and the store surviving serialise/deserialise (CPython and MicroPython)."""
import pytest

from host_tools.vend import sts_encode
from mpyrun import run_micropython
from tokens_support import CLOCK_SRC, STS_KEY, STS_KEY_HEX, FakeClock
from tokens.decoder import TokenDecoder
from tokens.tidstore import OK, OLD, USED, TidStore


def credit(tid, tenths=10, key=STS_KEY, sub=0):
    return sts_encode.build(key, 0, sub, 3, tid, sts_encode.encode_amount(tenths))["token"]


def test_store_reports_used_old_and_accepts_out_of_order_above_the_oldest():
    s = TidStore(50)
    for tid in (1000, 3000, 2000):
        assert s.check(tid) == OK
        s.record(tid)
    assert s.check(2000) == USED
    assert s.check(999) == OLD
    assert s.check(2500) == OK  # out of order but newer than the oldest kept
    assert s.tids() == [1000, 2000, 3000]


def test_store_keeps_the_newest_50_and_the_dropped_become_old():
    s = TidStore(50)
    for tid in range(100, 160):
        s.record(tid)
    assert len(s) == 50 and s.tids()[0] == 110
    assert s.check(105) == OLD
    assert s.check(159) == USED


def test_store_record_refuses_used_tid():
    s = TidStore()
    s.record(5)
    with pytest.raises(ValueError):
        s.record(5)


def test_store_survives_serialise_and_deserialise():
    s = TidStore(50)
    for tid in (7, 16777215, 4242, 100000):
        s.record(tid)
    s2 = TidStore(50)
    s2.load_bytes(s.to_bytes())
    assert s2.tids() == s.tids()
    assert s2.check(4242) == USED and s2.check(6) == OLD
    with pytest.raises(ValueError):
        s2.load_bytes(s.to_bytes()[:-1])


def test_decoder_accepts_once_then_used_then_old_after_50_newer():
    d = TokenDecoder(FakeClock(), STS_KEY)
    first = credit(5000)
    r = d.check(first)
    assert (r.result, r.action, r.value, r.unit) == ("accepted", "credit_kwh", 10, "0.1kWh")
    d.commit(r)
    assert d.check(first).result == "used"
    with pytest.raises(ValueError):
        d.commit(r)  # the same result cannot be applied twice
    for i in range(50):
        d.commit(d.check(credit(6000 + i)))
    assert d.check(first).result == "old"


def test_check_alone_records_nothing():
    d = TokenDecoder(FakeClock(), STS_KEY)
    tok = credit(777)
    assert d.check(tok).result == "accepted"
    assert d.check(tok).result == "accepted"  # not committed: the caller did not apply it


def test_replay_state_survives_a_reboot_through_state_bytes():
    clock = FakeClock()
    d = TokenDecoder(clock, STS_KEY)
    toks = [credit(t) for t in (100, 300, 200)]
    for t in toks:
        d.commit(d.check(t))
    d2 = TokenDecoder(clock, None)
    d2.load_state(d.state_bytes())
    assert [d2.check(t).result for t in toks] == ["used"] * 3
    assert d2.check(credit(50)).result == "old"
    assert d2.check(credit(250)).result == "accepted"


def test_key_expiry_refuses_tids_beyond_ken():
    d = TokenDecoder(FakeClock(), STS_KEY, ken=0x59)
    assert d.check(credit(0x59FFFF)).result == "accepted"
    assert d.check(credit(0x5A0000)).result == "key_expired"


def test_replay_under_micropython():
    toks = [credit(t) for t in (100, 300, 200)]
    code = CLOCK_SRC + """
import binascii
from tokens.decoder import TokenDecoder
d = TokenDecoder(FakeClock(), binascii.unhexlify('%s'))
toks = %r
for t in toks:
    r = d.check(t)
    print(r.result, r.tid)
    d.commit(r)
d2 = TokenDecoder(FakeClock(), None)
d2.load_state(d.state_bytes())
print([d2.check(t).result for t in toks])
print(d2.check('%s').result)
""" % (STS_KEY_HEX, toks, credit(50))
    out = run_micropython(code, heap="96k").strip().split("\n")
    assert out == ["accepted 100", "accepted 300", "accepted 200", "['used', 'used', 'used']", "old"]
