"""The operator console at /op: sign-in (argon2, rate limited), fleet search and filters, a meter's page
with remote commands, alarms, tickets, customers (CSV import, edits), payments, revenue, audit log,
operator accounts. Roles: viewer reads; agent acts on meters, alarms, tickets and customers; admin also
imports, refunds and manages accounts. Every action is in the audit log."""
import csv
import io
import json

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from host_tools.agency import arrears as arrears_book, registry, revenue as rev, security, usage
from host_tools.agency.tickets import STATES, TicketError
from host_tools.agency.web.common import (OPERATOR_COOKIE, HttpError, client_ip, int_param, operator_route,
                                          redirect, render)
from host_tools.agency.web.customer import confirm_contact_change, start_contact_change
from host_tools.errors import MeterkitError
from host_tools.headend import debt, vending

COMMANDS = ("relay_open", "relay_close", "get_readings", "get_statement", "clear_tamper", "set_time")


def _a(request):
    return request.app.state.agency


def _audit(request, op, action, target=None, detail=None):
    a = _a(request)
    security.audit(a.store, a.settings, op, action, target, detail, client_ip(request))


def _page(request, name, op, sess, **ctx):
    return render(request, "op/" + name, op=op, sess=sess, lang="fr", **ctx)


async def signin(request):
    a = _a(request)
    if request.method == "GET":
        return render(request, "op/signin.html", lang="fr")
    form = await request.form()
    user = (form.get("username") or "").strip()
    ip = client_ip(request)
    try:
        op = await run_in_threadpool(security.check_operator, a.store, a.settings, user, form.get("password") or "", ip)
    except security.Refused as e:
        security.audit(a.store, a.settings, None, "signin_failed", user, {}, ip)
        return render(request, "op/signin.html", lang="fr", status=401, error=str(e), username=user)
    token, _ = security.open_session(a.store, a.settings, "operator", op["id"], ip)
    security.audit(a.store, a.settings, op, "signin", None, {}, ip)
    resp = redirect("/op/fleet")
    resp.set_cookie(OPERATOR_COOKIE, token, max_age=a.settings.session_ttl_s, httponly=True, samesite="strict",
                    secure=a.settings.secure_cookies, path="/op")
    return resp


@operator_route()
async def signout(request, sess, op, form):
    security.close_session(_a(request).store, request.cookies.get(OPERATOR_COOKIE))
    _audit(request, op, "signout")
    resp = redirect("/op/signin")
    resp.delete_cookie(OPERATOR_COOKIE, path="/op")
    return resp


@operator_route()
async def index(request, sess, op):
    return redirect("/op/fleet")


# -- fleet ------------------------------------------------------------------------------------------
def fleet_rows(a, params):
    q = (params.get("q") or "").strip().lower()
    online, supply, tamper = params.get("online", ""), params.get("supply", ""), params.get("tamper", "")
    below = params.get("credit_below", "").strip()
    below = int_param(below, "credit_below", 0) * a.settings.minor_per_major if below else None
    owners = {r["meter_id"]: r for r in a.store.q(
        "SELECT cm.meter_id, c.name, c.phone FROM customer_meters cm JOIN customers c ON c.id=cm.customer_id")}
    rows = []
    for m in a.store.meters():
        last = a.store.last_reading(m["meter_id"]) or {}
        own = owners.get(m["meter_id"])
        row = {"meter_id": m["meter_id"], "serial": m["serial"], "status": m["status"], "last_seen": m["last_seen"],
               "undelivered": m["undelivered"], "credit": last.get("credit"), "supply": last.get("supply"),
               "reasons": last.get("reasons") or "", "tamper": last.get("tamper") or [],
               "version": last.get("version") or "", "customer": own["name"] if own else "",
               "phone": own["phone"] if own else ""}
        if q and q not in " ".join(str(v) for v in (row["meter_id"], row["serial"], row["customer"], row["phone"])).lower():
            continue
        if online and row["status"] != online:
            continue
        if supply and row["supply"] != supply:
            continue
        if tamper == "yes" and not row["tamper"] or tamper == "no" and row["tamper"]:
            continue
        if below is not None and (row["credit"] is None or row["credit"] >= below):
            continue
        if params.get("version") and params.get("version") != row["version"]:
            continue
        rows.append(row)
    return rows


@operator_route()
async def fleet(request, sess, op):
    a = _a(request)
    rows = fleet_rows(a, request.query_params)
    return _page(request, "fleet.html", op, sess, rows=rows, f=request.query_params)


