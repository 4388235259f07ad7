"""Buying credit: the form (any amount from the minimum; a request key per form so a double submit is one
purchase), the hand-over to the provider's page, the page that follows the purchase to "credited" by the
meter's own result, the list of purchases and their receipts."""
import json
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from host_tools.agency import i18n
from host_tools.agency.payments.lifecycle import PaymentRefused
from host_tools.agency.web.common import HttpError, customer_route, lang_for, render
from host_tools.agency.web.customer import own_meter

STEPS = ("pending", "paid", "vended", "credited")


def _a(request):
    return request.app.state.agency


def _own_payment(request, customer):
    p = _a(request).payments.get(request.path_params["id"])
    if p is None or p["customer_id"] != customer["id"]:
        raise HttpError(404, "no such purchase among yours")
    return p


@customer_route
async def buy(request, sess, customer, form=None):
    a = _a(request)
    s = a.settings
    if request.method == "GET":
        meter_id, meters = own_meter(request, customer)
        return render(request, "buy.html", customer=customer, sess=sess, meter=meter_id, meters=meters,
                      request_key=secrets.token_urlsafe(16), minimum=s.min_amount_minor, amount="")
    meter_id, meters = own_meter(request, customer, form.get("meter") or None)
    error = None
    try:
        amount = s.parse_money(form.get("amount"))
    except ValueError:
        error, amount = "give an amount like 50 or 12.50", None
    if error is None:
        try:
            p = await run_in_threadpool(a.payments.start, customer["id"], meter_id, amount, form.get("request_key", ""))
        except PaymentRefused as e:
            error = str(e)
    if error:
        return render(request, "buy.html", status=400, customer=customer, sess=sess, meter=meter_id, meters=meters,
                      request_key=form.get("request_key") or secrets.token_urlsafe(16), minimum=s.min_amount_minor,
                      amount=form.get("amount", ""), error=error)
    if p["state"] == "pending" and p["approve_url"]:
        return RedirectResponse(p["approve_url"], status_code=303)
    return RedirectResponse("/purchases/%d" % p["id"], status_code=303)


def _meter_credit(a, p):
    if p["state"] != "credited":
        return None
    m = a.store.q1("SELECT detail FROM messages WHERE msg_id=?", (p["msg_id"],))
    c = json.loads(m["detail"] or "{}").get("credit") if m else None
    return a.settings.money(c) if isinstance(c, int) else None


def status_view(a, p, lang):
    return {"id": p["id"], "state": p["state"], "label": i18n.t(lang, "st_" + p["state"]),
            "token": p["token"] if p["state"] in ("vended", "credited") else None,
            "amount": a.settings.money(p["amount_minor"]), "currency": p["currency"],
            "credited_at": p["credited_at"], "meter_credit": _meter_credit(a, p), "done": p["state"] in ("credited", "failed", "refunded"),
            "step": STEPS.index(p["state"]) if p["state"] in STEPS else -1}


@customer_route
async def purchase(request, sess, customer):
    a = _a(request)
    p = _own_payment(request, customer)
    lang = lang_for(request, customer)
    credit = None
    if p["state"] == "credited":
        # the meter's own result for the token: its credit right after it applied it
        m = a.store.q1("SELECT detail FROM messages WHERE msg_id=?", (p["msg_id"],))
        credit = json.loads(m["detail"] or "{}").get("credit") if m else None
    return render(request, "purchase.html", customer=customer, sess=sess, p=p, v=status_view(a, p, lang),
                  steps=STEPS, credit=credit, reference=a.payments.reference(p))


@customer_route
async def purchase_status(request, sess, customer):
    a = _a(request)
    p = _own_payment(request, customer)
    return JSONResponse(status_view(a, p, lang_for(request, customer)))


@customer_route
async def purchases(request, sess, customer):
    a = _a(request)
    rows = a.store.q("SELECT * FROM payments WHERE customer_id=? ORDER BY id DESC LIMIT 200", (customer["id"],))
    return render(request, "purchases.html", customer=customer, sess=sess, rows=rows, ref=a.payments.reference)


@customer_route
async def receipt(request, sess, customer):
    a = _a(request)
    p = _own_payment(request, customer)
    if p["state"] not in ("vended", "credited", "refunded"):
        raise HttpError(404, "a receipt exists once the purchase is paid and its token issued")
    return render(request, "receipt.html", customer=customer, sess=sess, p=p, reference=a.payments.reference(p))


def routes():
    return [Route("/buy", buy, methods=["GET", "POST"]), Route("/purchases", purchases),
            Route("/purchases/{id:int}", purchase), Route("/purchases/{id:int}/status", purchase_status),
            Route("/purchases/{id:int}/receipt", receipt)]
