"""A simulated mobile-money provider as its own small HTTP service, behaving like the real ones: the
merchant creates a payment (idempotent on its reference), the customer approves or declines it on the
provider's page, and the provider tells the merchant by a signed callback. With probability `faults` a
payment's callback misbehaves: it comes late, twice, out of order (a stale "pending" after "paid") or
never, so the merchant must also poll the status. Refunds are accepted for paid payments.

Run it with `ServerThread(SimProvider(...).app)`; `seed` makes the faults reproducible."""
import heapq
import html
import itertools
import json
import random
import threading
import time

import httpx
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Route

from host_tools.agency.payments.provider import SIGNATURE_HEADER, sign

FAULT_KINDS = ("late", "twice", "reorder", "never")


class SimProvider:
    def __init__(self, api_key, callback_secret, faults=0.0, seed=1, late_s=(2.0, 8.0), time_scale=1.0):
        self.api_key = api_key
        self.secret = callback_secret
        self.faults = faults
        self.rng = random.Random(seed)
        self.late_s = late_s
        self.time_scale = time_scale        # wall seconds per provider second (the scenario speeds it up)
        self.payments = {}                  # provider_ref -> dict
        self.by_reference = {}
        self.fault_counts = {k: 0 for k in FAULT_KINDS}
        self.callbacks_sent = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queue = []                    # (due monotonic, n, url, body)
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._sender = threading.Thread(target=self._send_loop, name="simprovider-callbacks", daemon=True)
        self._sender.start()
        self.http = httpx.Client(timeout=5.0)
        self.app = Starlette(routes=[
            Route("/v1/payments", self.api_create, methods=["POST"]),
            Route("/v1/payments/{ref}", self.api_status, methods=["GET"]),
            Route("/v1/payments/{ref}/refund", self.api_refund, methods=["POST"]),
            Route("/pay/{ref}", self.page, methods=["GET", "POST"]),
        ])

    def close(self):
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        self._sender.join(5)
        self.http.close()

    # -- merchant API --------------------------------------------------------------------------------
    def _authorised(self, request):
        return request.headers.get("authorization") == "Bearer " + self.api_key

    async def api_create(self, request):
        if not self._authorised(request):
            return JSONResponse({"error": "bad API key"}, status_code=401)
        try:
            b = await request.json()
            reference, amount, currency = str(b["reference"]), b["amount"], str(b["currency"])
            callback_url, return_url = str(b["callback_url"]), str(b.get("return_url") or "")
            if not isinstance(amount, int) or amount <= 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "reference, amount (positive integer, minor units), currency and "
                                          "callback_url expected"}, status_code=400)
        base = str(request.base_url).rstrip("/")
        with self._lock:
            ref = self.by_reference.get(reference)
            if ref is None:
                ref = "MM%06d" % next(self._ids)
                self.payments[ref] = {"provider_ref": ref, "reference": reference, "amount": amount,
                                      "currency": currency, "status": "pending", "callback_url": callback_url,
                                      "return_url": return_url, "refunded": 0}
                self.by_reference[reference] = ref
            p = self.payments[ref]
        return JSONResponse({"provider_ref": ref, "status": p["status"], "approve_url": base + "/pay/" + ref})

    async def api_status(self, request):
        if not self._authorised(request):
            return JSONResponse({"error": "bad API key"}, status_code=401)
        p = self.payments.get(request.path_params["ref"])
        if p is None:
            return JSONResponse({"error": "unknown payment"}, status_code=404)
        return JSONResponse({k: p[k] for k in ("provider_ref", "reference", "amount", "currency", "status")})

    async def api_refund(self, request):
        if not self._authorised(request):
            return JSONResponse({"error": "bad API key"}, status_code=401)
        with self._lock:
            p = self.payments.get(request.path_params["ref"])
            if p is None:
                return JSONResponse({"error": "unknown payment"}, status_code=404)
            if p["status"] == "refunded":
                return JSONResponse({"provider_ref": p["provider_ref"], "status": "refunded"})
            if p["status"] != "paid":
                return JSONResponse({"error": "only a paid payment can be refunded"}, status_code=409)
            p["status"] = "refunded"
            p["refunded"] = p["amount"]
        return JSONResponse({"provider_ref": p["provider_ref"], "status": "refunded"})

    # -- the customer's page -------------------------------------------------------------------------
    async def page(self, request):
        ref = request.path_params["ref"]
        p = self.payments.get(ref)
        if p is None:
            return HTMLResponse("<p>Unknown payment</p>", status_code=404)
        if request.method == "POST":
            form = await request.form()
            decision = form.get("decision")
            if decision not in ("approve", "decline"):
                return HTMLResponse("<p>approve or decline</p>", status_code=400)
            with self._lock:
                if p["status"] == "pending":
                    p["status"] = "paid" if decision == "approve" else "failed"
                    self._schedule(p)
            if p["return_url"]:
                return RedirectResponse(p["return_url"], status_code=303)
            return HTMLResponse("<p>%s</p>" % p["status"])
        amount = "%d.%02d %s" % (p["amount"] // 100, p["amount"] % 100, html.escape(p["currency"]))
        body = ("<!doctype html><html lang='fr'><head><meta charset='utf-8'><meta name='viewport' "
                "content='width=device-width'><title>Mobile Money</title><style>body{font-family:sans-serif;"
                "max-width:26rem;margin:2rem auto;padding:0 1rem}button{font-size:1.1rem;padding:.7rem 1.2rem;"
                "margin:.3rem}</style></head><body><h1>Mobile Money (simulé)</h1><p>Payer <strong>%s</strong> "
                "(réf. %s)</p><p>Statut : %s</p><form method='post'><button name='decision' value='approve' "
                "id='approve'>Confirmer</button><button name='decision' value='decline' id='decline'>Refuser"
                "</button></form></body></html>") % (amount, html.escape(p["reference"]), p["status"])
        return HTMLResponse(body)

    # -- callbacks -----------------------------------------------------------------------------------
    def _schedule(self, p):
        """Queue the callback(s) for a payment that just changed (lock held)."""
        now = time.monotonic()
        final = json.dumps({"provider_ref": p["provider_ref"], "reference": p["reference"],
                            "status": p["status"], "amount": p["amount"]}).encode()
        stale = json.dumps({"provider_ref": p["provider_ref"], "reference": p["reference"],
                            "status": "pending", "amount": p["amount"]}).encode()
        fault = self.rng.choice(FAULT_KINDS) if self.rng.random() < self.faults else None
        if fault:
            self.fault_counts[fault] += 1
        prompt = self.rng.uniform(0.05, 0.5) * self.time_scale
        late = self.rng.uniform(*self.late_s) * self.time_scale
        sends = {None: [(prompt, final)], "late": [(late, final)], "twice": [(prompt, final), (prompt + late / 4, final)],
                 "reorder": [(prompt, final), (prompt + 0.05 * self.time_scale, stale)], "never": []}[fault]
        p["fault"] = fault
        for delay, body in sends:
            heapq.heappush(self._queue, (now + delay, next(self._ids), p["callback_url"], body))
        self._wake.notify_all()

    def _send_loop(self):
        while True:
            with self._lock:
                while not self._stop and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._wake.wait(0.05 if self._queue else 0.5)
                if self._stop:
                    return
                due, n, url, body = heapq.heappop(self._queue)
            try:
                self.http.post(url, content=body, headers={"content-type": "application/json",
                                                           SIGNATURE_HEADER: sign(self.secret, body)})
                self.callbacks_sent += 1
            except httpx.HTTPError:
                pass    # like a real provider giving up on one delivery: the merchant polls the status
