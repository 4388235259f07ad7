"""Every action a meter can be asked to do, each written once: its checks, its effect and its event.
The service port (service/commands.py), the head-end and SMS (comms/cellular.py) and the keypad
(ui/wiring.py) are adapters: each parses its own format, calls `Actions.run(name, ..., by)` and words
the answer. A value an action cannot take raises Refused (what is wrong and what is accepted), with
nothing changed.

`a` is the resident Actions (app/composition.py): what the actions act on. `by` names the channel an
action came from: "service", "keypad", "headend" (inside an authenticated envelope), "mqtt" (a bare
token), "sms:<number>". It decides a token's lockout and goes into the event. This module, token
decoding and remote settings are loaded for one call only (util.call): large and rare."""
from prepaid.core import month_name
from relay.supply import REMOTE, names as reason_names
from util import Refused, call

TIME_MIN = 1577836800        # 2020-01-01: the one bound on a clock set from outside, on every channel
TIME_MAX = 4102444800        # 2100-01-01
TOPUP_MAX = 100000000        # credit units in one top-up
REF_MAX = 32                 # characters of a top-up reference
DIGITS_MAX = 40              # characters of a token
DEBT_MAX = 100000000         # minor units of arrears in one load (1,000,000.00)


# -- views ---------------------------------------------------------------------------------------
def credit(a, by):
    """The prepaid state: credit, debt, emergency, supply and why, tamper, commits."""
    p = a.prepaid
    led = p.ledger
    s = p.supply
    return {"mode": p.schedule.mode, "credit": led.credit, "debt": led.debt, "arrears": led.arrears,
            "emergency_owed": led.em_owed, "emergency": led.emergency_state(),
            "topups": led.topups, "debited": led.debited, "opening": led.opening,
            "cleared": led.cleared, "check": led.check(), "days_left": p.policy.days_left(led.credit),
            "supply": p.supply_state(), "reasons": reason_names(s.reasons()), "awaiting_key": s.awaiting_key,
            "relay_failed": bool(p.relay.failed), "commits": p.commits, "energy_commits": p.hot_commits,
            "tamper": p.tamper.names()}


def statement(a, by):
    """The last closed month (closed by the prepaid core at the month's turn) and the month so far."""
    p = a.prepaid
    led = p.ledger
    out = {"last": None, "current": None}
    st = p.statement
    if st:
        out["last"] = {"month": month_name(st[0]), "import_wh": st[1], "cost": st[2], "topups": st[3],
                       "credit": st[4]}
    mo = p.month
    if mo:
        out["current"] = {"month": month_name(mo[0]), "import_wh": p.meter.import_wh - mo[1],
                          "cost": led.debited - mo[2], "topups": led.topups - mo[3], "credit": led.credit}
    return out


# -- credit --------------------------------------------------------------------------------------
def topup(a, amount, ref, by):
    """Credit `amount` once per `ref` (a retried top-up is answered, never applied twice)."""
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= TOPUP_MAX:
        raise Refused("amount must be an integer 1..%d (credit units)" % TOPUP_MAX)
    if not isinstance(ref, str) or not 0 < len(ref) <= REF_MAX:
        raise Refused("ref must be a string of 1..%d characters (it makes the top-up idempotent)" % REF_MAX)
    p = a.prepaid
    out = p.topup(amount, ref)      # the split: emergency, debt, credit shares
    out["balance"] = p.ledger.credit
    if out["applied"]:
        _topup_event(a, by, None, amount, ref, amount=amount, applied=True)
    else:
        a.emit("topup", {"ref": ref, "amount": amount, "applied": False, "by": by})
    return out


def load_debt(a, amount, ref, share_bp, by):
    """Post-paid arrears loaded as debt, once per `ref` (a redelivered load is answered, never loaded
    twice), recovered from later top-ups by the arrears share (`share_bp`, 1..9000; None keeps the
    meter's). Debt never opens the supply: arrears are recovered, never a reason for a cut-off."""
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= DEBT_MAX:
        raise Refused("amount must be an integer 1..%d (minor units)" % DEBT_MAX)
    if not isinstance(ref, str) or not 0 < len(ref) <= REF_MAX:
        raise Refused("ref must be a string of 1..%d characters (it makes the load idempotent)" % REF_MAX)
    if share_bp is not None and (not isinstance(share_bp, int) or isinstance(share_bp, bool)
                                 or not 0 < share_bp <= 9000):
        raise Refused("share_bp must be an integer 1..9000 (share of each top-up, in 1/100 %)")
    p = a.prepaid
    led = p.ledger
    if p.schedule.mode != "money":
        raise Refused("this meter keeps its credit in kWh: arrears are money")
    if led.debt + amount > 10 * DEBT_MAX:
        raise Refused("the debt would pass %d (minor units): refused" % (10 * DEBT_MAX))
    done = p.load_debt(amount, ref, share_bp)
    d = {"amount": amount, "ref": ref, "debt": led.debt, "arrears": led.arrears, "applied": done, "by": by}
    a.emit("debt_loaded", d)
    return {"applied": done, "duplicate": not done, "debt": led.debt, "arrears": led.arrears, "credit": led.credit}


