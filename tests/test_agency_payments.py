"""Payments: signed callbacks (refused and logged when wrong), exactly one vend per confirmed payment
whatever the callbacks do (late, twice, out of order, never), idempotent on the customer's request key and
the provider's reference, refunds when the meter refuses the token, purchases vended whole (the meter recovers arrears)."""
import json

import pytest

from agency_support import approve, buy, customer_client, wait_for
from host_tools.agency.payments import provider as P
from host_tools.agency.stack import Stack


@pytest.fixture
def stack():
    with Stack(meters=3, arrears_every=3) as st:
        yield st


def _payment(stack, pid):
    return dict(stack.store.q1("SELECT * FROM payments WHERE id=?", (pid,)))


def _meter_result(stack, msg_id, code="accepted"):
    """What the head-end records when the meter answers (the delivery itself is proved by the scenario
    and tests/test_remote_topups.py)."""
    with stack.store.tx() as db:
        db.execute("UPDATE messages SET state='done', code=?, detail=?, done_at=? WHERE msg_id=?",
                   (code, json.dumps({"credit": 1234}), stack.settings.clock(), msg_id))


def _purchase(stack, client, amount="12.50"):
    r, data = buy(client, amount)
    assert r.status_code == 303 and "/pay/" in r.headers["location"], (r.status_code, r.text[:300])
    back = approve(r.headers["location"])
    return int(back.rsplit("/", 1)[1]), data


def test_signature_check_refuses_tampering_and_stale_timestamps():
    body = b'{"provider_ref": "MM1", "status": "paid"}'
    good = P.sign("s3cret", body, t=1000)
    assert P.verify("s3cret", good, body, now=1000)["status"] == "paid"
    for header, b, why in ((good, body.replace(b"paid", b"fail"), "does not match"),
                           (P.sign("other", body, t=1000), body, "does not match"),
                           ("", body, "malformed"), (P.sign("s3cret", body, t=1000), body, "too far")):
        with pytest.raises(P.BadSignature, match=why):
            P.verify("s3cret", header, b, now=1000 if why != "too far" else 1000 + P.TOLERANCE_S + 1)


def test_paid_purchase_is_vended_once_and_credited_by_the_meters_result(stack):
    c = customer_client(stack, 0)
    pid, _ = _purchase(stack, c)
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended")
    vends = stack.store.q("SELECT * FROM vends WHERE meter_id=?", (p["meter_id"],))
    assert len(vends) == 1 and vends[0]["msg_id"] == p["msg_id"] and vends[0]["quantity"] == 1250 * 1000
    # the token is texted after the vend is committed, so the SMS may follow the state by a moment
    wait_for(lambda: any(p["token"] in t for t in stack.gateways.sms_to("+22236000001")), what="the token by SMS")
    _meter_result(stack, p["msg_id"])
    p = wait_for(lambda: _payment(stack, pid)["state"] == "credited" and _payment(stack, pid), what="credited")
    assert p["credited_at"] is not None
    status = c.get("/purchases/%d/status" % pid).json()
    assert status["state"] == "credited" and status["meter_credit"] == "12.34" and status["token"] == p["token"]
    # receipt by SMS and, for this customer (channels sms,email), by e-mail through the SMTP server
    wait_for(lambda: any("AG%08d" % pid in t for t in stack.gateways.sms_to("+22236000001")), what="SMS receipt")
    mails = wait_for(lambda: stack.smtp.to("client1@example.org"), what="e-mail receipt")
    assert "AG%08d" % pid in mails[-1].get_content()
    assert c.get("/purchases/%d/receipt" % pid).status_code == 200


def test_callbacks_late_twice_out_of_order_make_one_vend(stack):
    c = customer_client(stack, 1)
    pid, _ = _purchase(stack, c)
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended")
    ref = p["provider_ref"]
    secret = stack.sim.secret
    for status in ("paid", "pending", "paid", "failed"):      # doubled, stale, and a contradicting one
        body = json.dumps({"provider_ref": ref, "status": status}).encode()
        r = stack.agency.payments.callback({P.SIGNATURE_HEADER: P.sign(secret, body)}, body)
        assert r == (200, "ok"), r
    stack.agency.payments.reconcile()
    assert _payment(stack, pid)["state"] == "vended"
    assert len(stack.store.q("SELECT * FROM vends WHERE msg_id=?", (p["msg_id"],))) == 1
    assert stack.store.q1("SELECT COUNT(*) AS n FROM vends")["n"] == 1


def test_a_callback_with_a_bad_signature_is_refused_over_http_and_logged(stack):
    import httpx
    body = json.dumps({"provider_ref": "MM000001", "status": "paid"}).encode()
    r = httpx.post(stack.url + "/payments/callback", content=body,
                   headers={P.SIGNATURE_HEADER: P.sign("not-the-secret", body)})
    assert r.status_code == 401
    ev = stack.store.q1("SELECT * FROM payment_events WHERE kind='callback_refused'")
    assert ev is not None and "does not match" in ev["data"]


def test_no_callback_at_all_is_found_by_polling_the_provider(stack):
    stack.sim.faults = 1.0
    stack.sim.rng.choice = lambda kinds: "never"
    stack.settings.payment_poll_after_s = 0.2
    c = customer_client(stack, 0)
    pid, _ = _purchase(stack, c)
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended by polling")
    assert p["polls"] >= 1 and stack.sim.callbacks_sent == 0


