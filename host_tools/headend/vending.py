"""Vending: an STS token for one meter with a TID never used before for that meter and key, recorded
with a downlink message (the outbox) in one transaction. Keys come from DKGA04 over the utility's
vending key (the keystore file) and the meter's SGC/TI/KRN; token encoding is host_tools/vend's."""
import calendar
import json
import secrets

from host_tools.errors import UsageError
from host_tools.vend import dkga04, sts_encode

# Base date 93's 24-bit minute counter ran out in November 2024, so new keys use base date 14.
DEFAULT_BASE_DATE = "14"


def load_keystore(path):
    """The keystore: JSON {"vending_key_hex": 40 hex, "sgc": N, "kt": 2, "base_date": "14"}."""
    try:
        with open(path, encoding="utf-8") as f:
            ks = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read keystore {path}: {e.strerror}",
                         hint="give --keystore the utility's key file (JSON with vending_key_hex)") from None
    except ValueError:
        raise UsageError(f"keystore {path} is not JSON", hint='expected {"vending_key_hex": "...", "sgc": N}') from None
    if not isinstance(ks, dict) or "vending_key_hex" not in ks:
        raise UsageError(f"keystore {path} has no vending_key_hex", hint="the 160-bit vending key as 40 hex digits")
    ks["vending_key"] = dkga04.parse_vending_key(ks["vending_key_hex"])
    ks.setdefault("kt", 2)
    ks["base_date"] = str(ks.get("base_date", DEFAULT_BASE_DATE))
    if ks["base_date"] not in dkga04.BASE_DATES:
        raise UsageError(f"keystore base_date {ks['base_date']!r} unknown", hint='"93", "14" or "35"')
    return ks


def decoder_key(keystore, meter):
    return dkga04.decoder_key(keystore["vending_key"], meter["sgc"], meter["ti"], meter["krn"],
                              keystore["kt"], meter["pan"], str(keystore["base_date"]))


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
    sts_encode.encode_amount(q)  # raises UsageError past the largest STS amount
    return what, q, sub


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
        f = sts_encode.build(key, 0, sub, (rng.getrandbits(4) if rng is not None else sts_encode.random_rnd()), tid, sts_encode.encode_amount(q))
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
