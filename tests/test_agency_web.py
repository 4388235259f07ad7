"""The agency's web routes: SMS-code sign-in with its limits, a customer sees and acts on their own meters,
purchases and tickets only (every route), CSRF, bad input answered with a message, Arabic right to left,
CSV downloads, contact changes confirmed by a code; the console's roles, audit log, customer import."""
import csv
import io

import httpx
import pytest

from agency_support import Clock, csrf, customer_client, last_code, operator_client, tokens, wait_for
from host_tools.agency.settings import Settings
from host_tools.agency.stack import Stack, customer_phone


@pytest.fixture(scope="module")
def stack():
    clock = Clock()
    # generous limits for the many sign-ins here; the limit tests lower them
    with Stack(meters=3, settings=Settings(clock=clock, otp_per_address_per_hour=100, otp_per_ip_per_hour=1000)) as st:
        st.clock = clock
        from host_tools.agency.history import seed_history
        for i, m in enumerate(st.meter_ids):
            seed_history(st.store, m, end=clock() - 60, days=400, seed=i + 1)
        yield st


# -- sign-in ----------------------------------------------------------------------------------------
def test_signin_with_the_sms_code_then_home_shows_the_meter(stack):
    c = customer_client(stack, 0)
    r = c.get("/home")
    assert r.status_code == 200 and stack.meter_ids[0] in r.text and 'id="credit"' in r.text
    assert 'dir="ltr"' in r.text and 'lang="fr"' in r.text


def test_wrong_codes_are_limited_and_a_used_code_cannot_be_reused(stack):
    c = httpx.Client(base_url=stack.url)
    phone = customer_phone(1)
    c.post("/signin", data={"phone": phone})
    code = last_code(stack, phone)
    wrong = "%06d" % ((int(code) + 1) % 1000000)
    for n in range(stack.settings.otp_max_attempts):
        r = c.post("/signin/code", data={"phone": phone, "code": wrong})
        assert r.status_code == 400 and "wrong code" in r.text, n
    r = c.post("/signin/code", data={"phone": phone, "code": code})
    assert r.status_code == 400 and "too many wrong codes" in r.text, "the right code after the limit must fail"
    c.post("/signin", data={"phone": phone})
    code = last_code(stack, phone)
    assert c.post("/signin/code", data={"phone": phone, "code": code}).status_code == 303
    r = httpx.post(stack.url + "/signin/code", data={"phone": phone, "code": code})
    assert r.status_code == 400, "a used code signed in again"


def test_codes_expire(stack):
    c = httpx.Client(base_url=stack.url)
    phone = customer_phone(2)
    c.post("/signin", data={"phone": phone})
    code = last_code(stack, phone)
    stack.clock.t += stack.settings.otp_ttl_s + 1
    try:
        r = c.post("/signin/code", data={"phone": phone, "code": code})
    finally:
        stack.clock.t -= stack.settings.otp_ttl_s + 1
    assert r.status_code == 400 and "expired" in r.text


def test_codes_are_rate_limited_per_number(stack):
    phone = "+22299000001"      # not registered: same answers, same limits, and no SMS sent
    c = httpx.Client(base_url=stack.url)
    stack.settings.otp_per_address_per_hour = 5
    try:
        for n in range(5):
            assert c.post("/signin", data={"phone": phone}).status_code == 303, n
        r = c.post("/signin", data={"phone": phone})
    finally:
        stack.settings.otp_per_address_per_hour = 100
    assert r.status_code == 429 and "too many codes" in r.text
    assert stack.gateways.sms_to(phone) == []


def test_codes_are_rate_limited_per_client_address(stack):
    old = stack.settings.otp_per_ip_per_hour
    n_now = stack.store.q1("SELECT COUNT(*) AS n FROM otp WHERE ip='127.0.0.1' AND created>?",
                           (stack.clock() - 3600,))["n"]
    stack.settings.otp_per_ip_per_hour = n_now + 1
    try:
        c = httpx.Client(base_url=stack.url)
        assert c.post("/signin", data={"phone": "+22299000101"}).status_code == 303
        r = c.post("/signin", data={"phone": "+22299000102"})
        assert r.status_code == 429 and "from this address" in r.text
    finally:
        stack.settings.otp_per_ip_per_hour = old


