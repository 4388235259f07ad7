"""Decoder key change: four sections in any order, new key active, old key's tokens refused, the
10-minute window, conflicting sets, and rollover clearing the TID store."""
import itertools

from host_tools.vend import sts_encode
from mpyrun import run_micropython
from tokens_support import CLOCK_SRC, STS_KEY, STS_KEY_HEX, FakeClock
from tokens.decoder import TokenDecoder

NEW_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def sections(krn=2, kt=2, ti=7, ken=200, rollover=False, key=STS_KEY, new=NEW_KEY):
    return [f["token"] for f in sts_encode.key_change_tokens(key, new, krn, kt, ti, ken, rollover)]


def credit(tid, key):
    return sts_encode.build(key, 0, 0, 1, tid, 25)["token"]


def test_four_sections_in_any_order_install_the_new_key():
    secs = sections()
    for order in itertools.permutations(range(4)):
        d = TokenDecoder(FakeClock(), STS_KEY)
        results = []
        for i in order:
            r = d.check(secs[i])
            results.append(r.result)
            d.commit(r)
        assert results == ["key_change_waiting"] * 3 + ["accepted"]
        assert d.decoder_key == NEW_KEY
        assert (d.krn, d.kt, d.ti, d.ken) == (2, 2, 7, 200)


def test_waiting_result_says_which_sections_are_held():
    d = TokenDecoder(FakeClock(), STS_KEY)
    secs = sections()
    r = d.check(secs[2])
    assert (r.result, r.detail) == ("key_change_waiting", [3])
    d.commit(r)
    r = d.check(secs[0])
    assert r.detail == [1, 3]


def test_after_change_old_key_tokens_refused_new_key_tokens_accepted():
    d = TokenDecoder(FakeClock(), STS_KEY)
    for t in sections():
        d.commit(d.check(t))
    assert d.check(credit(1000, STS_KEY)).result == "crc_error"
    r = d.check(credit(1000, NEW_KEY))
    assert r.result == "accepted" and r.value == 25


def test_sections_forgotten_after_the_window():
    c = FakeClock()
    d = TokenDecoder(c, STS_KEY)
    secs = sections()
    for t in secs[:3]:
        d.commit(d.check(t))
    c.advance(600000)
    r = d.check(secs[3])
    assert r.result == "key_change_waiting" and r.detail == [4]
    assert d.decoder_key == STS_KEY


def test_within_the_window_the_set_completes():
    c = FakeClock()
    d = TokenDecoder(c, STS_KEY)
    secs = sections()
    for t in secs[:3]:
        d.commit(d.check(t))
        c.advance(150000)
    assert d.check(secs[3]).result == "accepted"


def test_conflicting_section_restarts_the_set():
    d = TokenDecoder(FakeClock(), STS_KEY)
    a = sections(krn=2)
    b = sections(krn=3)
    d.commit(d.check(a[0]))
    r = d.check(b[2])  # same half (sections 1/3) with a different KRN
    assert r.detail == [3]
    d.commit(r)
    for t in (b[0], b[1]):
        d.commit(d.check(t))
    r = d.check(b[3])
    assert r.result == "accepted"
    d.commit(r)
    assert d.krn == 3


def test_rollover_clears_the_tid_store_and_plain_change_keeps_it():
    for rollover, expect in ((True, "accepted"), (False, "old")):
        d = TokenDecoder(FakeClock(), STS_KEY)
        d.commit(d.check(credit(5000, STS_KEY)))
        for t in sections(rollover=rollover):
            d.commit(d.check(t))
        assert d.check(credit(10, NEW_KEY)).result == expect


def test_key_change_persists_across_reboot():
    c = FakeClock()
    d = TokenDecoder(c, STS_KEY)
    for t in sections():
        d.commit(d.check(t))
    d2 = TokenDecoder(c, None)
    d2.load_state(d.state_bytes())
    assert d2.decoder_key == NEW_KEY and d2.krn == 2
    assert d2.check(credit(77, NEW_KEY)).result == "accepted"


def test_key_change_under_micropython():
    secs = sections()
    code = CLOCK_SRC + """
import binascii
from tokens.decoder import TokenDecoder
d = TokenDecoder(FakeClock(), binascii.unhexlify('%s'))
for t in %r:
    r = d.check(t)
    print(r.result)
    d.commit(r)
print(binascii.hexlify(d.decoder_key).decode(), d.krn, d.ti, d.ken)
print(d.check(%r).result, d.check(%r).result)
""" % (STS_KEY_HEX, [secs[3], secs[1], secs[0], secs[2]], credit(9, STS_KEY), credit(9, NEW_KEY))
    out = run_micropython(code, heap="96k").strip().split("\n")
    assert out == ["key_change_waiting"] * 3 + ["accepted", NEW_KEY.hex() + " 2 7 200",
                                               "crc_error accepted"]


def test_sections_held_in_the_saved_state_complete_with_a_new_decoder_per_token():
    c = FakeClock()
    state = None
    results = []
    for t in sections():
        d = TokenDecoder(c, STS_KEY)
        if state:
            d.load_state(state)
        r = d.check(t)
        results.append(r.result)
        d.commit(r)
        state = d.state_bytes()
        c.advance(60000)
    assert results == ["key_change_waiting"] * 3 + ["accepted"]
    d = TokenDecoder(c, STS_KEY)
    d.load_state(state)
    assert d.decoder_key == NEW_KEY and d.keychange.pending() == []


def test_saved_sections_expire_and_a_clock_set_back_forgets_them():
    c = FakeClock()
    d = TokenDecoder(c, STS_KEY)
    for t in sections()[:2]:
        d.commit(d.check(t))
    state = d.state_bytes()
    d2 = TokenDecoder(c, STS_KEY)
    d2.load_state(state)
    assert d2.keychange.pending() == [1, 2]
    c.advance(600000)
    assert d2.keychange.pending() == []
    back = FakeClock(epoch=1600000000)
    d3 = TokenDecoder(back, STS_KEY)
    d3.load_state(state)
    assert d3.keychange.pending() == []
    import pytest
    for bad in (b"\x00\x01", b"\x00" * 4 + b"\x04\x01"):
        with pytest.raises(ValueError):
            d3.keychange.load_bytes(bad)