def test_the_same_request_key_is_one_purchase(stack):
    c = customer_client(stack, 0)
    r1, data = buy(c, "20")
    r2 = c.post("/buy", data=data)
    assert r1.headers["location"] == r2.headers["location"]
    assert stack.store.q1("SELECT COUNT(*) AS n FROM payments")["n"] == 1
    # and the provider's reference is unique: creating the same reference again returns the same payment
    p = dict(stack.store.q1("SELECT * FROM payments"))
    again = stack.agency.payments.provider.create("AG%08d" % p["id"], p["amount_minor"], "MRU", "http://x", "")
    assert again["provider_ref"] == p["provider_ref"]


def test_vending_twice_for_one_payment_returns_the_first_token(stack):
    from host_tools.headend import vending
    m = stack.meter_ids[0]
    a = vending.vend_topup(stack.store, stack.keystore, m, amount="5", msg_id="t-pay999")
    b = vending.vend_topup(stack.store, stack.keystore, m, amount="5", msg_id="t-pay999")
    assert b["existing"] and a["token"] == b["token"] and a["tid"] == b["tid"]
    assert stack.store.q1("SELECT COUNT(*) AS n FROM messages WHERE msg_id='t-pay999'")["n"] == 1


def test_declined_payment_fails_and_vends_nothing(stack):
    c = customer_client(stack, 0)
    r, _ = buy(c, "15")
    back = approve(r.headers["location"], "decline")
    pid = int(back.rsplit("/", 1)[1])
    wait_for(lambda: _payment(stack, pid)["state"] == "failed", what="failed")
    assert stack.store.q1("SELECT COUNT(*) AS n FROM vends")["n"] == 0


def test_a_token_the_meter_refuses_is_refunded_and_the_customer_told(stack):
    c = customer_client(stack, 0)
    pid, _ = _purchase(stack, c)
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended")
    _meter_result(stack, p["msg_id"], code="used")
    p = wait_for(lambda: _payment(stack, pid)["state"] == "refunded" and _payment(stack, pid), what="refunded")
    assert p["result_code"] == "used" and stack.sim.payments[p["provider_ref"]]["status"] == "refunded"
    wait_for(lambda: any("rembours" in t for t in stack.gateways.sms_to("+22236000001")), what="refund SMS")


@pytest.mark.parametrize("amount, why", [("0.50", "smallest purchase"), ("abc", "amount like"),
                                         ("181", "largest purchase"), ("-5", "amount like"), ("1.234", "amount like")])
def test_bad_amounts_are_refused_with_a_reason(stack, amount, why):
    c = customer_client(stack, 0)
    r, _ = buy(c, amount)
    assert r.status_code == 400 and why in r.text, (amount, r.status_code)
    assert stack.store.q1("SELECT COUNT(*) AS n FROM payments")["n"] == 0


def test_arrears_go_to_the_meter_and_purchases_are_vended_whole(stack):
    # customer 3 (index 2) came from post-paid with 50.00 of arrears, recovered at 25 % of each top-up: by the
    # meter (the end-to-end proof on real firmware is tests/test_agency_arrears.py), never at payment time
    c = customer_client(stack, 2)
    meter = stack.meter_ids[2]
    home = c.get("/home").text
    assert "50.00" in home, "the arrears are not shown on the home page"
    load = wait_for(lambda: stack.store.q1("SELECT * FROM arrears_loads WHERE meter_id=? AND state='queued'", (meter,)),
                    what="the arrears load queued for the meter")
    body = json.loads(stack.store.q1("SELECT body FROM messages WHERE msg_id=?", (load["msg_id"],))["body"])
    assert (body["cmd"], body["args"]) == ("load_debt", {"amount": 5000, "ref": "arrears-1", "share_bp": 2500}), body
    pid, _ = _purchase(stack, c, "40")
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended")
    assert p["arrears_minor"] == 0
    v = stack.store.q1("SELECT quantity FROM vends WHERE msg_id=?", (p["msg_id"],))
    assert v["quantity"] == 4000 * 1000, v["quantity"]      # all 40.00 as credit: the meter takes its share
    assert stack.store.q1("SELECT balance_minor FROM arrears")["balance_minor"] == 5000
    # the meter answers the load and reports the recovery from the top-up: the agency's book follows it
    _meter_result(stack, load["msg_id"], code="done")
    stack.store.log(meter, "meter", "debt_recovered",
                    {"seq": 9, "ts": 0, "data": {"amount": 1000, "left": 4000, "ref": "sts:1", "arrears": 1000,
                                                 "arrears_left": 4000}})
    a = wait_for(lambda: (lambda r: r["balance_minor"] == 4000 and r)(
        stack.store.q1("SELECT * FROM arrears WHERE meter_id=?", (meter,))), what="the meter's report in the book")
    assert a["recovered_minor"] == 1000 and a["reported_at"] is not None, dict(a)
    assert stack.store.q1("SELECT state FROM arrears_loads WHERE id=?", (load["id"],))["state"] == "loaded"
    assert "40.00" in c.get("/home").text
    from host_tools.agency import revenue
    assert sum(r["arrears_minor"] for r in revenue.revenue(stack.store, "month")) == 1000


def test_a_purchase_given_up_on_but_approved_later_is_still_delivered(stack):
    c = customer_client(stack, 0)
    r, _ = buy(c, "11")
    pid = int(stack.store.q1("SELECT MAX(id) AS i FROM payments")["i"])
    with stack.store.tx() as db:     # as the worker does after an hour without approval
        db.execute("UPDATE payments SET state='failed', note='not approved within an hour' WHERE id=?", (pid,))
    approve(r.headers["location"])
    p = wait_for(lambda: _payment(stack, pid)["state"] == "vended" and _payment(stack, pid), what="vended")
    assert stack.store.q1("SELECT COUNT(*) AS n FROM vends WHERE msg_id=?", (p["msg_id"],))["n"] == 1
