"""Vending: an STS token for one meter with a TID never used before for that meter and key, recorded
with a downlink message (the outbox) in one transaction. Decoder keys come from DKGA04 inside the
PKCS#11 module that holds the utility's vending key (host_tools.keys), over the meter's SGC/TI/KRN;
token encoding is host_tools/vend's."""
import calendar
import json
import secrets

from host_tools.errors import UsageError
from host_tools.keys import vendingkey
from host_tools.vend import dkga04, sts_encode

# Base date 93's 24-bit minute counter ran out in November 2024, so new keys use base date 14.
DEFAULT_BASE_DATE = "14"


def load_keystore(path=None):
    """The vending settings and the vending key's handle in the secure module. `path` (optional) is a
    JSON file {"sgc": N, "kt": 2, "base_date": "14", "hsm": {"module", "token", "slot", "key"}} with no
    secret in it; the module, token and key are also chosen by $METERKIT_PKCS11_MODULE, $METERKIT_HSM_TOKEN,
    $METERKIT_HSM_SLOT, $METERKIT_HSM_KEY, and the PIN comes from $METERKIT_HSM_PIN or a prompt."""
    ks = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                ks = json.load(f)
        except OSError as e:
            raise UsageError(f"cannot read keystore {path}: {e.strerror}",
                             hint="give --keystore the vending settings file (JSON: kt, base_date, hsm)") from None
        except ValueError:
            raise UsageError(f"keystore {path} is not JSON", hint='expected {"kt": 2, "base_date": "14"}') from None
        if not isinstance(ks, dict):
            raise UsageError(f"keystore {path} must be a JSON object", hint='expected {"kt": 2, "base_date": "14"}')
    ks["vending_key"] = vendingkey.from_keystore(ks, "keystore %s" % path if path else "the vending settings")
    ks.setdefault("kt", 2)
    if ks["kt"] not in dkga04.KEY_TYPES:
        raise UsageError(f"keystore kt {ks['kt']!r} must be 0..3", hint="2 (DUTK) for utility keys")
    ks["base_date"] = str(ks.get("base_date", DEFAULT_BASE_DATE))
    if ks["base_date"] not in dkga04.BASE_DATES:
        raise UsageError(f"keystore base_date {ks['base_date']!r} unknown", hint='"93", "14" or "35"')
    return ks


def decoder_key(keystore, meter):
    """The meter's STS decoder key, derived inside the module (DKGA04)."""
    return keystore["vending_key"].decoder_key(meter["sgc"], meter["ti"], meter["krn"], keystore["kt"],
                                               meter["pan"], str(keystore["base_date"]))


def quantity(kwh=None, amount=None):
    """(what, tenths or 0.00001 units, STS subclass) from exactly one of kwh / amount; checks it is sane."""
    if (kwh is None) == (amount is None):
        raise UsageError("give exactly one of --kwh or --amount", hint="e.g. --kwh 12.5")
    if kwh is not None:
        q = sts_encode.tenths(kwh, "kWh")
        what, sub = "kwh", 0
    else:
        q = sts_encode.currency_units(amount)
        what, sub = "currency", 4
    if q <= 0:
        raise UsageError(f"a top-up of {kwh if kwh is not None else amount} is not possible",
                         hint="the amount must be positive")
    sts_encode.encode_amount(q, what)  # raises UsageError past the largest STS amount, in the token's unit
    return what, q, sub


def check_credit_mode(store, meter_id, what):
    """Refuse a token the meter would refuse for its credit mode: a kWh token for a meter that keeps
    money credit, a currency token for one that keeps kWh. The mode is the one the meter itself
    reports in its readings (`mode`); a meter that never said is given the benefit of the doubt."""
    mode = (store.last_reading(meter_id) or {}).get("mode")
    if mode == "money" and what == "kwh":
        raise UsageError(f"meter {meter_id} keeps its credit in money: a kWh token would be refused",
                         hint="vend money instead: --amount X (currency units)")
    if mode == "kwh" and what == "currency":
        raise UsageError(f"meter {meter_id} keeps its credit in kWh: a currency token would be refused",
                         hint="vend energy instead: --kwh X")


def _msg_id(prefix, rng):
    return prefix + ("%012x" % rng.getrandbits(48) if rng is not None else secrets.token_hex(6))


