"""The SMS channel end to end on the real firmware (MicroPython unix port) behind the AT-level modem
model, with the head-end: signed utility commands from the registered number (and what happens to
forged, replayed and unregistered ones), and the monthly statement closed at the month's turn, sent
to the head-end and texted to the household in Arabic (UCS2, checked byte for byte)."""
import calendar

import pytest

from host_tools.headend import smscmd
from host_tools.sim.scenarios.chain import CUSTOMER, UTILITY, Chain
from host_tools.sim.modem.smsc import SMSC

pytestmark = pytest.mark.timeout(300)


def texts_to(ch, number, n0=0):
    return [m.text for m in ch.smsc.sent[n0:] if m.to == number]


def sms_exchange(ch, sender, text, seconds=1500):
    """Deliver a text and run until the meter answers `sender` (it looks for texts every 600 s)."""
    n0 = len(ch.smsc.sent)
    ch.smsc.deliver(sender, text)
    ch.run(seconds, until=lambda: texts_to(ch, sender, n0), step_s=5, paced=False)
    return texts_to(ch, sender, n0)


def meter_events(ch, kind):
    return [e[3] for e in ch.meter.request("events")["events"] if e[2] == kind]


@pytest.fixture(scope="module")
def chain():
    smsc = SMSC()
    with Chain(seed=11, smsc=smsc) as ch:
        yield ch


def test_signed_sms_command_from_the_utility_number_acts_and_is_answered(chain):
    ch = chain
    assert ch.meter.world.relay_closed
    cmd = smscmd.make(ch.store, ch.meter_id, "relay_open")
    assert cmd["seq"] == 1 and cmd["text"].startswith("CMD 1 relay_open ")
    replies = sms_exchange(ch, UTILITY, cmd["text"])
    assert replies == ["CMD 1: done supply=open"], replies
    ch.run(30, until=lambda: not ch.meter.world.relay_closed, step_s=1, paced=False)
    assert not ch.meter.world.relay_closed
    assert "REMOTE" in ch.credit()["reasons"]
    close = smscmd.make(ch.store, ch.meter_id, "relay_close")
    assert sms_exchange(ch, UTILITY, close["text"]) == ["CMD 2: done supply=closed"]
    ch.run(30, until=lambda: ch.meter.world.relay_closed, step_s=1, paced=False)
    assert ch.meter.world.relay_closed

    # the recorded relay_open replayed from the utility's own number: stale, not acted on, not answered
    n_stale = len([e for e in meter_events(ch, "msg_rejected") if e.get("why") == "stale"])
    n0 = len(ch.smsc.sent)
    ch.smsc.deliver(UTILITY, cmd["text"])
    assert sms_exchange(ch, UTILITY, "BAL")[0].startswith("Balance: ")   # read after the replay
    assert texts_to(ch, UTILITY, n0)[0].startswith("Balance: ")         # the replay got no answer
    assert len([e for e in meter_events(ch, "msg_rejected") if e.get("why") == "stale"]) == n_stale + 1
    ch.run(30, step_s=5, paced=False)
    assert ch.meter.world.relay_closed and "REMOTE" not in ch.credit()["reasons"]

    # a forged MAC (the text of seq 3 signed with the wrong key): rejected as bad_mac, relay untouched
    forged = smscmd.sign(b"\x42" * 32, ch.meter_id, 3, "relay_open")
    ch.smsc.deliver(UTILITY, forged)
    sms_exchange(ch, UTILITY, "SOLDE")
    assert any(e.get("why") == "bad_mac" and e.get("via") == "sms" for e in meter_events(ch, "msg_rejected"))
    assert ch.meter.world.relay_closed

    # a genuine, fresh command from a number that is not registered: refused, not answered
    good = smscmd.make(ch.store, ch.meter_id, "relay_open")
    ch.smsc.deliver("+22211112222", good["text"])
    sms_exchange(ch, UTILITY, "BAL")      # read in the same pass as the stranger's command
    assert meter_events(ch, "sms_cmd_refused")[-1] == {"from": "+22211112222"}
    assert ch.meter.world.relay_closed
    # the seq it used is still fresh, so the utility can send that same text itself
    assert sms_exchange(ch, UTILITY, good["text"]) == ["CMD %d: done supply=open" % good["seq"]]
    assert sms_exchange(ch, UTILITY, smscmd.make(ch.store, ch.meter_id, "relay_close")["text"])[0].endswith(
        "done supply=closed")


