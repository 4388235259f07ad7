"""The head-end's books match the meter's: the first definitive result of a downlink wins and later
ones are logged beside it; a token answered `used` before any other definitive result was credited
(its first answer was lost) and is recorded accepted; a meter that could not act now (`fault`,
`locked_out`) gets the downlink again; one request key, one vend; `reconcile` lists every difference
with its cause. Runs the real HeadEnd on the simulator's in-process broker, in a virtual clock."""
import json
import subprocess
import sys

import pytest

from host_tools.headend import envelope, vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.reconcile import reconcile
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store
from host_tools.sim.net.headend_client import SimHeadEndClient
from host_tools.sim.net.mqttbroker import SimBroker


class Clock:
    def __init__(self):
        self.t = 1767571200.0

    def __call__(self):
        return self.t


@pytest.fixture
def he(tmp_path):
    import random
    clock = Clock()
    csv_path, ks_path, rows = make_fleet(str(tmp_path / "fleet"), 1, rng=random.Random(5))
    store = Store(tmp_path / "he.db", clock=clock)
    store.import_csv(csv_path)
    broker = SimBroker(clock)
    h = HeadEnd(store, "mqtt://in-process", retry_s=30, retry_max_s=600, clock=clock,
                client=SimHeadEndClient(broker, clock=clock)).start()
    h.ks = vending.load_keystore(ks_path)
    h.row = rows[0]
    h.key = bytes.fromhex(rows[0]["message_key_hex"])
    h.seq = 0
    h.vclock = clock
    h.dbpath = str(tmp_path / "he.db")
    yield h
    h.stop()
    store.close()


def answer(h, ref, code, detail=None):
    """An uplink result from the meter, sealed with its key and the next sequence number."""
    h.seq += 1
    body = {"t": "result", "ref": ref, "code": code, "detail": detail or {}}
    return h.ingest(h.row["meter_id"], envelope.seal(h.key, h.row["meter_id"], h.seq, body, direction=envelope.UP))


def message(h, msg_id):
    return h.store.q1("SELECT * FROM messages WHERE msg_id=?", (msg_id,))


def test_first_definitive_result_wins_and_later_answers_are_logged(he):
    v = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=2.5)
    he.tick()
    answer(he, v["msg_id"], "accepted", {"added": 250})
    answer(he, v["msg_id"], "used")
    m = message(he, v["msg_id"])
    assert (m["state"], m["code"]) == ("done", "accepted"), dict(m)
    logged = [e["data"] for e in he.store.events(he.row["meter_id"]) if e["kind"] == "result"]
    assert [(d["code"], d["first"]) for d in logged] == [("accepted", True), ("used", False)], logged


def test_token_answered_used_first_is_recorded_accepted_confirmed_by_used(he):
    v = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=1.0)
    he.tick()
    answer(he, v["msg_id"], "used")
    m = message(he, v["msg_id"])
    assert m["code"] == "accepted" and json.loads(m["detail"])["confirmed_by"] == "used", dict(m)
    books = reconcile(he.store, he.row["meter_id"])
    assert books["meters"][0]["confirmed_by_used"] == 1 and books["ok"], books
    assert [x["kind"] for x in books["mismatches"]] == ["result_lost"], books


def test_a_fault_or_lockout_answer_is_not_final_and_the_downlink_goes_again(he):
    v = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=1.0)
    assert he.tick() == 1
    answer(he, v["msg_id"], "fault", {"error": "OSError"})
    assert message(he, v["msg_id"])["state"] == "sent"
    he.vclock.t += 31
    assert he.tick() == 1, "a downlink answered `fault` was not sent again"
    answer(he, v["msg_id"], "locked_out", {"locked_s": 120})
    he.vclock.t += 60
    assert he.tick() == 0, "sent again before the meter's lockout ends"
    he.vclock.t += 61
    assert he.tick() == 1
    answer(he, v["msg_id"], "accepted")
    assert message(he, v["msg_id"])["code"] == "accepted"


def test_one_request_key_one_vend(he):
    a = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=3.0, request_key="pay-77")
    b = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=3.0, request_key="pay-77")
    assert b["repeat"] and (b["msg_id"], b["tid"], b["token"]) == (a["msg_id"], a["tid"], a["token"])
    assert he.store.q1("SELECT COUNT(*) AS n FROM vends")["n"] == 1
    assert he.store.q1("SELECT COUNT(*) AS n FROM messages")["n"] == 1


def test_reconcile_names_pending_and_refused_vends_and_exits_non_zero(he):
    pend = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=1.0)
    bad = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=2.0)
    he.tick()
    answer(he, bad["msg_id"], "crc_error")
    books = reconcile(he.store)
    kinds = {x["msg_id"]: x["kind"] for x in books["mismatches"]}
    assert kinds == {pend["msg_id"]: "pending", bad["msg_id"]: "refused"}, books
    assert not books["ok"]
    out = subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "reconcile", "--db", he.dbpath, "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["meters"][0]["refused"] == 1


def test_an_older_downlink_without_its_result_goes_again_as_soon_as_a_newer_one_is_answered(he):
    """A lost answer must not wait for the back-off (up to 10 minutes) while newer tokens go through:
    by then the meter may have forgotten the message and the TID, and would answer a credited token
    `old`."""
    a = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=1.0)
    assert he.tick() == 1
    he.vclock.t += 1
    b = vending.vend_topup(he.store, he.ks, he.row["meter_id"], amount=2.0)
    assert he.tick() == 1
    answer(he, b["msg_id"], "accepted")             # the answer to `a` was lost on the way
    assert he.tick() == 1, "the older downlink without a result was not sent again at once"
    answer(he, a["msg_id"], "accepted")
    assert message(he, a["msg_id"])["code"] == "accepted"
    assert he.tick() == 0