def vend_topup(store, keystore, meter_id, kwh=None, amount=None, now=None, rng=None, request_key=None,
               msg_id=None):
    """Issue and queue one credit token; returns {"msg_id", "token", "tid", ...}. TIDs are strictly
    increasing per meter and key: max(now in minutes since the key's base date, last TID + 1).
    `rng` (a random.Random) makes the message id and the token's random bits reproducible (scenarios);
    by default they come from the system's secure source.

    Idempotency, one request, one vend, ever: `request_key` (a payment reference, a retried HTTP
    request) or `msg_id` (the agency passes one per payment; the outbox's primary key makes a second
    token for it impossible even from two processes at once). A second call with the same key or id
    for the same meter vends nothing and returns the first vend with `"repeat": True` (and
    `"existing": True`)."""
    meter = store.meter(meter_id)
    what, q, sub = quantity(kwh, amount)
    check_credit_mode(store, meter_id, what)
    key = decoder_key(keystore, meter)
    now = store.clock() if now is None else now
    base = calendar.timegm((dkga04.BASE_DATES[keystore["base_date"]], 1, 1, 0, 0, 0))
    minute = int(now - base) // 60
    msg_id = msg_id or _msg_id("t-", rng)
    if request_key is not None and (not isinstance(request_key, str) or not 0 < len(request_key) <= 128):
        raise UsageError("a request key is 1..128 characters", hint="e.g. the payment's reference")
    with store.tx() as db:
        # the meter's row lock serialises its vends (PostgreSQL; SQLite has one writer): TIDs never collide
        db.execute("SELECT meter_id FROM meters WHERE meter_id=? FOR UPDATE", (meter_id,))
        old = db.execute("SELECT * FROM vends WHERE msg_id=?", (msg_id,)).fetchone()
        if old is None and request_key is not None:
            old = db.execute("SELECT * FROM vends WHERE meter_id=? AND request_key=?", (meter_id, request_key)).fetchone()
        if old is not None:
            if old["meter_id"] != meter_id:
                raise UsageError(f"message id {msg_id} was used for meter {old['meter_id']}",
                                 hint="an idempotency key belongs to one meter")
            return {"msg_id": old["msg_id"], "meter": meter_id, "token": old["token"], "tid": old["tid"],
                    "what": old["what"], "quantity": old["quantity"], "repeat": True, "existing": True}
        row = db.execute("SELECT MAX(tid) AS t FROM vends WHERE meter_id=? AND sgc=? AND ti=? AND krn=?",
                         (meter_id, meter["sgc"], meter["ti"], meter["krn"])).fetchone()
        tid = max(minute, (row["t"] + 1) if row["t"] is not None else 0)
        f = sts_encode.build(key, 0, sub, (rng.getrandbits(4) if rng is not None else sts_encode.random_rnd()), tid, sts_encode.encode_amount(q, what))
        db.execute("INSERT INTO vends (meter_id, sgc, ti, krn, tid, token, what, quantity, msg_id, created,"
                   " request_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (meter_id, meter["sgc"], meter["ti"], meter["krn"], tid, f["token"], what, q, msg_id, now,
                    request_key))
        body = {"t": "token", "id": msg_id, "token": f["token"]}
        db.execute("INSERT INTO messages (msg_id, meter_id, kind, body, created) VALUES (?,?,?,?,?)",
                   (msg_id, meter_id, "token", json.dumps(body, sort_keys=True), now))
        store.log(meter_id, "headend", "vended", {"msg_id": msg_id, "tid": tid, "what": what, "quantity": q}, db=db)
    return {"msg_id": msg_id, "meter": meter_id, "token": f["token"], "tid": tid, "what": what, "quantity": q,
            "repeat": False, "existing": False}


def queue_command(store, meter_id, cmd, args=None, now=None, rng=None):
    """Queue a signed management command; returns its message id."""
    from host_tools.headend.commandargs import check
    args = check(cmd, args)                 # malformed arguments are refused, nothing queued
    store.meter(meter_id)
    now = store.clock() if now is None else now
    msg_id = _msg_id("c-", rng)
    body = {"t": "cmd", "id": msg_id, "cmd": cmd, "args": args or {}}
    with store.tx() as db:
        db.execute("INSERT INTO messages (msg_id, meter_id, kind, body, created) VALUES (?,?,?,?,?)",
                   (msg_id, meter_id, "cmd", json.dumps(body, sort_keys=True), now))
        store.log(meter_id, "headend", "command_queued", {"msg_id": msg_id, "cmd": cmd}, db=db)
    return msg_id
