"""Arrears through the head-end (issue 15): `meterkit headend debt` queues a signed `load_debt` once per
reference and refuses bad input with one clear line; on the real firmware in a simulated meter (broker,
head-end, AT-level modem) the load lands on the ledger once, a redelivered load is answered without
loading again, a top-up recovers the share, and the head-end hears it (events, readings)."""
import json
import os
import subprocess
import sys

import pytest

from host_tools.errors import UsageError
from host_tools.headend import debt, vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.store import Store
from host_tools.sim.scenarios.chain import Chain

pytestmark = pytest.mark.timeout(300)


def meterkit(*args):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))


@pytest.fixture
def fleet(tmp_path):
    csv_path, ks_path, rows = make_fleet(str(tmp_path), 1)
    db = str(tmp_path / "he.db")
    Store(db).import_csv(csv_path)
    return db, rows[0]["meter_id"]


def test_debt_is_queued_once_per_ref_as_a_signed_command(fleet):
    db, meter = fleet
    r = meterkit("headend", "debt", meter, "--amount", "50.25", "--ref", "arr-1", "--share-bp", "2000", "--db", db,
                 "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["state"], out["amount_minor"], out["repeat"]) == ("queued", 5025, False), out
    assert "serve" in out["note"], out
    again = json.loads(meterkit("headend", "debt", meter, "--amount", "50.25", "--ref", "arr-1", "--share-bp", "2000",
                                "--db", db, "--json").stdout)
    assert again["repeat"] is True and again["msg_id"] == out["msg_id"], again
    store = Store(db)
    rows = store.q("SELECT * FROM messages WHERE meter_id=?", (meter,))
    assert len(rows) == 1, [dict(x) for x in rows]
    body = json.loads(rows[0]["body"])
    assert body == {"t": "cmd", "id": out["msg_id"], "cmd": "load_debt",
                    "args": {"amount": 5025, "ref": "arr-1", "share_bp": 2000}}, body


@pytest.mark.parametrize("argv, words", [
    (["--amount", "0", "--ref", "a"], "must be above 0"),
    (["--amount", "-3", "--ref", "a"], "must be above 0"),
    (["--amount", "1.234", "--ref", "a"], "not an amount"),
    (["--amount", "abc", "--ref", "a"], "not an amount"),
    (["--amount", "2000000", "--ref", "a"], "at most"),
    (["--amount", "5", "--ref", "x" * 33], "1..32 characters"),
    (["--amount", "5", "--ref", "a b"], "1..32 characters"),
    (["--amount", "5", "--ref", "a", "--share-bp", "9001"], "9000"),
    (["--amount", "5", "--ref", "a", "--share-bp", "0"], "--share-bp"),
])
def test_debt_bad_input_is_one_clear_line_and_queues_nothing(fleet, argv, words):
    db, meter = fleet
    r = meterkit("headend", "debt", meter, *argv, "--db", db)
    assert r.returncode != 0 and words in r.stderr + r.stdout, (r.returncode, r.stderr, r.stdout)
    assert "Traceback" not in r.stderr, r.stderr
    assert Store(db).q1("SELECT COUNT(*) AS n FROM messages")["n"] == 0


def test_a_used_ref_with_another_amount_and_an_unknown_meter_are_refused(fleet):
    db, meter = fleet
    store = Store(db)
    debt.queue_debt(store, meter, 1000, "arr-2")
    with pytest.raises(UsageError, match="was used for a load of 1000"):
        debt.queue_debt(store, meter, 2000, "arr-2")
    with pytest.raises(UsageError, match="unknown meter"):
        debt.queue_debt(store, "nope", 1000, "arr-3")
    r = meterkit("headend", "debt", "nope", "--amount", "5", "--ref", "a", "--db", db)
    assert r.returncode != 0 and "unknown meter" in r.stderr, r.stderr


def test_arrears_land_on_the_real_meter_once_and_a_topup_recovers_the_share():
    with Chain(seed=4, settings={"meter_period_s": 5, "reading_period_s": 300,
                                 "prepaid": {"ledger": {"opening_credit": 2000, "debt_share_bp": 2500}}}) as ch:
        before = ch.credit()
        q = debt.queue_debt(ch.store, ch.meter_id, 5000, "arr-77", share_bp=2000)
        assert ch.run(600, until=lambda: ch.message(q["msg_id"])["state"] == "done"), "the load was never answered"
        m = ch.message(q["msg_id"])
        detail = json.loads(m["detail"])
        assert m["code"] == "done" and detail["applied"] is True and detail["arrears"] == 5000, (m["code"], detail)
        c = ch.credit()
        assert c["debt"] - before["debt"] == 5000 and c["arrears"] == 5000, c
        assert c["cleared"] - before["cleared"] == 5000 and c["check"] is None, c
        assert c["supply"] == "closed" and "NO_CREDIT" not in c["reasons"], "arrears cut the supply: %r" % c
        # a redelivery under another message id (another head-end, an operator's retry): answered, not loaded
        mid = vending.queue_command(ch.store, ch.meter_id, "load_debt", {"amount": 5000, "ref": "arr-77"})
        assert ch.run(600, until=lambda: ch.message(mid)["state"] == "done")
        again = json.loads(ch.message(mid)["detail"])
        assert again["applied"] is False and again["duplicate"] is True, again
        assert ch.credit()["debt"] == c["debt"], "the same ref loaded twice"
        # a remote top-up of 40.00: 20 % of it recovers arrears on the meter, the rest is credit
        v = ch.vend(amount=40)
        assert ch.run(600, until=lambda: ch.message(v["msg_id"])["state"] == "done")
        after = ch.credit()
        assert after["arrears"] == 5000 - 800 and after["check"] is None, after
        assert ch.run(600, until=lambda: ch.events("debt_recovered")), "debt_recovered never reached the head-end"
        rec = ch.events("debt_recovered")[-1]["data"]["data"]
        assert (rec["arrears"], rec["arrears_left"]) == (800, 4200), rec
        loaded = [e["data"]["data"] for e in ch.events("debt_loaded")]
        assert [(e["ref"], e["applied"]) for e in loaded] == [("arr-77", True), ("arr-77", False)], loaded
        assert ch.run(900, until=lambda: (ch.store.last_reading(ch.meter_id) or {}).get("arrears") == 4200), \
            "no reading carried the arrears register"
