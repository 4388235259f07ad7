"""Failed-entry lockout: 3 free failures, then 10 s doubling to a cap; a good token resets; the lock
survives a reboot (serialise, new object, deserialise) with and without a trusted wall clock."""
import pytest

from mpyrun import run_micropython
from tokens_support import CLOCK_SRC, STS_KEY, FakeClock
from tokens.decoder import TokenDecoder
from tokens.lockout import Lockout

BAD = "12345678901234567890"


def test_three_failures_lock_for_10s_then_doubling_to_the_cap():
    c = FakeClock()
    lk = Lockout(c, cap_s=60)
    assert [lk.failure() for _ in range(3)] == [0, 0, 10000]
    assert lk.locked()
    c.advance(9999)
    assert lk.locked()
    c.advance(1)
    assert not lk.locked()
    assert lk.failure() == 20000
    c.advance(20000)
    assert lk.failure() == 40000
    c.advance(40000)
    assert lk.failure() == 60000  # capped
    c.advance(60000)
    assert lk.failure() == 60000


def test_good_token_resets_the_count():
    c = FakeClock()
    lk = Lockout(c)
    lk.failure()
    lk.failure()
    lk.success()
    assert lk.failure() == 0 and lk.fails == 1


def test_decoder_refuses_entries_while_locked_and_they_do_not_count():
    c = FakeClock()
    d = TokenDecoder(c, STS_KEY)
    assert [d.check(BAD).result for _ in range(3)] == ["crc_error"] * 3
    r = d.check(BAD)
    assert r.result == "locked_out" and r.remaining_ms == 10000
    assert d.lockout.fails == 3
    c.advance(10000)
    assert d.check(BAD).result == "crc_error"
    assert d.lockout.remaining_ms() == 20000


def test_lock_survives_reboot_without_trusted_clock_in_full():
    c = FakeClock(ms=5000)
    lk = Lockout(c)
    for _ in range(4):
        lk.failure()  # 20 s lock
    c.advance(5000)
    saved = lk.to_bytes()
    # reboot: ticks restart from 0 and the wall clock is not trusted yet
    c2 = FakeClock(ms=0, time_valid=False)
    lk2 = Lockout(c2)
    lk2.load_bytes(saved)
    assert lk2.fails == 4
    assert lk2.remaining_ms() == 15000  # what was left; the reboot did not shorten it
    c2.advance(15000)
    assert not lk2.locked()
    assert lk2.failure() == 40000  # the count carried over: next failure doubles


def test_lock_survives_reboot_with_trusted_clock_counting_power_off_time():
    c = FakeClock(ms=0, epoch=1_800_000_000, time_valid=True)
    lk = Lockout(c, cap_s=3600)
    for _ in range(7):
        lk.failure()  # 160 s
    saved = lk.to_bytes()
    # off for 100 s, then up again with a trusted clock
    c2 = FakeClock(ms=0, epoch=1_800_000_100, time_valid=True)
    lk2 = Lockout(c2, cap_s=3600)
    lk2.load_bytes(saved)
    assert 59000 <= lk2.remaining_ms() <= 60000
    # off for longer than the lock: free again, count kept
    c3 = FakeClock(ms=0, epoch=1_800_001_000, time_valid=True)
    lk3 = Lockout(c3, cap_s=3600)
    lk3.load_bytes(saved)
    assert not lk3.locked() and lk3.fails == 7


def test_restored_lock_never_exceeds_the_cap_and_bad_state_is_refused():
    c = FakeClock()
    lk = Lockout(c, cap_s=3600)
    for _ in range(20):
        lk.failure()
    saved = lk.to_bytes()
    lk2 = Lockout(FakeClock(), cap_s=60)
    lk2.load_bytes(saved)
    assert lk2.remaining_ms() == 60000
    with pytest.raises(ValueError):
        lk2.load_bytes(saved[:5])
    with pytest.raises(ValueError):
        Lockout(c, cap_s=10 ** 6)


def test_decoder_lockout_persists_through_state_bytes_under_micropython():
    code = CLOCK_SRC + """
import binascii
from tokens.decoder import TokenDecoder
c = FakeClock()
d = TokenDecoder(c, bytes(16))
for i in range(3):
    print(d.check('%s').result)
saved = d.state_bytes()
c2 = FakeClock()
d2 = TokenDecoder(c2, None)
d2.load_state(saved)
r = d2.check('%s')
print(r.result, r.remaining_ms)
c2.advance(10000)
print(d2.check('%s').result, d2.lockout.remaining_ms())
""" % (BAD, BAD, BAD)
    out = run_micropython(code, heap="96k").strip().split("\n")
    assert out == ["crc_error"] * 3 + ["locked_out 10000", "crc_error 20000"]


def test_openpaygo_schedule_is_one_minute_doubling_capped_at_512_minutes():
    from tokens.lockout import OPAYGO_CAP_S, OPAYGO_FIRST_S
    c = FakeClock()
    lk = Lockout(c, cap_s=OPAYGO_CAP_S, first_s=OPAYGO_FIRST_S)
    got = []
    for _ in range(14):
        got.append(lk.failure() // 60000)
        c.advance(lk.remaining_ms())
    assert got == [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512], got


def test_a_token_checked_against_another_lockout_leaves_the_keypads_alone():
    c = FakeClock()
    dec = TokenDecoder(c, decoder_key=STS_KEY)
    sms = Lockout(c)
    for _ in range(31):
        dec.check(BAD, sms)
    assert sms.locked() and dec.check(BAD, sms).result == "locked_out"
    assert dec.lockout.fails == 0 and not dec.lockout.locked()
    for _ in range(31):
        assert dec.check(BAD, None).result == "crc_error"     # authenticated: never counts, never locked
    assert dec.check(BAD).result == "crc_error" and dec.lockout.fails == 1