def test_sms_get_statement_answers_with_the_month_so_far(chain):
    ch = chain
    cmd = smscmd.make(ch.store, ch.meter_id, "get_statement")
    reply = sms_exchange(ch, UTILITY, cmd["text"])
    assert len(reply) == 1 and reply[0].startswith("CMD %d: done current.cost=" % cmd["seq"]), reply
    fields = dict(p.split("=") for p in reply[0].split(": done ")[1].split())
    st = ch.meter.request("statement")["current"]
    assert fields["current.month"] == "2026-01" == st["month"]
    assert 0 < int(fields["current.import_wh"]) <= st["import_wh"]


# -- the monthly statement ---------------------------------------------------------------------------
JAN31_2330 = calendar.timegm((2026, 1, 31, 23, 30, 0))
AR = "كشف شهر {month}: الاستهلاك {kwh} ك.و.س، المبلغ {cost} أوقية، الشحن {topups} أوقية. الرصيد {credit} أوقية."


def mru(minor):
    return "%d.%02d" % (minor // 100, minor % 100)


@pytest.fixture(scope="module")
def month_end():
    smsc = SMSC()
    settings = {"meter_period_s": 5, "language": "ar", "statement_hour": 1,
                "prepaid": {"ledger": {"opening_credit": 100000}}}
    with Chain(seed=12, smsc=smsc, epoch=JAN31_2330, settings=settings) as ch:
        yield ch


def test_month_turn_closes_a_statement_sent_to_the_headend_and_texted_in_arabic_at_the_statement_hour(month_end):
    ch = month_end
    v = ch.vend(amount=5)                                  # a January top-up, so the statement shows one
    assert ch.run(600, until=lambda: ch.message(v["msg_id"])["state"] == "done", step_s=1, paced=False)
    assert ch.run(1200, until=lambda: texts_to(ch, CUSTOMER), step_s=5, paced=False)   # its receipt
    feb1 = calendar.timegm((2026, 2, 1, 0, 0, 0))
    assert ch.meter.world.epoch + ch.now_s < feb1
    n0 = len(ch.smsc.sent)
    assert ch.run(3600, until=lambda: ch.store.q1("SELECT * FROM statements WHERE meter_id=?", (ch.meter_id,)),
                  step_s=5, paced=False), "no statement reached the head-end"
    row = ch.store.q1("SELECT * FROM statements WHERE meter_id=?", (ch.meter_id,))
    st = ch.meter.request("statement")["last"]
    assert row["month"] == st["month"] == "2026-01"
    assert (row["import_wh"], row["cost"], row["topups"]) == (st["import_wh"], st["cost"], st["topups"])
    assert st["topups"] == 500 and st["import_wh"] > 0
    assert st["cost"] == st["import_wh"] * 5 // 10 or abs(st["cost"] - st["import_wh"] // 2) <= 1
    # closed at midnight, but nobody is texted before the statement hour (01:00 here)
    assert ch.meter.world.epoch + ch.now_s < calendar.timegm((2026, 2, 1, 1, 0, 0))
    assert not texts_to(ch, CUSTOMER, n0)
    ch.meter.power_cut()                                   # the pending text survives a power cut
    assert ch.run(5400, until=lambda: texts_to(ch, CUSTOMER, n0), step_s=5, paced=False)
    assert ch.meter.world.epoch + ch.now_s >= calendar.timegm((2026, 2, 1, 1, 0, 0))
    sent = [m for m in ch.smsc.sent[n0:] if m.to == CUSTOMER]
    assert len(sent) == 1 and sent[0].encoding == "ucs2"
    wh = st["import_wh"]
    expect = AR.format(month="01/2026", kwh="%d.%d" % (wh // 1000, wh % 1000 // 100), cost=mru(st["cost"]),
                       topups=mru(st["topups"]), credit=mru(st["credit"]))
    assert sent[0].text == expect
    # byte for byte: the UCS2 user data of the parts, in order, is the text's UTF-16BE
    subs = [d for d in ch.smsc.raw_submits if d.get("to") == CUSTOMER and d.get("octets") is not None]
    subs = [d for d in subs if d["concat"] is None or d["concat"][1] == sent[0].parts][-sent[0].parts:]
    subs.sort(key=lambda d: d["concat"][2] if d["concat"] else 1)
    assert b"".join(d["octets"] for d in subs) == expect.encode("utf-16-be")
    # once only, also across a reboot once the modem has confirmed it (a cut before the modem's answer
    # sends it again: a statement is never lost, at worst repeated)
    ch.run(60, step_s=5, paced=False)
    ch.meter.power_cut()
    ch.run(1200, step_s=5, paced=False)
    assert len(texts_to(ch, CUSTOMER, n0)) == 1
    assert ch.store.q1("SELECT COUNT(*) AS n FROM statements WHERE meter_id=?", (ch.meter_id,))["n"] == 1