def _topup_event(a, by, tid, amt, ref, **more):
    """`topup`, one per credit whatever the channel, with what the head-end reconciles against its
    vends (host_tools/headend/topups.py): channel, STS TID, amount and its unit, ref, topups register."""
    p = a.prepaid
    ch = by if by in ("keypad", "service", "opaygo") else "remote" if by in ("headend", "mqtt") else \
        "sms" if by[:3] == "sms" else "other"
    d = {"ch": ch, "tid": tid, "amt": amt, "unit": "wh" if p.schedule.mode == "kwh" else "minor", "ref": ref,
         "reg": p.ledger.topups, "by": by if by[:4] != "sms:" else "sms"}
    d.update(more)
    a.emit("topup", d)


def token(a, digits, by):
    """Decode and apply a token; its credit goes through the prepaid core's one credit path
    (Prepaid.add_credit inside Prepaid.change), with the same duplicate check as a top-up."""
    if not isinstance(digits, str) or not 0 < len(digits) <= DIGITS_MAX:
        raise Refused("digits must be the token as a string of 1..%d characters" % DIGITS_MAX)
    import gc
    gc.collect()      # the token code is loaded now and dropped after: give it one free stretch
    out = call("tokens.apply", "apply_token", a.prepaid, a.store, a.clock, a.emit, a.token_locks,
               digits, by, tree="tokens")
    split = out.get("split")
    if out.get("result") == "accepted" and split:
        ref = split.get("ref") or ""
        tid = int(ref[4:]) if ref[:4] == "sts:" and ref[4:].isdigit() else None
        _topup_event(a, "opaygo" if out.get("system") == "opaygo" and by == "keypad" else by, tid,
                     split["amount"], ref)
    return out


def emergency(a, by):
    """Emergency credit, when the policy allows it (the ledger reports `emergency_taken`)."""
    p = a.prepaid
    ok, why = p.take_emergency()
    led = p.ledger
    return {"granted": ok, "reason": why, "credit": led.credit, "emergency_owed": led.em_owed}


# -- supply --------------------------------------------------------------------------------------
def relay(a, opened, by):
    """Remote disconnect (`opened` True) or its release (False); committed."""
    if not isinstance(opened, bool):
        raise Refused("open must be true (remote disconnect) or false (release it)")
    p = a.prepaid
    s = p.supply
    if opened:
        s.set_reason(REMOTE)
    else:
        s.clear_reason(REMOTE)
    s.poll(a.clock.ticks_ms())
    p.commit()
    a.emit("remote_relay", {"open": opened, "by": by})
    return {"supply": p.supply_state(), "reasons": reason_names(s.reasons())}


def reconnect(a, by):
    """The customer's reconnect key (key mode): closes the supply if nothing holds it open."""
    p = a.prepaid
    done = bool(p.supply.key_reconnect())
    p.supply.poll(a.clock.ticks_ms())
    p.commit()
    a.emit("reconnect", {"done": done, "by": by})
    return {"reconnected": done, "supply": p.supply_state()}


def clear_tamper(a, by):
    """Re-arm every tamper kind (and release the supply if tamper held it open); committed."""
    p = a.prepaid
    was = p.tamper.names()
    p.tamper.clear()
    p.supply.poll(a.clock.ticks_ms())
    p.commit()
    a.emit("tamper_cleared", {"was": was, "by": by})
    return {"cleared": was, "supply": p.supply_state()}


# -- clock and settings --------------------------------------------------------------------------
def set_time(a, unix, by):
    """Set the clock from a trusted source (a privileged service request, a signed command)."""
    if not isinstance(unix, int) or isinstance(unix, bool) or not TIME_MIN <= unix <= TIME_MAX:
        raise Refused("unix must be seconds since 1970 between 2020 and 2100")
    clock = a.clock
    was = clock.time() if clock.time_valid else None
    clock.set_time(unix)
    a.emit("time_set", {"unix": unix, "source": by, "drift": None if was is None else unix - was})
    return {"time": clock.time(), "time_valid": True}


def set_config(a, settings, by):
    """New remote settings, checked in full, written atomically and in force at once
    (app/setconfig.py); `config_changed` is its event."""
    applied = call("app.setconfig", "set_config", a.settings_path, a.settings, a.prepaid, settings, a.emit)
    for fn in a.settings_listeners:
        fn(a.settings)
    return {"applied": applied}
