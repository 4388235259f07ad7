"""A credit is applied with its records or not at all, in RAM as on flash: a token whose commit fails
leaves no credit behind that a later commit could make durable without the token's TID (the cause of
the duplicate remote top-up in issue 11), and whatever arrives again is never credited twice."""
import datetime
import secrets

import pytest

from host_tools.sim.esp32.runner import SimMeter
from host_tools.vend import sts_encode

PAN = "600727000000000009"


@pytest.fixture(scope="module")
def meter():
    key = secrets.token_bytes(16)
    m = SimMeter(afe="ideal", profile="constant", heap="384k",
                 settings={"meter_period_s": 5, "prepaid": {"ledger": {"opening_credit": 100000}}})
    try:
        m.run_for(5)
        r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1, base_date="14",
                      sts_key=key.hex(), message_key=secrets.token_hex(32), service_key=secrets.token_hex(32),
                      broker={"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"})
        assert r["ok"], r
        m.sts_key = key
        m.tid = sts_encode.tid_from_time(datetime.datetime.now(datetime.timezone.utc), "14") - 1000
        yield m
    finally:
        m.close()


def currency_token(m, minor):
    m.tid += 1
    return sts_encode.build(m.sts_key, 0, 4, sts_encode.random_rnd(), m.tid,
                            sts_encode.encode_amount(minor * 1000))["token"], m.tid


def test_token_whose_commit_fails_leaves_no_credit_and_is_credited_once_when_entered_again(meter):
    m = meter
    token, tid = currency_token(m, 777)
    before = m.request("credit")
    m.flash_failing = True                       # every program and erase now fails with EIO
    try:
        failed = m.request("token", digits=token)
    finally:
        m.flash_failing = False
    assert m.stats.get("flash_failed_ops", 0) > 0, "the token's commit never reached the flash"
    assert failed.get("result") != "accepted", "a token whose commit failed was reported accepted: %r" % failed
    after_fail = m.request("credit")
    assert after_fail["topups"] == before["topups"] and after_fail["credit"] <= before["credit"], (
        "RAM kept the credit of a token whose commit failed: %r -> %r" % (before, after_fail))
    # Energy commits run on (a leaked RAM credit would be made durable by them), then a power cut
    m.run_for(120)
    m.power_cut()
    m.run_for(5)
    assert m.request("credit")["topups"] == before["topups"], "the failed token's credit reached flash"
    ok = m.request("token", digits=token)
    assert ok["result"] == "accepted", ok
    again = m.request("token", digits=token)
    assert again["result"] == "used", again
    assert m.request("credit")["topups"] - before["topups"] == 777


def test_credited_tokens_stay_used_when_the_replay_record_is_lost(meter):
    """The prepaid core's refs (committed with every credit) seed the replay state when the token
    record cannot be read, so a redelivered token is still refused."""
    m = meter
    token, tid = currency_token(m, 123)
    before = m.request("credit")["topups"]
    assert m.request("token", digits=token)["result"] == "accepted"
    m.run_for(1)
    m.power_cut()
    gone = m.flash.remove_files(("tokens.a", "tokens.b"))
    assert gone, "the meter kept no token record to lose"
    m.run_for(5)
    r = m.request("token", digits=token)
    assert r["result"] == "used", "a credited token was accepted again after its replay record was lost: %r" % r
    assert m.request("credit")["topups"] - before == 123
