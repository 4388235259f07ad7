"""A purchase from request to credit, exactly once.

States: created -> pending (at the provider, awaiting the customer) -> paid (the provider confirmed, by
signed callback or by our status poll) -> vended (one STS token issued and queued for the meter) ->
credited (the meter's own result: accepted). Off the main path: failed (declined or expired at the
provider), refund_pending -> refunded (the meter refused the token, so the money goes back).

Exactly once:
- a purchase is keyed by the customer's request key (a form submitted twice is one purchase) and by
  the provider's reference (UNIQUE), so the same money is never two purchases;
- every transition is a conditional UPDATE (`... WHERE state=<expected>`), so a late, doubled or
  reordered callback and the poller racing it move a purchase at most once, and never backwards;
- the vend's outbox message id is derived from the payment id, and the head-end's vending refuses a
  second token for the same id: a crash between vending and recording the vend is repaired by vending
  again, which returns the first token;
- the head-end delivers that one message until the meter answers, and the meter acts on a message id
  once.
A paid purchase that cannot be delivered stays visible: `stuck` alarms past settings.payment_stuck_after_s,
and a token the meter refuses is refunded."""
import json
import logging

from host_tools.agency import i18n
from host_tools.agency.payments.provider import BadSignature, ProviderError
from host_tools.errors import MeterkitError
from host_tools.headend import vending

log = logging.getLogger("agency.payments")

TERMINAL = ("credited", "failed", "refunded")
PENDING_EXPIRE_S = 3600


class PaymentRefused(Exception):
    """The purchase cannot be made; the message says why, for the customer."""


