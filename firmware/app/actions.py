"""Every action a meter can be asked to do, each written once: its checks, its effect and its event.
The service port (service/commands.py), the head-end and SMS (comms/cellular.py) and the keypad
(ui/wiring.py) are adapters: each parses its own format, calls one method here and words the answer.
A value an action cannot take raises Refused (what is wrong and what is accepted), with nothing changed.

`by` names the channel an action came from: "service", "keypad", "headend" (inside an authenticated
envelope), "mqtt" (a bare token), "sms:<number>". It decides a token's lockout and goes into the event.
Token decoding and remote settings are loaded for one call only (util.lazy): large and rare."""
from relay.supply import names as reason_names
from util import lazy
from util.errors import Refused
from util.timecheck import plausible
TOPUP_MAX = 100000000        # credit units in one top-up
REF_MAX = 32                 # characters of a top-up reference
DIGITS_MAX = 40              # characters of a token


class Actions:
    def __init__(self, prepaid, clock, emit, store, settings, settings_path):
        self.prepaid = prepaid
        self.clock = clock
        self.emit = emit
        self.store = store
        self.settings = settings
        self.settings_path = settings_path
        self.token_locks = {}           # token lockouts per remote source, in RAM (tokens/apply.py)
        self.settings_listeners = []    # fn(settings) after set_config changed them

    # -- views -----------------------------------------------------------------------------------
    def credit(self):
        """The prepaid state: credit, debt, emergency, supply and why, tamper, commits."""
        return self.prepaid.view()

    def statement(self):
        """The last closed month and the month so far."""
        return self.prepaid.statement_view()

    # -- credit ----------------------------------------------------------------------------------
    def topup(self, amount, ref, by):
        """Credit `amount` once per `ref` (a retried top-up is answered, never applied twice)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= TOPUP_MAX:
            raise Refused("amount must be an integer 1..%d (credit units)" % TOPUP_MAX)
        if not isinstance(ref, str) or not 0 < len(ref) <= REF_MAX:
            raise Refused("ref must be a string of 1..%d characters (it makes the top-up idempotent)" % REF_MAX)
        p = self.prepaid
        out = p.topup(amount, ref)      # the split: emergency, debt, credit shares
        out["balance"] = p.ledger.credit
        self.emit("topup", {"ref": ref, "amount": amount, "applied": out["applied"], "by": by})
        return out

    def token(self, digits, by):
        """Decode and apply a token; its credit goes through the prepaid core's one credit path
        (Prepaid.add_credit inside Prepaid.change), with the same duplicate check as a top-up."""
        if not isinstance(digits, str) or not 0 < len(digits) <= DIGITS_MAX:
            raise Refused("digits must be the token as a string of 1..%d characters" % DIGITS_MAX)
        import gc
        gc.collect()      # the token code is loaded now and dropped after: give it one free stretch
        return lazy.call("tokens.apply", "apply_token", self.prepaid, self.store, self.clock, self.emit,
                         self.token_locks, digits, by, tree="tokens")

    def emergency(self, by):
        """Emergency credit, when the policy allows it (the ledger reports `emergency_taken`)."""
        p = self.prepaid
        ok, why = p.take_emergency()
        led = p.ledger
        return {"granted": ok, "reason": why, "credit": led.credit, "emergency_owed": led.em_owed}

    # -- supply ----------------------------------------------------------------------------------
    def relay(self, opened, by):
        """Remote disconnect (`opened` True) or its release (False)."""
        if not isinstance(opened, bool):
            raise Refused("open must be true (remote disconnect) or false (release it)")
        p = self.prepaid
        p.set_remote(opened)
        self.emit("remote_relay", {"open": opened, "by": by})
        return {"supply": p.supply_state(), "reasons": reason_names(p.supply.reasons())}

    def reconnect(self, by):
        """The customer's reconnect key (key mode): closes the supply if nothing holds it open."""
        p = self.prepaid
        done = p.reconnect()
        self.emit("reconnect", {"done": done, "by": by})
        return {"reconnected": done, "supply": p.supply_state()}

    def clear_tamper(self, by):
        """Re-arm every tamper kind (and release the supply if tamper held it open)."""
        p = self.prepaid
        was = p.clear_tamper()
        self.emit("tamper_cleared", {"was": was, "by": by})
        return {"cleared": was, "supply": p.supply_state()}

    # -- clock and settings ----------------------------------------------------------------------
    def set_time(self, unix, by):
        """Set the clock from a trusted source (a privileged service request, a signed command)."""
        if not plausible(unix):
            raise Refused("unix must be seconds since 1970 between 2020 and 2100")
        clock = self.clock
        was = clock.time() if clock.time_valid else None
        clock.set_time(unix)
        self.emit("time_set", {"unix": unix, "source": by, "drift": None if was is None else unix - was})
        return {"time": clock.time(), "time_valid": True}

    def set_config(self, settings, by):
        """New remote settings, checked in full, written atomically and in force at once
        (app/setconfig.py); `config_changed` is its event."""
        applied = lazy.call("app.setconfig", "set_config", self.settings_path, self.settings, self.prepaid,
                            settings, self.emit)
        for fn in self.settings_listeners:
            fn(self.settings)
        return {"applied": applied}