@operator_route()
async def meter(request, sess, op):
    a = _a(request)
    mid = request.path_params["meter"]
    try:
        m = a.store.meter(mid)
    except MeterkitError:
        raise HttpError(404, "no meter %s" % mid) from None
    now = a.settings.clock()
    series = usage.daily(a.store, mid, now, 30)
    vends = a.store.q("SELECT v.*, x.state, x.code FROM vends v LEFT JOIN messages x ON x.msg_id=v.msg_id "
                      "WHERE v.meter_id=? ORDER BY v.id DESC LIMIT 50", (mid,))
    cmds = a.store.q("SELECT * FROM messages WHERE meter_id=? AND kind='cmd' ORDER BY created DESC LIMIT 50", (mid,))
    from host_tools.headend import reports
    return _page(request, "meter.html", op, sess, m=m, last=a.store.last_reading(mid) or {},
                 chart=usage.chart_svg(series, "kWh / jour, 30 jours"), events=list(reversed(a.store.events(mid, 100))),
                 vends=vends, cmds=cmds, statements=reports.monthly_statements(a.store, mid), commands=COMMANDS,
                 owner=a.store.q1("SELECT c.* FROM customers c JOIN customer_meters cm ON cm.customer_id=c.id "
                                  "WHERE cm.meter_id=?", (mid,)))


@operator_route("agent")
async def meter_command(request, sess, op, form):
    a = _a(request)
    mid = request.path_params["meter"]
    cmd = form.get("cmd")
    if cmd not in COMMANDS:
        raise HttpError(400, "unknown command; one of " + ", ".join(COMMANDS))
    args = {}
    if cmd == "set_time":
        args = {"unix": int(a.settings.clock())}
    try:
        msg_id = vending.queue_command(a.store, mid, cmd, args)
    except MeterkitError as e:
        raise HttpError(404, str(e)) from None
    _audit(request, op, "command", mid, {"cmd": cmd, "msg_id": msg_id})
    return redirect("/op/meters/%s" % mid)


# -- alarms -------------------------------------------------------------------------------------------
@operator_route()
async def alarms(request, sess, op):
    a = _a(request)
    state = request.query_params.get("state", "open")
    rows = a.store.q("SELECT * FROM alarms WHERE state=? ORDER BY id DESC LIMIT 500", (state,)) if state != "all" else \
        a.store.q("SELECT * FROM alarms ORDER BY id DESC LIMIT 500")
    ops = [r["username"] for r in a.store.q("SELECT username FROM operators WHERE disabled=0 ORDER BY username")]
    return _page(request, "alarms.html", op, sess, rows=rows, state=state, operators=ops)


@operator_route("agent")
async def alarm_update(request, sess, op, form):
    a = _a(request)
    aid = request.path_params["id"]
    row = a.store.q1("SELECT * FROM alarms WHERE id=?", (aid,))
    if row is None:
        raise HttpError(404, "no alarm %s" % aid)
    action = form.get("action")
    if action == "ack":
        a.alarms.update(aid, state="acked")
    elif action == "close":
        a.alarms.update(aid, state="closed")
    elif action == "assign":
        a.alarms.update(aid, assigned_to=form.get("assigned_to", ""))
    elif action == "ticket":
        tid = await run_in_threadpool(a.tickets.open, None, row["meter_id"], "other",
                                      "Alarm %s: %s" % (row["kind"], row["detail"]), "alarm", row["id"], op["username"])
        _audit(request, op, "alarm_ticket", str(aid), {"ticket": tid})
        return redirect("/op/tickets/%d" % tid)
    else:
        raise HttpError(400, "action must be ack, close, assign or ticket")
    _audit(request, op, "alarm_" + action, str(aid), {"assigned_to": form.get("assigned_to")})
    return redirect("/op/alarms")


# -- tickets ------------------------------------------------------------------------------------------
@operator_route()
async def tickets(request, sess, op):
    a = _a(request)
    state = request.query_params.get("state", "")
    rows = a.store.q("SELECT t.*, c.name AS customer FROM tickets t LEFT JOIN customers c ON c.id=t.customer_id "
                     + ("WHERE t.state=? " if state else "") + "ORDER BY t.id DESC LIMIT 500", (state,) if state else ())
    return _page(request, "tickets.html", op, sess, rows=rows, state=state, states=STATES)


@operator_route()
async def ticket(request, sess, op):
    a = _a(request)
    t = a.store.q1("SELECT t.*, c.name AS customer, c.phone FROM tickets t LEFT JOIN customers c ON c.id=t.customer_id "
                   "WHERE t.id=?", (request.path_params["id"],))
    if t is None:
        raise HttpError(404, "no such ticket")
    events = a.store.q("SELECT * FROM ticket_events WHERE ticket_id=? ORDER BY id", (t["id"],))
    ops = [r["username"] for r in a.store.q("SELECT username FROM operators WHERE disabled=0 ORDER BY username")]
    return _page(request, "ticket.html", op, sess, tk=t, events=events, states=STATES, operators=ops)