class Payments:
    def __init__(self, store, settings, provider, keystore, notifier, alarms=None):
        self.store = store
        self.settings = settings
        self.provider = provider
        self.keystore = keystore
        self.notifier = notifier
        self.alarms = alarms

    def now(self):
        return self.settings.clock()

    def event(self, payment_id, kind, data=None, db=None):
        args = (payment_id, self.now(), kind, json.dumps(data or {}, sort_keys=True))
        sql = "INSERT INTO payment_events (payment_id, at, kind, data) VALUES (?,?,?,?)"
        if db is not None:
            db.execute(sql, args)
        else:
            with self.store.tx() as d:
                d.execute(sql, args)

    def get(self, payment_id):
        return self.store.q1("SELECT * FROM payments WHERE id=?", (payment_id,))

    # -- start -----------------------------------------------------------------------------------------
    def start(self, customer_id, meter_id, amount_minor, request_key):
        """Create the purchase (or return the one this request key already made) and open it at the
        provider; returns the payments row. PaymentRefused for an amount out of bounds."""
        s = self.settings
        if not isinstance(amount_minor, int) or amount_minor < s.min_amount_minor:
            raise PaymentRefused("the smallest purchase is %s %s" % (s.money(s.min_amount_minor), s.currency))
        if amount_minor > s.max_amount_minor:
            raise PaymentRefused("the largest purchase is %s %s" % (s.money(s.max_amount_minor), s.currency))
        if not request_key or len(request_key) > 64:
            raise PaymentRefused("the form has expired: open the purchase page again")
        old = self.store.q1("SELECT * FROM payments WHERE request_key=?", (request_key,))
        if old is not None:
            if old["customer_id"] != customer_id:
                raise PaymentRefused("the form has expired: open the purchase page again")
            return old
        now = self.now()
        # The whole purchase is vended: arrears are debt on the meter, which recovers its share of every
        # top-up itself (arrears.py). `arrears_minor` stays 0 (rows from before kept what was taken then).
        with self.store.tx() as db:
            if db.execute("SELECT id FROM payments WHERE request_key=?", (request_key,)).fetchone() is None:
                db.execute("INSERT INTO payments (customer_id, meter_id, amount_minor, arrears_minor, currency,"
                           " request_key, provider, state, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (customer_id, meter_id, amount_minor, 0, s.currency, request_key,
                            self.provider.name, "created", now, now))
        p = self.store.q1("SELECT * FROM payments WHERE request_key=?", (request_key,))
        self._open_at_provider(p)
        return self.get(p["id"])

    def reference(self, p):
        return "AG%08d" % p["id"]

    def _open_at_provider(self, p):
        s = self.settings
        try:
            r = self.provider.create(self.reference(p), p["amount_minor"], p["currency"],
                                     s.callback_base + "/payments/callback",
                                     s.callback_base + "/purchases/%d" % p["id"])
        except ProviderError as e:
            self.event(p["id"], "create_failed", {"error": str(e)})
            if not e.retry:
                self._move(p["id"], "created", "failed", note=str(e))
            return
        with self.store.tx() as db:
            db.execute("UPDATE payments SET provider_ref=?, approve_url=?, state='pending', updated=? "
                       "WHERE id=? AND state='created'", (r["provider_ref"], r["approve_url"], self.now(), p["id"]))
            self.event(p["id"], "opened", {"provider_ref": r["provider_ref"]}, db=db)

    def _move(self, payment_id, from_state, to_state, note=None, **cols):
        sets = ", ".join(["state=?", "updated=?"] + ["%s=?" % k for k in cols] + (["note=?"] if note else []))
        args = [to_state, self.now()] + list(cols.values()) + ([note] if note else []) + [payment_id, from_state]
        with self.store.tx() as db:
            n = db.execute("UPDATE payments SET %s WHERE id=? AND state=?" % sets, args).rowcount
            if n:
                self.event(payment_id, to_state, {"from": from_state}, db=db)
        return n == 1

    # -- provider news ---------------------------------------------------------------------------------
    def callback(self, headers, body, ip=None):
        """A provider callback; returns (http status, text). Bad signatures are refused and logged."""
        try:
            data = self.provider.parse_callback(headers, body)
        except BadSignature as e:
            self.event(None, "callback_refused", {"why": str(e), "ip": ip, "bytes": len(body)})
            log.warning("payment callback refused (%s) from %s", e, ip)
            return 401, "bad signature"
        p = self.store.q1("SELECT * FROM payments WHERE provider_ref=?", (str(data["provider_ref"]),))
        if p is None:
            self.event(None, "callback_unknown", {"provider_ref": data["provider_ref"], "ip": ip})
            return 404, "unknown payment"
        self.event(p["id"], "callback", {"status": data["status"]})
        self.apply(p["id"], str(data["status"]))
        return 200, "ok"

    def apply(self, payment_id, status):
        """Act on the provider's status for a purchase; idempotent, never moves backwards."""
        if status == "paid":
            # "failed" too: a purchase we gave up on (not approved within the hour) that the customer
            # approved after all has taken their money, so it is delivered like any other
            for frm in ("created", "pending", "failed"):
                if self._move(payment_id, frm, "paid", paid_at=self.now()):
                    break
            if self.get(payment_id)["state"] == "paid":
                self.deliver(payment_id)
        elif status == "failed":
            self._move(payment_id, "pending", "failed", note="declined at the provider")
        # "pending" (stale, or not yet decided) and anything else: nothing to do

    # -- delivery --------------------------------------------------------------------------------------
    def msg_id(self, p):
        return "t-pay%d" % p["id"]

    def deliver(self, payment_id):
        """Vend the token for a paid purchase (once) and send it to the customer by SMS."""
        p = self.get(payment_id)
        if p is None or p["state"] != "paid":
            return False
        amount = p["amount_minor"] - p["arrears_minor"]
        try:
            v = vending.vend_topup(self.store, self.keystore, p["meter_id"],
                                   amount="%d.%02d" % (amount // 100, amount % 100), msg_id=self.msg_id(p))
        except MeterkitError as e:
            self.event(payment_id, "vend_failed", {"error": str(e)})
            return False
        with self.store.tx() as db:
            n = db.execute("UPDATE payments SET state='vended', msg_id=?, token=?, tid=?, vended_at=?, updated=? "
                           "WHERE id=? AND state='paid'",
                           (v["msg_id"], v["token"], v["tid"], self.now(), self.now(), payment_id)).rowcount
            if n:
                self.event(payment_id, "vended", {"msg_id": v["msg_id"], "tid": v["tid"]}, db=db)
        if n:
            self._tell(p, "token", token=v["token"])
        return bool(n)

    def _tell(self, p, kind, **kw):
        c = self.store.q1("SELECT * FROM customers WHERE id=?", (p["customer_id"],))
        if c is None or self.notifier is None:
            return
        s = self.settings
        lang = i18n.lang_of(c["language"])
        amount = s.money(p["amount_minor"])
        if kind == "token":
            # the token must reach the phone, whatever the customer's preferences: SMS
            self.notifier.to_customer(c, "token", i18n.sms(lang, "token", amount=amount, cur=s.currency,
                                                          meter=p["meter_id"][-6:], token=kw["token"]),
                                      channels=["sms"])
        elif kind == "receipt":
            import time as _t
            date = _t.strftime("%Y-%m-%d %H:%M", _t.gmtime(p["credited_at"] or self.now()))
            text = i18n.sms(lang, "receipt", ref=self.reference(p), amount=amount, cur=s.currency,
                            meter=p["meter_id"][-6:], date=date)
            self.notifier.to_customer(c, "receipt", text, subject="Reçu %s" % self.reference(p))
        elif kind == "refund":
            self.notifier.to_customer(c, "refund", i18n.sms(lang, "refund", ref=self.reference(p), amount=amount,
                                                           cur=s.currency), channels=["sms"])

    # -- the worker's round ----------------------------------------------------------------------------
    def reconcile(self):
        """One round: poll the provider for quiet purchases, finish interrupted deliveries, record the
        meters' results, refund refused tokens, flag stuck ones. Returns counts of what it did."""
        now = self.now()
        s = self.settings
        did = {"polled": 0, "delivered": 0, "credited": 0, "refunded": 0, "stuck": 0, "expired": 0}
        for p in self.store.q("SELECT * FROM payments WHERE state='created'"):
            if now - p["created"] > 5:
                self._open_at_provider(p)
        for p in self.store.q("SELECT * FROM payments WHERE state='pending' AND updated<? AND "
                              "(last_poll IS NULL OR last_poll<?)", (now - s.payment_poll_after_s,
                                                                    now - s.payment_poll_after_s)):
            with self.store.tx() as db:
                db.execute("UPDATE payments SET last_poll=?, polls=polls+1 WHERE id=?", (now, p["id"]))
            try:
                st = self.provider.status(p["provider_ref"])["status"]
            except ProviderError as e:
                self.event(p["id"], "poll_failed", {"error": str(e)})
                continue
            did["polled"] += 1
            self.event(p["id"], "polled", {"status": st})
            if st == "pending" and now - p["created"] > PENDING_EXPIRE_S:
                if self._move(p["id"], "pending", "failed", note="not approved within an hour"):
                    did["expired"] += 1
            else:
                self.apply(p["id"], st)
        for p in self.store.q("SELECT id FROM payments WHERE state='paid'"):
            did["delivered"] += bool(self.deliver(p["id"]))
        rows = self.store.q("SELECT p.*, m.state AS m_state, m.code AS m_code, m.done_at AS m_done FROM payments p "
                            "LEFT JOIN messages m ON m.msg_id=p.msg_id WHERE p.state='vended'")
        for p in rows:
            if p["m_state"] == "done" and p["m_code"] == "accepted":
                if self._move(p["id"], "vended", "credited", credited_at=p["m_done"], result_code="accepted"):
                    did["credited"] += 1
                    self._tell(self.get(p["id"]), "receipt")
            elif p["m_state"] == "done":
                self._move(p["id"], "vended", "refund_pending", result_code=p["m_code"],
                           note="the meter refused the token: %s" % p["m_code"])
            elif now - p["vended_at"] > s.payment_stuck_after_s and self.alarms is not None:
                did["stuck"] += self.alarms.raise_(
                    "payment_stuck", p["meter_id"], "payment:%d" % p["id"],
                    {"payment": p["id"], "amount_minor": p["amount_minor"], "since": p["vended_at"]})
        for p in self.store.q("SELECT * FROM payments WHERE state='refund_pending'"):
            try:
                r = self.provider.refund(p["provider_ref"], p["amount_minor"])
            except ProviderError as e:
                self.event(p["id"], "refund_failed", {"error": str(e)})
                continue
            if r.get("status") == "refunded" and self._move(p["id"], "refund_pending", "refunded",
                                                            refunded_at=now):
                did["refunded"] += 1
                self._tell(self.get(p["id"]), "refund")
        return did

    def refund_request(self, payment_id):
        """An operator's refund of a purchase not yet vended (paid) or refused by the meter."""
        return self._move(payment_id, "paid", "refund_pending", note="refunded by an operator")
