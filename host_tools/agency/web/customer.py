"""Customer pages: sign-in by SMS code, home, consumption (charts and CSV), statements, preferences and
contact changes (confirmed by a code sent to the new contact), fault tickets, language."""
import csv
import io

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from host_tools.agency import i18n, registry, security, usage
from host_tools.agency import statements as statements_mod
from host_tools.agency.tickets import CATEGORIES, TicketError
from host_tools.agency.web.common import (CUSTOMER_COOKIE, LANG_COOKIE, HttpError, client_ip, customer_route,
                                          lang_for, redirect, render)


def _a(request):
    return request.app.state.agency


def own_meter(request, customer, meter_id=None):
    """The customer's meter named in the request (or their first); 404 for anyone else's."""
    meters = registry.meters_of(_a(request).store, customer["id"])
    if not meters:
        raise HttpError(404, "no meter is registered to your number: contact the agency")
    m = meter_id or request.query_params.get("meter") or meters[0]
    if m not in meters:
        raise HttpError(404, "no such meter among yours")
    return m, meters


# -- sign-in ----------------------------------------------------------------------------------------
async def root(request):
    return redirect("/home")


async def signin(request):
    a = _a(request)
    if request.method == "GET":
        return render(request, "signin.html")
    form = await request.form()
    try:
        phone = registry.clean_phone(form.get("phone"))
    except registry.RegistryError as e:
        return render(request, "signin.html", status=400, error=str(e), phone=form.get("phone", ""))
    c = registry.by_phone(a.store, phone)
    ip = client_ip(request)
    try:
        # the same answer whether or not the number is registered, and the same limits
        code = security.issue_otp(a.store, a.settings, "signin", phone, ip, customer_id=c["id"] if c else None)
    except security.Refused as e:
        return render(request, "signin.html", status=429, error=str(e), phone=phone)
    if c is not None:
        lang = i18n.lang_of(c["language"])
        await run_in_threadpool(a.notifier.send, "sms", phone, "otp",
                                i18n.sms(lang, "otp", code=code, minutes=a.settings.otp_ttl_s // 60), None, c["id"])
    resp = redirect("/signin/code?phone=" + phone.replace("+", "%2B"))
    return resp


async def signin_code(request):
    a = _a(request)
    if request.method == "GET":
        return render(request, "code.html", phone=request.query_params.get("phone", ""))
    form = await request.form()
    phone = form.get("phone", "")
    try:
        phone = registry.clean_phone(phone)
        row = security.check_otp(a.store, a.settings, "signin", phone, form.get("code"))
        if row["customer_id"] is None:
            raise security.Refused("wrong code")
    except (registry.RegistryError, security.Refused) as e:
        return render(request, "code.html", status=400, error=str(e), phone=phone)
    token, _ = security.open_session(a.store, a.settings, "customer", row["customer_id"], client_ip(request))
    resp = redirect("/home")
    resp.set_cookie(CUSTOMER_COOKIE, token, max_age=a.settings.session_ttl_s, httponly=True, samesite="lax",
                    secure=a.settings.secure_cookies)
    return resp


@customer_route
async def signout(request, sess, customer, form):
    security.close_session(_a(request).store, request.cookies.get(CUSTOMER_COOKIE))
    resp = redirect("/signin")
    resp.delete_cookie(CUSTOMER_COOKIE)
    return resp


async def set_language(request):
    """Language for the signed-out pages (a cookie); signed-in customers keep it in their record."""
    form = await request.form()
    lang = form.get("lang")
    if lang not in i18n.LANGS:
        raise HttpError(400, "language must be fr or ar")
    a = _a(request)
    sess = security.session(a.store, a.settings, request.cookies.get(CUSTOMER_COOKIE), "customer")
    if sess is not None:
        if form.get("csrf") != sess["csrf"]:
            raise HttpError(403, "the form has expired: reload the page")
        with a.store.tx() as db:
            db.execute("UPDATE customers SET language=? WHERE id=?", (lang, sess["subject_id"]))
    back = form.get("next") or "/home"
    resp = redirect(back if back.startswith("/") and not back.startswith("//") else "/home")
    resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return resp


# -- home -------------------------------------------------------------------------------------------
def home_view(a, customer, meter_id):
    now = a.settings.clock()
    h = usage.home(a.store, meter_id, now)
    r = h["reading"] or {}
    warnings = []
    if r:
        credit = r.get("credit")
        if credit is not None and (credit < 5 * a.settings.minor_per_major or
                                   (h["days_left"] is not None and h["days_left"] < 3)):
            warnings.append("warn_low")
        if r.get("tamper"):
            warnings.append("warn_tamper")
    m = a.store.q1("SELECT last_seen FROM meters WHERE meter_id=?", (meter_id,))
    if m and m["last_seen"] and now - m["last_seen"] > a.settings.silent_after_s:
        warnings.append("warn_stale")
    # Debt is the meter's: arrears loaded on it and use in friendly periods, recovered by a share of each
    # top-up. Shown as the meter last reported it (its reading, or a newer report of its arrears).
    book = a.store.q1("SELECT balance_minor, share_bp, reported_at FROM arrears WHERE meter_id=?", (meter_id,))
    debt = r.get("debt") if isinstance(r.get("debt"), int) else 0
    arrears = book["balance_minor"] if book else 0
    r_arrears = r.get("arrears") if isinstance(r.get("arrears"), int) else 0
    if book and (not book["reported_at"] or r.get("ts") is None or book["reported_at"] > r["ts"] or not r_arrears):
        # the book's arrears are newer than the reading (a report since, or not on the meter yet)
        debt = max(debt - r_arrears, 0) + arrears
    if debt > 0:
        warnings.append("warn_debt")
    if a.store.q1("SELECT id FROM payments WHERE meter_id=? AND state IN ('paid','vended')", (meter_id,)):
        warnings.append("warn_pending")
    reasons = [x for x in (r.get("reasons") or "").split("|") if x]
    return {"h": h, "r": r, "warnings": warnings, "reasons": reasons, "debt": debt,
            "arrears": arrears if book else 0, "arrears_share": book["share_bp"] if book else None}


@customer_route
async def home(request, sess, customer):
    a = _a(request)
    meter_id, meters = own_meter(request, customer)
    return render(request, "home.html", customer=customer, sess=sess, meter=meter_id, meters=meters,
                  **home_view(a, customer, meter_id))


# -- consumption --------------------------------------------------------------------------------------
PERIODS = {"30": ("daily_30", 30), "90": ("daily_90", 90), "12m": ("monthly_12", None)}


def _series(a, meter_id, period):
    now = a.settings.clock()
    if period not in PERIODS:
        raise HttpError(400, "period must be 30, 90 or 12m")
    days = PERIODS[period][1]
    return usage.daily(a.store, meter_id, now, days) if days else usage.monthly(a.store, meter_id, now)


@customer_route
async def consumption(request, sess, customer):
    a = _a(request)
    meter_id, meters = own_meter(request, customer)
    period = request.query_params.get("period", "30")
    series = _series(a, meter_id, period)
    lang = lang_for(request, customer)
    title = i18n.t(lang, PERIODS[period][0])
    total = sum(x for _, x, _ in series if x)
    prev = sum(x for _, _, x in series if x)
    # the cost split of this month's energy by tariff block, and the standing charge
    month = usage.monthly(a.store, meter_id, a.settings.clock(), 1)[0]
    split = a.settings.tariff.split(month[1] or 0)
    return render(request, "consumption.html", customer=customer, sess=sess, meter=meter_id, meters=meters,
                  period=period, periods=PERIODS, series=series, title=title, total=total, prev=prev,
                  chart=usage.chart_svg(series, title), split=split, month=month[0],
                  standing=a.settings.tariff.standing_minor_per_month)


@customer_route
async def consumption_csv(request, sess, customer):
    a = _a(request)
    meter_id, _ = own_meter(request, customer)
    period = request.query_params.get("period", "30")
    series = _series(a, meter_id, period)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["period", "kwh", "kwh_previous_period"])
    for label, cur, prev in series:
        w.writerow([label, "" if cur is None else "%.3f" % (cur / 1000), "" if prev is None else "%.3f" % (prev / 1000)])
    return Response(out.getvalue(), media_type="text/csv", headers={
        "content-disposition": 'attachment; filename="consumption-%s-%s.csv"' % (meter_id, period)})


# -- statements ---------------------------------------------------------------------------------------
def _statements(a, meter_id):
    return statements_mod.for_meter(a.store, a.settings, meter_id)


@customer_route
async def statements(request, sess, customer):
    a = _a(request)
    meter_id, meters = own_meter(request, customer)
    return render(request, "statements.html", customer=customer, sess=sess, meter=meter_id, meters=meters,
                  statements=_statements(a, meter_id))


def _one_statement(a, request, customer):
    meter_id, _ = own_meter(request, customer, request.path_params["meter"])
    month = request.path_params["month"]
    for s in _statements(a, meter_id):
        if s["month"] == month:
            return meter_id, s
    raise HttpError(404, "no statement for %s" % month)


@customer_route
async def statement(request, sess, customer):
    a = _a(request)
    meter_id, s = _one_statement(a, request, customer)
    return render(request, "statement.html", customer=customer, sess=sess, meter=meter_id, s=s,
                  standing=a.settings.tariff.standing_minor_per_month)


@customer_route
async def statement_csv(request, sess, customer):
    a = _a(request)
    meter_id, s = _one_statement(a, request, customer)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["meter", "month", "item", "kwh", "cost_minor"])
    for label, wh, cost in s["split"]:
        w.writerow([meter_id, s["month"], label, "%.3f" % (wh / 1000), cost])
    w.writerow([meter_id, s["month"], "standing", "", a.settings.tariff.standing_minor_per_month])
    w.writerow([meter_id, s["month"], "total", "%.3f" % ((s["wh"] or 0) / 1000), s["cost"]])
    return Response(out.getvalue(), media_type="text/csv", headers={
        "content-disposition": 'attachment; filename="statement-%s-%s.csv"' % (meter_id, s["month"])})


