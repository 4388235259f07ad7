"""Service-port commands of the prepaid core: credit view, top-ups (privileged, idempotent by
reference), emergency credit, reconnect, remote relay, clock setting, and tokens (a token is its own
authentication). Token decoding is loaded only while a token is handled, then unloaded: it is large
and rare, and the heap is small."""
from relay import supply as sup
from service.port import unload

_MAX_TOPUP = 100000000


NAMES = ("credit", "statement", "emergency", "reconnect", "token", "topup", "relay", "set_time", "clear_tamper",
         "set_config")
PRIVILEGED = ("topup", "relay", "set_time", "clear_tamper", "set_config")


def handle(app, cmd, req):
    return getattr(_Commands(app), cmd)(req)


class _Commands:
    def __init__(self, app):
        self.app = app

    def credit(self, req):
        return self.app.prepaid.view()

    def statement(self, req):
        return self.app.prepaid.statement_view()

    def topup(self, req):
        amount = req.get("amount")
        ref = req.get("ref")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= _MAX_TOPUP:
            raise ValueError("amount must be an integer 1..%d (credit units)" % _MAX_TOPUP)
        if not isinstance(ref, str) or not 0 < len(ref) <= 32:
            raise ValueError("ref must be a string of 1..32 characters (it makes the top-up idempotent)")
        out = self.app.prepaid.topup(amount, ref)   # the split: emergency, debt, credit shares
        out["balance"] = self.app.prepaid.ledger.credit
        return out

    def emergency(self, req):
        ok, why = self.app.prepaid.take_emergency()
        return {"granted": ok, "reason": why, "credit": self.app.prepaid.ledger.credit}

    def reconnect(self, req):
        p = self.app.prepaid
        done = p.supply.key_reconnect()
        p.supply.poll(self.app.clock.ticks_ms())
        p.commit()
        return {"reconnected": bool(done), "supply": "closed" if p.supply.closed else "open"}

    def relay(self, req):
        p = self.app.prepaid
        want_open = req.get("open")
        if not isinstance(want_open, bool):
            raise ValueError("open must be true (remote disconnect) or false (release it)")
        if want_open:
            p.supply.set_reason(sup.REMOTE)
        else:
            p.supply.clear_reason(sup.REMOTE)
        p.supply.poll(self.app.clock.ticks_ms())
        p.commit()
        return {"supply": "closed" if p.supply.closed else "open", "reasons": sup.names(p.supply.reasons())}

    def clear_tamper(self, req):
        p = self.app.prepaid
        was = p.tamper.names()
        p.tamper.clear()
        p.supply.poll(self.app.clock.ticks_ms())
        p.commit()
        return {"cleared": was, "supply": "closed" if p.supply.closed else "open"}

    def set_config(self, req):
        from app import setconfig as configcmd
        try:
            code, detail = configcmd.set_config(self.app, req.get("settings"))
        finally:
            unload("app.setconfig")
        if code != "done":
            raise ValueError(detail["why"])
        return detail

    def set_time(self, req):
        t = req.get("unix")
        if not isinstance(t, int) or t < 1577836800 or t > 4102444800:
            raise ValueError("unix must be seconds since 1970 between 2020 and 2100")
        self.app.clock.set_time(t)
        return {"time": self.app.clock.time(), "time_valid": True}

    def token(self, req):
        digits = req.get("digits")
        if not isinstance(digits, str) or not 0 < len(digits) <= 40:
            raise ValueError("digits must be the token as a string")
        import gc
        gc.collect()      # the token code is loaded now and dropped after: give it one free stretch
        try:
            from tokens.apply import apply_token
            # Where the token came from decides its lockout. Only in-process callers can say (the keypad,
            # the cellular side: a one-tuple, which JSON cannot make); a service-port request is "service".
            src = req.get("source")
            return apply_token(self.app, digits, src[0] if isinstance(src, tuple) else "service")
        finally:
            import sys
            for name in [n for n in sys.modules if n.startswith("tokens.")]:
                unload(name)
            unload("tokens")