@pytest.mark.parametrize("phone", ["", "123", "+0123", "abc", "+2223600000111111111"])
def test_bad_phone_numbers_get_a_message(stack, phone):
    r = httpx.post(stack.url + "/signin", data={"phone": phone})
    assert r.status_code == 400 and "international form" in r.text


# -- a customer sees only their own -----------------------------------------------------------------
def _others_purchase_and_ticket(stack):
    """A purchase and a ticket of customer 2, made through the routes."""
    c = customer_client(stack, 1)
    f = tokens(c.get("/buy").text)
    c.post("/buy", data={"csrf": f["csrf"], "request_key": f["request_key"], "amount": "10"})
    f = tokens(c.get("/tickets").text)
    r = c.post("/tickets", data={"csrf": f["csrf"], "meter": stack.meter_ids[1], "category": "no_power",
                                 "description": "plus de courant depuis ce matin"})
    assert r.status_code == 303, r.text[:300]
    pid = stack.store.q1("SELECT MAX(id) AS i FROM payments WHERE customer_id=2")["i"]
    tid = int(r.headers["location"].rsplit("/", 1)[1])
    return pid, tid


def test_every_customer_route_refuses_another_customers_meter_purchase_and_ticket(stack):
    pid, tid = _others_purchase_and_ticket(stack)
    other = stack.meter_ids[1]
    c = customer_client(stack, 0)
    gets = ["/home?meter=" + other, "/consumption?meter=" + other, "/consumption.csv?meter=" + other,
            "/statements?meter=" + other, "/statements/%s/2026-01" % other, "/statements/%s/2026-01.csv" % other,
            "/buy?meter=" + other, "/purchases/%d" % pid, "/purchases/%d/status" % pid,
            "/purchases/%d/receipt" % pid, "/tickets/%d" % tid]
    for path in gets:
        r = c.get(path)
        assert r.status_code == 404, "%s answered %d to another customer" % (path, r.status_code)
        assert "no such" in r.text and "Client 2" not in r.text and 'id="credit"' not in r.text, path
    token = csrf(c, "/buy")
    r = c.post("/buy", data={"csrf": token, "request_key": "k-other", "amount": "10", "meter": other})
    assert r.status_code == 404 and stack.store.q1("SELECT id FROM payments WHERE request_key='k-other'") is None
    r = c.post("/tickets", data={"csrf": token, "meter": other, "category": "other", "description": "pas à moi"})
    assert r.status_code == 404
    listed = c.get("/purchases").text + c.get("/tickets").text
    assert "/purchases/%d\"" % pid not in listed and "/tickets/%d\"" % tid not in listed


