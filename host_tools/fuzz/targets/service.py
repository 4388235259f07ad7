"""The service port: every command (open and privileged) with valid, junk and mutated arguments, as
JSON requests and as raw mutated lines, on a factory meter (privileged commands open), on a locked
meter with no session and on a locked meter with an authenticated session.

Beyond the shared invariants (meterdoor.py): every line gets exactly one JSON reply with `ok`; a
handler never answers with a bare exception (`TypeError: ...`: a bug the port's catch-all hid); a
privileged command never succeeds on a locked meter without a session."""
import json
import re

from host_tools.fuzz.harness import Violation
from host_tools.fuzz.meter import EPOCH, PAN, SessionRefused, provision_request
from host_tools.fuzz.mutate import junk, mutate_bytes, mutate_value, rbytes
from host_tools.fuzz.targets.meterdoor import PROTECTED, MeterDoor, diff

STATES = ("factory", "locked", "locked_auth")
PRIVILEGED = ("topup", "relay", "set_time", "clear_tamper", "set_config", "cal_get", "cal_set", "raw_read",
              "raw_write", "provision", "factory_lock", "selftest")
# The port words a handler's exception as "<type>: <text>". ValueError and its kinds (Refused,
# ProvisionError) are how handlers refuse a value; any other type is a bug the catch-all hid.
REFUSALS = ("ValueError", "Refused", "ProvisionError")
_EXC = re.compile(r"^([A-Z][A-Za-z0-9_]*): ")


def _requests(tokens):
    """One valid request per command (the corpus)."""
    return [
        {"cmd": "ping"}, {"cmd": "readings", "fresh": True}, {"cmd": "totals", "fresh": False},
        {"cmd": "events", "since": 0}, {"cmd": "status"}, {"cmd": "settings"}, {"cmd": "credit"},
        {"cmd": "statement"}, {"cmd": "emergency"}, {"cmd": "reconnect"}, {"cmd": "token", "digits": tokens[0]},
        {"cmd": "token", "digits": tokens[1]}, {"cmd": "topup", "amount": 2500, "ref": "pay-1"},
        {"cmd": "relay", "open": True}, {"cmd": "relay", "open": False}, {"cmd": "set_time", "unix": EPOCH + 3600},
        {"cmd": "clear_tamper"}, {"cmd": "set_config", "settings": {"reading_period_s": 600}},
        {"cmd": "set_config", "settings": {"language": "ar", "prepaid": {"ledger": {"emergency_amount": 1000}}}},
        {"cmd": "cal_get"}, {"cmd": "cal_set", "cal": {"Ugain": 26500}, "persist": False},
        {"cmd": "raw_read", "regs": [0x49, 0x4A]}, {"cmd": "raw_write", "reg": 4, "value": 0},
        {"cmd": "identity"}, {"cmd": "key_check", "key": "sts", "challenge": "00" * 16},
        dict(provision_request(), cmd="provision"), dict(provision_request(), cmd="provision", rekey=True, krn=2),
        {"cmd": "factory_lock"}, {"cmd": "selftest"}, {"cmd": "auth_challenge"},
        {"cmd": "auth", "mac": "00" * 32}, {"cmd": "auth_end"},
    ]