@operator_route("agent")
async def ticket_update(request, sess, op, form):
    a = _a(request)
    tid = request.path_params["id"]
    state = form.get("state") or None
    assigned = form.get("assigned_to")
    try:
        changes = await run_in_threadpool(a.tickets.change, tid, op["username"], state, assigned,
                                          (form.get("note") or "").strip() or None)
    except TicketError as e:
        raise HttpError(400, str(e)) from None
    _audit(request, op, "ticket_update", str(tid), {"changes": changes})
    return redirect("/op/tickets/%d" % tid)


# -- customers ----------------------------------------------------------------------------------------
@operator_route()
async def customers(request, sess, op, form=None):
    a = _a(request)
    q = (request.query_params.get("q") or "").strip()
    like = "%" + q + "%"
    rows = a.store.q("SELECT c.*, (SELECT COUNT(*) FROM customer_meters m WHERE m.customer_id=c.id) AS meters FROM "
                     "customers c WHERE c.name LIKE ? OR c.phone LIKE ? ORDER BY c.name LIMIT 500", (like, like))
    return _page(request, "customers.html", op, sess, rows=rows, q=q)


@operator_route("admin")
async def customers_import(request, sess, op, form):
    a = _a(request)
    up = form.get("file")
    if up is None or not hasattr(up, "read"):
        raise HttpError(400, "choose a CSV file")
    data = await up.read()
    try:
        n = registry.import_csv(a.store, data.decode("utf-8-sig"), a.settings.clock())
    except UnicodeDecodeError:
        raise HttpError(400, "the file is not UTF-8 text") from None
    except registry.RegistryError as e:
        raise HttpError(400, "nothing imported: %s" % e) from None
    _audit(request, op, "customers_import", None, {"customers": n, "bytes": len(data)})
    return redirect("/op/customers?imported=%d" % n)


@operator_route()
async def customer(request, sess, op, form=None):
    a = _a(request)
    cid = request.path_params["id"]
    c = registry.customer(a.store, cid)
    if c is None:
        raise HttpError(404, "no such customer")
    error = notice = confirm = None
    if request.method == "POST":
        if op["role"] == "viewer":
            raise HttpError(403, "your role (viewer) cannot do this: it needs agent")
        action = form.get("action")
        try:
            if action == "prefs":
                with a.store.tx() as db:
                    name = (form.get("name") or "").strip()
                    if not name:
                        raise registry.RegistryError("a name is needed")
                    db.execute("UPDATE customers SET name=?, consent=? WHERE id=?",
                               (name, 1 if form.get("consent") else 0, cid))
                registry.set_preferences(a.store, cid, form.get("language", ""), form.getlist("channels"))
                notice = "saved"
            elif action == "arrears":
                notice = _add_arrears(a, cid, form)
            elif action == "contact":
                value = await run_in_threadpool(start_contact_change, a, c, form.get("field", ""), form.get("value", ""),
                                                client_ip(request))
                confirm = {"field": form.get("field"), "value": value}
            elif action == "contact_confirm":
                confirm_contact_change(a, c, form.get("field", ""), form.get("value", ""), form.get("code"))
                notice = "contact changed"
            else:
                raise registry.RegistryError("unknown action")
            _audit(request, op, "customer_" + action, str(cid), {k: form.get(k) for k in ("field", "value", "language", "meter", "amount", "share")})
        except (registry.RegistryError, security.Refused, arrears_book.ArrearsError) as e:
            error = str(e)
        c = registry.customer(a.store, cid)
    pays = a.store.q("SELECT * FROM payments WHERE customer_id=? ORDER BY id DESC LIMIT 50", (cid,))
    arrears = a.store.q("SELECT * FROM arrears WHERE customer_id=?", (cid,))
    loads = a.store.q("SELECT * FROM arrears_loads WHERE customer_id=? ORDER BY id DESC LIMIT 50", (cid,))
    notes = a.store.q("SELECT * FROM notifications WHERE customer_id=? ORDER BY id DESC LIMIT 50", (cid,))
    return _page(request, "customer.html", op, sess, c=c, meters=registry.meters_of(a.store, cid), pays=pays,
                 arrears=arrears, loads=loads, notes=notes, error=error, notice=notice, confirm=confirm,
                 status=400 if error else 200)


