"""What every route shares: templates, sessions and CSRF, the client's address, clear errors."""
import datetime
import functools
import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from host_tools.agency import i18n, security

PKG = Path(__file__).resolve().parent.parent
TEMPLATES = PKG / "templates"
STATIC = PKG / "static"
CUSTOMER_COOKIE = "ag_c"
OPERATOR_COOKIE = "ag_o"
LANG_COOKIE = "ag_lang"

env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                  auto_reload=False)
env.filters["kwh"] = lambda wh: "–" if wh is None else "%.1f" % (wh / 1000)
env.filters["when"] = lambda ts: "–" if not ts else datetime.datetime.fromtimestamp(
    ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)


class HttpError(Exception):
    """Answered as a page (or JSON) with this status and message: never a traceback."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def client_ip(request):
    return request.client.host if request.client else "-"


def lang_for(request, customer=None):
    if customer is not None:
        return i18n.lang_of(customer["language"])
    return i18n.lang_of(request.cookies.get(LANG_COOKIE))


def render(request, name, status=200, **ctx):
    agency = request.app.state.agency
    lang = ctx.pop("lang", None) or lang_for(request, ctx.get("customer"))
    ctx.update(request=request, lang=lang, dir=i18n.DIR[lang], t=functools.partial(i18n.t, lang),
               money=agency.settings.money, currency=agency.settings.currency)
    html = env.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status)


def redirect(url):
    return RedirectResponse(url, status_code=303)


def error_page(request, status, message):
    if request.url.path.endswith((".json", "/status")) or request.url.path.startswith("/payments/"):
        return JSONResponse({"error": message}, status_code=status)
    op = request.url.path.startswith("/op")
    return render(request, "error.html", status=status, message=message, op=op)


# -- sessions ---------------------------------------------------------------------------------------
def _session(request, kind, cookie):
    a = request.app.state.agency
    return security.session(a.store, a.settings, request.cookies.get(cookie), kind)


async def check_csrf(request, sess):
    form = await request.form()
    if not sess or form.get("csrf") != sess["csrf"]:
        raise HttpError(403, "the form has expired or did not come from this site: reload the page and try again")
    return form


def customer_route(fn):
    """The route needs a signed-in customer: fn(request, sess, customer[, form]). POST routes get their
    form checked for the session's CSRF token."""
    @functools.wraps(fn)
    async def wrapper(request):
        sess = _session(request, "customer", CUSTOMER_COOKIE)
        if sess is None:
            if request.method == "GET":
                return redirect("/signin")
            raise HttpError(401, "sign in first")
        a = request.app.state.agency
        customer = a.store.q1("SELECT * FROM customers WHERE id=?", (sess["subject_id"],))
        if customer is None:
            raise HttpError(401, "sign in first")
        if request.method == "POST":
            form = await check_csrf(request, sess)
            return await fn(request, sess, customer, form)
        return await fn(request, sess, customer)
    return wrapper


ROLE_RANK = {"viewer": 0, "agent": 1, "admin": 2}


def operator_route(role="viewer"):
    def deco(fn):
        @functools.wraps(fn)
        async def wrapper(request):
            sess = _session(request, "operator", OPERATOR_COOKIE)
            if sess is None:
                if request.method == "GET":
                    return redirect("/op/signin")
                raise HttpError(401, "sign in first")
            a = request.app.state.agency
            op = a.store.q1("SELECT * FROM operators WHERE id=? AND disabled=0", (sess["subject_id"],))
            if op is None:
                raise HttpError(401, "sign in first")
            if ROLE_RANK[op["role"]] < ROLE_RANK[role]:
                raise HttpError(403, "your role (%s) cannot do this: it needs %s" % (op["role"], role))
            if request.method == "POST":
                form = await check_csrf(request, sess)
                return await fn(request, sess, op, form)
            return await fn(request, sess, op)
        return wrapper
    return deco


def int_param(value, name, low=None, high=None):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise HttpError(400, "%s must be a whole number" % name) from None
    if (low is not None and v < low) or (high is not None and v > high):
        raise HttpError(400, "%s out of range" % name)
    return v