def test_signed_out_visitors_are_sent_to_sign_in(stack):
    c = httpx.Client(base_url=stack.url)
    for path in ("/home", "/consumption", "/buy", "/purchases", "/statements", "/tickets", "/preferences",
                 "/purchases/1", "/tickets/1"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/signin", path
    r = c.post("/buy", data={"amount": "10"})
    assert r.status_code == 401 and "sign in" in r.text


def test_posts_without_the_sessions_csrf_token_are_refused(stack):
    c = customer_client(stack, 0)
    for path, data in (("/buy", {"amount": "10", "request_key": "x1"}), ("/tickets", {"category": "other"}),
                       ("/preferences", {"language": "ar"}), ("/signout", {})):
        r = c.post(path, data=dict(data, csrf="forged"))
        assert r.status_code == 403 and "did not come from this site" in r.text, path
    assert stack.store.q1("SELECT id FROM payments WHERE request_key='x1'") is None


# -- pages ----------------------------------------------------------------------------------------------
def test_consumption_charts_and_csv(stack):
    c = customer_client(stack, 0)
    for period in ("30", "90", "12m"):
        r = c.get("/consumption?period=" + period)
        assert r.status_code == 200 and "<svg" in r.text and 'class="cur"' in r.text and 'class="prev"' in r.text
    r = c.get("/consumption.csv?period=12m")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["period", "kwh", "kwh_previous_period"] and len(rows) == 13
    assert all(float(x[1]) > 0 for x in rows[1:-1]), rows           # a year of history: every month has use
    assert float(rows[-1][2]) > 0, "the same month a year earlier is missing"   # 400 days of history
    assert c.get("/consumption?period=7").status_code == 400


def test_statements_are_listed_viewed_and_downloaded(stack):
    c = customer_client(stack, 0)
    r = c.get("/statements")
    months = sorted(set(__import__("re").findall(r"/statements/\d+/(\d{4}-\d{2})\"", r.text)))
    assert len(months) >= 12, months
    r = c.get("/statements/%s/%s.csv" % (stack.meter_ids[0], months[-2]))
    assert r.status_code == 200 and "standing" in r.text and "total" in r.text
    assert c.get("/statements/%s/1999-01" % stack.meter_ids[0]).status_code == 404


def test_arabic_is_right_to_left_and_remembered(stack):
    c = customer_client(stack, 0)
    token = csrf(c, "/home")
    r = c.post("/lang", data={"lang": "ar", "csrf": token, "next": "/home"})
    assert r.status_code == 303
    html = c.get("/home").text
    assert '<html lang="ar" dir="rtl">' in html and "الرصيد" in html
    assert stack.store.q1("SELECT language FROM customers WHERE id=1")["language"] == "ar"
    c.post("/lang", data={"lang": "fr", "csrf": token, "next": "/home"})
    assert 'dir="ltr"' in c.get("/home").text


def test_contact_change_is_confirmed_by_a_code_sent_to_the_new_address(stack):
    c = customer_client(stack, 0)
    token = csrf(c, "/preferences")
    r = c.post("/contact", data={"csrf": token, "field": "email", "value": "nouveau@example.org"})
    assert r.status_code == 200 and "nouveau@example.org" in r.text
    mail = wait_for(lambda: stack.smtp.to("nouveau@example.org"), what="code by e-mail")
    code = __import__("re").search(r"(\d{6})", mail[-1].get_content()).group(1)
    assert stack.store.q1("SELECT email FROM customers WHERE id=1")["email"] != "nouveau@example.org"
    r = c.post("/contact", data={"csrf": token, "field": "email", "value": "nouveau@example.org", "code": "000000"
                                 if code != "000000" else "111111"})
    assert r.status_code == 400
    r = c.post("/contact", data={"csrf": token, "field": "email", "value": "nouveau@example.org", "code": code})
    assert r.status_code == 303
    assert stack.store.q1("SELECT email FROM customers WHERE id=1")["email"] == "nouveau@example.org"
    r = c.post("/contact", data={"csrf": token, "field": "email", "value": "pas-une-adresse"})
    assert r.status_code == 400 and "not an e-mail address" in r.text


def test_preferences_refuse_a_channel_without_its_address(stack):
    c = customer_client(stack, 1)
    token = csrf(c, "/preferences")
    with stack.store.tx() as db:
        db.execute("UPDATE customers SET email=NULL WHERE id=2")
    r = c.post("/preferences", data={"csrf": token, "language": "fr", "channels": ["sms", "email"]})
    assert r.status_code == 400 and "e-mail address" in r.text
    r = c.post("/preferences", data={"csrf": token, "language": "fr", "channels": ["sms", "whatsapp"]})
    assert r.status_code == 200
    assert stack.store.q1("SELECT channels FROM customers WHERE id=2")["channels"] == "sms,whatsapp"


def test_bad_ticket_input_gets_a_message(stack):
    c = customer_client(stack, 0)
    token = csrf(c, "/tickets")
    r = c.post("/tickets", data={"csrf": token, "category": "nope", "description": "xxxxx"})
    assert r.status_code == 400 and "choose a category" in r.text
    r = c.post("/tickets", data={"csrf": token, "category": "other", "description": ""})
    assert r.status_code == 400 and "3 to 2000" in r.text


def test_unknown_pages_and_methods_answer_a_page_not_a_traceback(stack):
    r = httpx.get(stack.url + "/nope")
    assert r.status_code == 404 and "no such page" in r.text and "Traceback" not in r.text
    r = httpx.delete(stack.url + "/home")
    assert r.status_code == 405


# -- operators ----------------------------------------------------------------------------------------
def test_operator_signin_is_checked_and_rate_limited(stack):
    c = httpx.Client(base_url=stack.url)
    for n in range(stack.settings.signin_failures_per_15min):
        r = c.post("/op/signin", data={"username": "viewer", "password": "wrong-%d" % n})
        assert r.status_code == 401 and "wrong user name or password" in r.text
    r = c.post("/op/signin", data={"username": "viewer", "password": "viewer-demo-pass"})
    assert r.status_code == 401 and "too many failed" in r.text
    h = stack.store.q1("SELECT password_hash FROM operators WHERE username='viewer'")["password_hash"]
    assert h.startswith("$argon2id$")


def test_roles_viewer_reads_agent_acts_admin_administers(stack):
    with stack.store.tx() as db:
        db.execute("DELETE FROM signin_failures")
    viewer = operator_client(stack, "viewer", "viewer-demo-pass")
    agent = operator_client(stack, "agent", "agent-demo-pass")
    admin = operator_client(stack, "admin", "admin-demo-pass")
    m = stack.meter_ids[0]
    assert viewer.get("/op/fleet").status_code == 200
    token = csrf(viewer, "/op/meters/" + m)
    r = viewer.post("/op/meters/%s/command" % m, data={"csrf": token, "cmd": "relay_open"})
    assert r.status_code == 403 and "needs agent" in r.text
    token = csrf(agent, "/op/meters/" + m)
    r = agent.post("/op/meters/%s/command" % m, data={"csrf": token, "cmd": "relay_open"})
    assert r.status_code == 303
    q = stack.store.q1("SELECT * FROM messages WHERE meter_id=? AND kind='cmd' ORDER BY created DESC", (m,))
    assert '"relay_open"' in q["body"]
    assert agent.post("/op/meters/%s/command" % m, data={"csrf": token, "cmd": "format_disk"}).status_code == 400
    assert agent.get("/op/audit").status_code == 403
    r = agent.post("/op/operators", data={"csrf": token, "username": "x", "password": "12345678", "role": "admin"})
    assert r.status_code == 403
    r = admin.get("/op/audit")
    assert r.status_code == 200 and "command" in r.text and "agent" in r.text
    a = stack.store.q1("SELECT * FROM audit WHERE action='command' ORDER BY id DESC")
    assert a["username"] == "agent" and a["target"] == m and a["ip"] == "127.0.0.1" and "relay_open" in a["detail"]
    assert agent.post("/op/meters/%s/command" % m, data={"csrf": "forged", "cmd": "relay_open"}).status_code == 403


def test_fleet_search_and_filters(stack):
    op = operator_client(stack)
    r = op.get("/op/fleet")
    assert all(m in r.text for m in stack.meter_ids)
    r = op.get("/op/fleet?q=Client%202")
    assert stack.meter_ids[1] in r.text and stack.meter_ids[0] not in r.text
    assert op.get("/op/fleet?credit_below=abc").status_code == 400
    r = op.get("/op/fleet?supply=open")
    assert not any(m in r.text for m in stack.meter_ids)        # the history has every meter supplied
    assert stack.meter_ids[2] in op.get("/op/meters/" + stack.meter_ids[2]).text
    assert op.get("/op/meters/nope").status_code == 404


def test_customer_csv_import_is_all_or_nothing_and_loads_arrears(stack):
    admin = operator_client(stack)
    token = csrf(admin, "/op/customers")
    good = ("name,phone,meters,language,channels,arrears_minor,arrears_share_bp\n"
            "Nouveau Client,+22236009999,%s,ar,sms,12000,3000\n" % stack.meter_ids[2])
    bad = good + "Sans Compteur,+22236008888,999999,fr,sms,0,2500\n"
    r = admin.post("/op/customers/import", data={"csrf": token}, files={"file": ("c.csv", bad.encode(), "text/csv")})
    assert r.status_code == 400 and "line 3" in r.text and "not in the head-end" in r.text
    assert stack.store.q1("SELECT id FROM customers WHERE phone='+22236009999'") is None
    r = admin.post("/op/customers/import", data={"csrf": token}, files={"file": ("c.csv", good.encode(), "text/csv")})
    assert r.status_code == 303
    c = stack.store.q1("SELECT * FROM customers WHERE phone='+22236009999'")
    assert c["language"] == "ar"
    a = stack.store.q1("SELECT * FROM arrears WHERE meter_id=?", (stack.meter_ids[2],))
    assert a["balance_minor"] == 12000 and a["share_bp"] == 3000 and a["customer_id"] == c["id"]
    # the arrears go to the meter as one load; the same file again loads nothing more, a lower figure is refused
    r = admin.post("/op/customers/import", data={"csrf": token}, files={"file": ("c.csv", good.encode(), "text/csv")})
    assert r.status_code == 303
    loads = stack.store.q("SELECT * FROM arrears_loads WHERE meter_id=?", (stack.meter_ids[2],))
    assert [(x["amount_minor"], x["share_bp"], x["ref"]) for x in loads] == [(12000, 3000, "arrears-1")], \
        [dict(x) for x in loads]
    lower = good.replace(",12000,", ",11000,")
    r = admin.post("/op/customers/import", data={"csrf": token}, files={"file": ("c.csv", lower.encode(), "text/csv")})
    assert r.status_code == 400 and "cannot lower it" in r.text, r.text[:300]


def test_an_operator_adds_arrears_to_a_customers_meter_and_a_viewer_cannot(stack):
    cid = stack.store.q1("SELECT customer_id FROM customer_meters WHERE meter_id=?", (stack.meter_ids[1],))["customer_id"]
    path = "/op/customers/%d" % cid
    agent = operator_client(stack, "agent", "agent-demo-pass")
    token = csrf(agent, path)
    for form, why in (({"meter": stack.meter_ids[0], "amount": "10", "share": "25"}, "is not this customer"),
                      ({"meter": stack.meter_ids[1], "amount": "-3", "share": "25"}, "is not an amount"),
                      ({"meter": stack.meter_ids[1], "amount": "dix", "share": "25"}, "is not an amount"),
                      ({"meter": stack.meter_ids[1], "amount": "10", "share": "100"}, "1..9000"),
                      ({"meter": stack.meter_ids[1], "amount": "10", "share": "inf"}, "a percentage")):
        r = agent.post(path, data=dict(form, csrf=token, action="arrears"))
        assert r.status_code == 400 and why in r.text, (form, r.status_code, r.text[:400])
    assert stack.store.q1("SELECT COUNT(*) AS n FROM arrears_loads WHERE customer_id=?", (cid,))["n"] == 0
    r = agent.post(path, data={"csrf": token, "action": "arrears", "meter": stack.meter_ids[1], "amount": "12.50",
                               "share": "20"})
    assert r.status_code == 200 and "12.50" in r.text and "arrears-1" in r.text, r.text[:400]
    load = stack.store.q1("SELECT * FROM arrears_loads WHERE customer_id=?", (cid,))
    assert (load["meter_id"], load["amount_minor"], load["share_bp"]) == (stack.meter_ids[1], 1250, 2000), dict(load)
    audit = stack.store.q1("SELECT * FROM audit WHERE action='customer_arrears' ORDER BY id DESC")
    assert audit is not None and audit["username"] == "agent" and "12.50" in audit["detail"], audit
    viewer = operator_client(stack, "viewer", "viewer-demo-pass")
    r = viewer.post(path, data={"csrf": csrf(viewer, path), "action": "arrears", "meter": stack.meter_ids[1],
                                "amount": "5", "share": "20"})
    assert r.status_code == 403
    assert stack.store.q1("SELECT COUNT(*) AS n FROM arrears_loads WHERE customer_id=?", (cid,))["n"] == 1


def test_revenue_by_day_and_month_with_csv(stack):
    op = operator_client(stack)
    for by in ("day", "month"):
        assert op.get("/op/revenue?by=" + by).status_code == 200
        r = op.get("/op/revenue.csv?by=" + by)
        assert r.text.splitlines()[0].startswith("period,payments,paid_minor,vended_minor,credited_minor")
    assert op.get("/op/revenue?by=year").status_code == 400


def test_ticket_changes_by_an_operator_are_texted_to_the_customer(stack):
    c = customer_client(stack, 0)
    token = csrf(c, "/tickets")
    r = c.post("/tickets", data={"csrf": token, "meter": stack.meter_ids[0], "category": "meter_display",
                                 "description": "l'écran ne s'allume plus"})
    tid = int(r.headers["location"].rsplit("/", 1)[1])
    agent = operator_client(stack, "agent", "agent-demo-pass")
    token = csrf(agent, "/op/tickets/%d" % tid)
    n0 = len(stack.gateways.sms_to(customer_phone(0)))
    r = agent.post("/op/tickets/%d/update" % tid, data={"csrf": token, "assigned_to": "agent", "state": "assigned"})
    assert r.status_code == 303
    r = agent.post("/op/tickets/%d/update" % tid, data={"csrf": token, "assigned_to": "agent", "state": "closed"})
    sms = stack.gateways.sms_to(customer_phone(0))[n0:]
    assert any("#%d" % tid in s and "attribu" in s for s in sms) and any("#%d" % tid in s and "ferm" in s for s in sms), sms
    assert "fermé" in c.get("/tickets/%d" % tid).text
    r = agent.post("/op/tickets/%d/update" % tid, data={"csrf": token, "state": "lost"})
    assert r.status_code == 400


def test_alarms_from_meter_events_are_acknowledged_and_assigned(stack):
    m = stack.meter_ids[1]
    stack.store.log(m, "meter", "tamper", {"kind": "cover"})
    stack.agency.alarms.scan()
    stack.agency.alarms.scan()      # raised once
    rows = stack.store.q("SELECT * FROM alarms WHERE kind='tamper' AND meter_id=?", (m,))
    assert len(rows) == 1
    agent = operator_client(stack, "agent", "agent-demo-pass")
    token = csrf(agent, "/op/alarms")
    agent.post("/op/alarms/%d" % rows[0]["id"], data={"csrf": token, "action": "assign", "assigned_to": "agent"})
    agent.post("/op/alarms/%d" % rows[0]["id"], data={"csrf": token, "action": "ack"})
    a = stack.store.q1("SELECT * FROM alarms WHERE id=?", (rows[0]["id"],))
    assert a["state"] == "acked" and a["assigned_to"] == "agent"
    r = agent.post("/op/alarms/%d" % rows[0]["id"], data={"csrf": token, "action": "ticket"})
    assert r.status_code == 303 and "/op/tickets/" in r.headers["location"]


def test_silent_meters_raise_an_alarm(stack):
    m = stack.meter_ids[2]
    with stack.store.tx() as db:
        db.execute("UPDATE meters SET last_seen=? WHERE meter_id=?", (stack.clock() - 4 * 3600, m))
    stack.agency.alarms.scan()
    assert stack.store.q1("SELECT * FROM alarms WHERE kind='silent' AND meter_id=?", (m,)) is not None


def test_pages_carry_security_headers_and_no_inline_script(stack):
    r = httpx.get(stack.url + "/signin")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    import re
    from host_tools.agency.web.common import TEMPLATES
    for f in TEMPLATES.rglob("*.html"):
        text = f.read_text()
        assert not re.search(r"<script>|\son[a-z]+=", text), "inline script in %s" % f