def _add_arrears(a, cid, form):
    """An operator adds arrears to one of the customer's meters: a load queued for the meter (arrears.py)."""
    meter = form.get("meter") or ""
    if meter not in registry.meters_of(a.store, cid):
        raise registry.RegistryError("meter %r is not this customer's" % meter)
    text = (form.get("amount") or "").strip()
    try:
        amount = debt.minor_units(text, a.settings.minor_per_major)
    except MeterkitError:
        raise registry.RegistryError("the amount %r is not an amount in %s above 0 (e.g. 50.00)"
                                     % (text, a.settings.currency)) from None
    try:
        share = int(round(float((form.get("share") or "").replace(",", ".")) * 100))
    except (ValueError, OverflowError):
        raise registry.RegistryError("the share must be a percentage, e.g. 25") from None
    with a.store.tx() as db:
        ref = arrears_book.add_load(db, meter, cid, amount, share, a.settings.clock())
    return "arrears %s queued for meter %s (%s)" % (a.settings.money(amount), meter, ref)


# -- payments and revenue -----------------------------------------------------------------------------
@operator_route()
async def payments(request, sess, op):
    a = _a(request)
    state = request.query_params.get("state", "")
    rows = a.store.q("SELECT * FROM payments " + ("WHERE state=? " if state else "") + "ORDER BY id DESC LIMIT 500",
                     (state,) if state else ())
    refused = a.store.q("SELECT * FROM payment_events WHERE kind='callback_refused' ORDER BY id DESC LIMIT 20")
    return _page(request, "payments.html", op, sess, rows=rows, state=state, refused=refused)


@operator_route("admin")
async def payment_refund(request, sess, op, form):
    a = _a(request)
    pid = request.path_params["id"]
    if not a.payments.refund_request(pid):
        raise HttpError(409, "only a paid purchase whose token was not issued can be refunded here")
    _audit(request, op, "refund", str(pid))
    return redirect("/op/payments")


@operator_route()
async def revenue(request, sess, op):
    a = _a(request)
    by = request.query_params.get("by", "day")
    if by not in ("day", "month"):
        raise HttpError(400, "by must be day or month")
    return _page(request, "revenue.html", op, sess, rows=rev.revenue(a.store, by), by=by, cols=rev.COLUMNS)


@operator_route()
async def revenue_csv(request, sess, op):
    a = _a(request)
    by = request.query_params.get("by", "day")
    if by not in ("day", "month"):
        raise HttpError(400, "by must be day or month")
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=rev.COLUMNS)
    w.writeheader()
    w.writerows(rev.revenue(a.store, by))
    _audit(request, op, "revenue_csv", by)
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"content-disposition": 'attachment; filename="revenue-%s.csv"' % by})


# -- audit and accounts -------------------------------------------------------------------------------
@operator_route("admin")
async def audit(request, sess, op):
    rows = _a(request).store.q("SELECT * FROM audit ORDER BY id DESC LIMIT 500")
    return _page(request, "audit.html", op, sess, rows=rows, loads=json.loads)


@operator_route("admin")
async def operators(request, sess, op, form=None):
    a = _a(request)
    error = None
    if request.method == "POST":
        try:
            await run_in_threadpool(security.add_operator, a.store, (form.get("username") or "").strip(),
                                    form.get("password") or "", form.get("role") or "", a.settings.clock())
            _audit(request, op, "operator_set", form.get("username"), {"role": form.get("role")})
        except ValueError as e:
            error = str(e)
    rows = a.store.q("SELECT id, username, role, disabled, created FROM operators ORDER BY username")
    return _page(request, "operators.html", op, sess, rows=rows, roles=security.ROLES, error=error,
                 status=400 if error else 200)


def routes():
    return [
        Route("/", index), Route("/signin", signin, methods=["GET", "POST"]), Route("/signout", signout, methods=["POST"]),
        Route("/fleet", fleet), Route("/meters/{meter}", meter), Route("/meters/{meter}/command", meter_command, methods=["POST"]),
        Route("/alarms", alarms), Route("/alarms/{id:int}", alarm_update, methods=["POST"]),
        Route("/tickets", tickets), Route("/tickets/{id:int}", ticket),
        Route("/tickets/{id:int}/update", ticket_update, methods=["POST"]),
        Route("/customers", customers), Route("/customers/import", customers_import, methods=["POST"]),
        Route("/customers/{id:int}", customer, methods=["GET", "POST"]),
        Route("/payments", payments), Route("/payments/{id:int}/refund", payment_refund, methods=["POST"]),
        Route("/revenue", revenue), Route("/revenue.csv", revenue_csv),
        Route("/audit", audit), Route("/operators", operators, methods=["GET", "POST"]),
    ]