# -- preferences and contact ----------------------------------------------------------------------------
@customer_route
async def preferences(request, sess, customer, form=None):
    a = _a(request)
    error = notice = None
    if request.method == "POST":
        try:
            registry.set_preferences(a.store, customer["id"], form.get("language", ""), form.getlist("channels"))
            notice = "saved"
        except registry.RegistryError as e:
            error = str(e)
        customer = registry.customer(a.store, customer["id"])
    return render(request, "preferences.html", status=400 if error else 200, customer=customer, sess=sess,
                  error=error, notice=notice, meters=registry.meters_of(a.store, customer["id"]))


def _clean_contact(field, value):
    if field in ("phone", "whatsapp"):
        return registry.clean_phone(value)
    if field == "email":
        v = registry.clean_email(value)
        if not v:
            raise registry.RegistryError("give the new e-mail address")
        return v
    raise registry.RegistryError("choose phone, whatsapp or email")


def start_contact_change(a, customer, field, value, ip):
    """Send a code to the new contact; returns the cleaned value. RegistryError / security.Refused."""
    value = _clean_contact(field, value)
    if field == "phone" and registry.by_phone(a.store, value):
        raise registry.RegistryError("this number is already registered")
    code = security.issue_otp(a.store, a.settings, "contact:" + field, value, ip, customer_id=customer["id"], field=field)
    channel = {"phone": "sms", "whatsapp": "whatsapp", "email": "email"}[field]
    lang = i18n.lang_of(customer["language"])
    a.notifier.send(channel, value, "contact_code", i18n.sms(lang, "contact_code", code=code), "Code", customer["id"])
    return value


