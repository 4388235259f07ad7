"""The decoder's front door: what each token kind asks for, the energy/money mode rule, OpenPAYGO
through the same door, and the result names."""
import pytest

from host_tools.vend import opaygo_encode, sts_encode
from tokens_support import OPAYGO_KEY_HEX, OPAYGO_START, STS_KEY, FakeClock
from tokens.decoder import TokenDecoder
from tokens.opaygo import OpenPaygo

OKEY = bytes.fromhex(OPAYGO_KEY_HEX)


def tok(cls, sub, field, tid=4000):
    return sts_encode.build(STS_KEY, cls, sub, 2, tid, field)["token"]


@pytest.mark.parametrize("cls,sub,field,action,value", [
    (0, 0, sts_encode.encode_amount(1234), "credit_kwh", 1234),
    (0, 1, sts_encode.encode_amount(50), "credit_water", 50),
    (0, 2, sts_encode.encode_amount(60), "credit_gas", 60),
    (0, 3, sts_encode.encode_amount(70), "credit_time", 70),
    (2, 0, sts_encode.encode_amount(5000), "max_power_w", 5000),
    (2, 1, 0xFFFF, "clear_credit", 0xFFFF),
    (2, 5, 0, "clear_tamper", 0),
    (2, 6, sts_encode.encode_amount(800), "max_phase_unbalance_w", 800),
    (1, 0, 0x1234, "test", 0x1234),
])
def test_each_token_kind_says_what_it_asks_for(cls, sub, field, action, value):
    r = TokenDecoder(FakeClock(), STS_KEY).check(tok(cls, sub, field))
    assert (r.result, r.action, r.value) == ("accepted", action, value)


def test_money_mode_refuses_kwh_and_takes_currency():
    d = TokenDecoder(FakeClock(), STS_KEY, mode="money")
    r = d.check(tok(0, 0, 100))
    assert (r.result, r.detail) == ("format_error", "mode")
    assert d.lockout.fails == 0  # a genuine token in the wrong mode is not a guess
    r = d.check(tok(0, 4, sts_encode.encode_amount(sts_encode.currency_units("12.5")), tid=4001))
    assert (r.result, r.action) == ("accepted", "credit_currency")
    assert 1250000 <= r.value < 1250100  # e=2: steps of 100 x 0.00001, rounded up


def test_energy_mode_refuses_currency():
    r = TokenDecoder(FakeClock(), STS_KEY).check(tok(0, 5, 100))
    assert (r.result, r.detail) == ("format_error", "mode")


def test_tariff_token_is_unsupported_format_error():
    r = TokenDecoder(FakeClock(), STS_KEY).check(tok(2, 2, 1))
    assert (r.result, r.detail) == ("format_error", "unsupported")


def test_wrong_lengths_and_non_digits_are_format_errors():
    d = TokenDecoder(FakeClock(), STS_KEY)
    assert d.check("1234").result == "format_error"
    assert d.check("1234567890123456789x").result == "format_error"


def test_spaces_and_dashes_are_ignored():
    t = tok(0, 0, 10)
    spaced = " ".join(t[i:i + 4] for i in range(0, 20, 4))
    assert TokenDecoder(FakeClock(), STS_KEY).check(spaced).result == "accepted"


def test_opaygo_tokens_through_the_front_door():
    d = TokenDecoder(FakeClock(), None, opaygo=OpenPaygo(OKEY, OPAYGO_START, 1))
    r = d.check("588224011")
    assert (r.result, r.system, r.action, r.value) == ("accepted", "opaygo", "opaygo_add", 1)
    d.commit(r)
    assert d.check("588224011").result == "used"
    _, t = opaygo_encode.generate(OKEY, OPAYGO_START, 2, 0, "disable")
    r = d.check(t)
    assert (r.result, r.action, r.value) == ("accepted", "payg_disable", 998)
    assert d.check("000000001").result == "crc_error"
    # OpenPAYGO state persists with the rest
    d.commit(r)
    d2 = TokenDecoder(FakeClock(), None, opaygo=OpenPaygo(OKEY, OPAYGO_START))
    d2.load_state(d.state_bytes())
    assert d2.opaygo.last_count == 3 and d2.check(t).result == "used"


def test_commit_refuses_results_that_are_not_accepted():
    d = TokenDecoder(FakeClock(), STS_KEY)
    r = d.check("12345678901234567890")
    with pytest.raises(ValueError):
        d.commit(r)


def test_corrupt_state_is_refused():
    d = TokenDecoder(FakeClock(), STS_KEY)
    s = d.state_bytes()
    with pytest.raises(ValueError):
        TokenDecoder(FakeClock(), None).load_state(s[:-3])
    with pytest.raises(ValueError):
        TokenDecoder(FakeClock(), None).load_state(b"\x09" + s[1:])