class ServiceTarget(MeterDoor):
    name = "service"
    states = ("factory", "locked")

    def __init__(self, work):
        super().__init__(work)
        self.corpus = _requests(self.tokens)
        self.commands = sorted({r["cmd"] for r in self.corpus})

    def seeds(self):
        return [{"state": s, "req": dict(r, id=i)} for s in STATES for i, r in enumerate(self.corpus)]

    def generate(self, rng):
        state = rng.choice(STATES)
        if rng.random() < 0.1:
            return {"state": state, "raw": rbytes(rng, 0, 80).hex()}
        req = dict(rng.choice(self.corpus))
        for k in list(req):
            if k != "cmd" and rng.random() < 0.3:
                req[k] = junk(rng)
        if rng.random() < 0.1:
            req["cmd"] = rng.choice(self.commands + ["", "PING", "ping ", None, 1, ["ping"], "__init__", "handle"])
        req["id"] = rng.choice([1, "x", None, [1], {"a": 1}, 2 ** 70, 1.5])
        return {"state": state, "req": req}

    def mutate(self, rng, x):
        x = dict(x)
        if rng.random() < 0.1:
            x["state"] = rng.choice(STATES)
        if "req" in x and rng.random() < 0.8:
            req = mutate_value(rng, x["req"])
            x["req"] = req if isinstance(req, dict) and rng.random() < 0.9 else {"cmd": x["req"].get("cmd"), "x": req}
            return x
        data = bytes.fromhex(x["raw"]) if "raw" in x else json.dumps(x.pop("req")).encode()
        x.pop("req", None)
        x["raw"] = mutate_bytes(rng, data).hex()
        return x

    def run(self, x):
        state = x["state"]
        m = self.meters["factory" if state == "factory" else "locked"]
        session = m.app.provision.session
        if state == "locked_auth" and not m.authorised():
            try:
                m.authenticate()
            except SessionRefused as e:
                # Earlier inputs may have locked the port out (wrong MACs; the harness's clock does not
                # run, so the lockout would never end) or re-keyed the meter under a session: both are
                # the meter doing its job. Start that meter again; any other refusal is a finding.
                if not (e.locked_out or m.service_key_changed()):
                    raise
                m.reset()
                self._watch(m)
                m.authenticate()
        elif state == "locked":
            session.opened_at = None
        if state != "factory" and session.factory_mode:
            m.reset()                          # a provision request left factory mode open?
            self._watch(m)
            raise Violation("a locked meter is in factory mode again")
        if "req" in x:
            data = json.dumps(x["req"]).encode() + b"\n"
        else:
            data = bytes.fromhex(x["raw"]) + b"\n"
        lines = sum(1 for ln in data.replace(b"\r", b"\n").split(b"\n") if ln)
        authorised = m.authorised()
        before = m.snapshot()
        m.ran = []
        replies = m.line(data)
        after = m.snapshot()
        if len(replies) != lines and len(data) < 1000:
            raise Violation("%d request line(s) got %d replies: %r" % (lines, len(replies), replies[:3]))
        accepted = False
        for r in replies:
            if not isinstance(r, dict) or not isinstance(r.get("ok"), bool):
                raise Violation("a reply that is not a JSON object with ok: %r" % (r,))
            if r["ok"]:
                accepted = True
            elif _EXC.match(str(r.get("error"))) and _EXC.match(str(r["error"])).group(1) not in REFUSALS:
                raise Violation("a handler failed with an exception instead of a refusal: %r" % (r["error"],))
        cmd = x.get("req", {}).get("cmd")
        if accepted and cmd in PRIVILEGED and not authorised:
            raise Violation("privileged %r succeeded on a locked meter without a session" % (cmd,))
        if not accepted:
            d = diff(before, after)
            if d:
                raise Violation("a refused request changed state: %s" % (d,))
        elif not authorised:
            d = diff(before, after, PROTECTED)
            if d:
                raise Violation("a request without a session changed protected state: %s" % (d,))
        self.check_credit(m, before, after, authorised)
        if state == "factory" and after["records"].get("factory") not in (None, "StoreMissing"):
            m.reset()                          # factory_lock went through: start the next from factory again
            self._watch(m)
        if after["credit"] > 10 ** 8 or after["settings"] != before["settings"] or after["time"] != EPOCH:
            pass
        if state != "factory" and after["records"]["identity"] != before["records"]["identity"] and \
                after["records"]["identity"].get("meter_id") != PAN:
            m.reset()                          # re-provisioned under another id (authorised): back to the template
            self._watch(m)
        return "%s:%s" % (cmd if isinstance(cmd, str) and cmd in self.commands else "other",
                          "ok" if accepted else "refused")