def confirm_contact_change(a, customer, field, value, code):
    value = _clean_contact(field, value)
    row = security.check_otp(a.store, a.settings, "contact:" + field, value, code)
    if row["customer_id"] != customer["id"]:
        raise security.Refused("wrong code")
    registry.set_contact(a.store, customer["id"], field, value)
    return value


@customer_route
async def contact(request, sess, customer, form):
    a = _a(request)
    field, value = form.get("field", ""), form.get("value", "")
    try:
        if form.get("code"):
            confirm_contact_change(a, customer, field, value, form.get("code"))
            return redirect("/preferences?changed=" + field)
        value = await run_in_threadpool(start_contact_change, a, customer, field, value, client_ip(request))
    except (registry.RegistryError, security.Refused) as e:
        return render(request, "preferences.html", status=400, customer=customer, sess=sess, error=str(e),
                      meters=registry.meters_of(a.store, customer["id"]))
    return render(request, "preferences.html", customer=customer, sess=sess, confirm={"field": field, "value": value},
                  meters=registry.meters_of(a.store, customer["id"]))


# -- tickets --------------------------------------------------------------------------------------------
@customer_route
async def tickets(request, sess, customer, form=None):
    a = _a(request)
    meters = registry.meters_of(a.store, customer["id"])
    error = None
    if request.method == "POST":
        try:
            meter_id, _ = own_meter(request, customer, form.get("meter") or None)
            tid = await run_in_threadpool(a.tickets.open, customer["id"], meter_id, form.get("category", ""),
                                          form.get("description", ""))
            return redirect("/tickets/%d" % tid)
        except TicketError as e:
            error = str(e)
    rows = a.store.q("SELECT * FROM tickets WHERE customer_id=? ORDER BY id DESC", (customer["id"],))
    return render(request, "tickets.html", status=400 if error else 200, customer=customer, sess=sess, meters=meters,
                  tickets=rows, categories=CATEGORIES, error=error)


@customer_route
async def ticket(request, sess, customer):
    a = _a(request)
    tid = request.path_params["id"]
    t = a.store.q1("SELECT * FROM tickets WHERE id=? AND customer_id=?", (tid, customer["id"]))
    if t is None:
        raise HttpError(404, "no such ticket among yours")
    events = a.store.q("SELECT * FROM ticket_events WHERE ticket_id=? ORDER BY id", (tid,))
    return render(request, "ticket.html", customer=customer, sess=sess, ticket=t, events=events)


def routes():
    return [
        Route("/", root), Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signin/code", signin_code, methods=["GET", "POST"]), Route("/signout", signout, methods=["POST"]),
        Route("/lang", set_language, methods=["POST"]),
        Route("/home", home), Route("/consumption", consumption), Route("/consumption.csv", consumption_csv),
        Route("/statements", statements), Route("/statements/{meter}/{month}.csv", statement_csv),
        Route("/statements/{meter}/{month}", statement),
        Route("/preferences", preferences, methods=["GET", "POST"]), Route("/contact", contact, methods=["POST"]),
        Route("/tickets", tickets, methods=["GET", "POST"]), Route("/tickets/{id:int}", ticket),
    ]


