"""A token on the running meter: decode it with the meter's keys and replay state, apply what it asks
to the prepaid core, and commit the ledger and the replay state in ONE atomic step, so a power cut
leaves the token either applied and recorded, or neither. Loaded only while a token is handled.

Units: STS electricity tokens carry 0.1 kWh (credit in kWh mode is Wh: x100); currency tokens carry
0.00001 of the base unit, converted to minor units rounding down (the rest is reported in the
result, never silently kept or invented)."""
from binascii import hexlify, unhexlify
import hashlib

from tokens.decoder import ACCEPTED, KEY_CHANGE_WAITING, CRC_ERROR, FORMAT_ERROR, KEYPAD, TokenDecoder
from tokens.lockout import OPAYGO_CAP_S, OPAYGO_FIRST_S, Lockout
from store.records import StoreMissing

RECORD = "tokens"
HEADEND = "headend"       # inside an authenticated head-end envelope: never counts
LOCAL = ("keypad", "service")   # typed at the meter: the keypad's persisted lockout
_SOURCES_MAX = 8          # RAM lockouts kept (SMS senders, unauthenticated deliveries)


def _fingerprint(key):
    return hexlify(hashlib.sha256(key).digest()[:8]).decode() if key else ""


def _keys(store):
    try:
        from util import once
        return once("provision.identity").load_keys(store)      # not kept resident
    except ImportError:
        return None


def _opaygo(keys):
    if not keys or not keys.get("opaygo_key"):
        return None
    from tokens.opaygo import OpenPaygo
    # No 4 KB chain table on the meter: the decoder's kept chain positions bound the common case.
    return OpenPaygo(unhexlify(keys["opaygo_key"]), keys["opaygo_starting_code"], table=False)


def decoder_for(prepaid, store, clock, emit):
    keys = _keys(store)
    mode = "money" if prepaid.schedule.mode == "money" else "energy"
    if keys:
        op = _opaygo(keys)
        sched = {} if op is None else {"lockout_first_s": OPAYGO_FIRST_S, "lockout_cap_s": OPAYGO_CAP_S}
        dec = TokenDecoder(clock, decoder_key=keys["sts_key"], ken=keys.get("ken", 255),
                           krn=keys.get("krn", 1), kt=keys.get("kt", 2), ti=keys.get("ti", 1),
                           opaygo=op, mode=mode, **sched)
        fp = _fingerprint(keys["sts_key"])
    else:
        dec = TokenDecoder(clock, mode=mode)
        fp = ""
    saved = None
    if store is not None:
        try:
            saved = store.load(RECORD)
        except StoreMissing:
            pass
        except MemoryError:
            raise      # never decode a token against a replay state that was not read
        except Exception as e:
            emit("token_state_unreadable", {"error": type(e).__name__})
    try:
        if saved:
            key = dec.decoder_key
            ids = (dec.ken, dec.krn, dec.kt, dec.ti)
            dec.load_state(unhexlify(saved["s"]))
            if saved.get("pk") != fp:
                # The meter was provisioned again with a new key: keep the replay and lockout state,
                # but the provisioned key is the one in force.
                dec.set_key(key)
                dec.ken, dec.krn, dec.kt, dec.ti = ids
            return dec, fp
    except (ValueError, KeyError, TypeError) as e:
        emit("token_state_unreadable", {"error": type(e).__name__})
    # No replay state could be read: start from the TIDs the prepaid core credited (its refs are
    # committed with every credit), so a token credited before is never credited again.
    for ref in prepaid.refs:
        if ref.startswith("sts:"):
            tid = int(ref[4:])
            if dec.tids.check(tid) == 0:
                dec.tids.record(tid)
    return dec, fp


def _record(dec, fp):
    return {"s": hexlify(dec.state_bytes()).decode(), "pk": fp}


def _credit(p, amount, ref, out):
    split = p.add_credit(amount, ref)
    if split is None:          # the replay state did not know it, the prepaid core's refs do
        out["result"] = "used"
        out["detail"] = "credited before (%s)" % ref
        return
    out["credit_added"] = split["credit"]
    out["split"] = split


def _apply(p, r, out):
    """What an accepted token asks, in RAM only: the caller commits it (Prepaid.change)."""
    a = r.action
    ref = "%s:%s" % (r.system, r.tid if r.tid is not None else r.value)
    if a == "credit_kwh":
        _credit(p, r.value * 100, ref, out)
    elif a == "credit_currency":
        mpm = p.schedule.minor_per_major
        minor = r.value * mpm // 100000
        out["remainder_units"] = r.value * mpm - minor * 100000
        _credit(p, minor, ref, out)
    elif a == "max_power_w":
        p.supply.limit_w = r.value
    elif a == "clear_credit":
        p.ledger.clear_credit()
    elif a == "clear_tamper":
        p.tamper.clear()
    elif a in ("test", "key_change", "key_section", "max_phase_unbalance_w"):
        pass
    elif a in ("opaygo_add", "opaygo_set"):
        unit = p.cfg.get("opaygo_unit", 100)
        amount = r.value * unit
        if a == "opaygo_set":
            amount = amount - p.ledger.credit
        if amount > 0:
            _credit(p, amount, ref, out)


def lockout_for(locks, clock, dec, source):
    """The lockout a token from `source` counts on: KEYPAD for entries at the meter, None for tokens
    the head-end sent inside an authenticated envelope, else one per source in RAM (an SMS sender,
    unauthenticated MQTT), kept in `locks` (the app's Actions holds them while the meter runs). Lost at a
    reboot, on purpose: no flash write per junk token, and a remote sender cannot reboot the meter."""
    if source in LOCAL:
        return KEYPAD
    if source == HEADEND:
        return None
    lk = locks.get(source)
    if lk is None:
        if len(locks) >= _SOURCES_MAX:
            # Forget one that is not locked (or, if all are, any): the table stays bounded.
            for k in locks:
                if not locks[k].locked():
                    break
            locks.pop(k)
        keypad = dec.lockout
        lk = locks[source] = Lockout(clock, keypad.cap_ms // 1000, keypad.first_ms // 1000)
    return lk


def apply_token(prepaid, store, clock, emit, locks, digits, source="service"):
    """Decode `digits` from `source` and apply it: the result, what it added, the credit after."""
    dec, fp = decoder_for(prepaid, store, clock, emit)
    lockout = lockout_for(locks, clock, dec, source)
    r = dec.check(digits, lockout)
    out = {"result": r.result, "system": r.system, "action": r.action, "value": r.value, "unit": r.unit,
           "detail": r.detail}
    if r.remaining_ms:
        out["locked_s"] = (r.remaining_ms + 999) // 1000
    if r.result in (ACCEPTED, KEY_CHANGE_WAITING):
        def change():
            if r.result == ACCEPTED:
                _apply(prepaid, r, out)
            dec.commit(r)
            return {RECORD: _record(dec, fp)}
        # Ledger, refs and replay state together: applied and recorded, or neither (RAM included).
        prepaid.change(change)
    elif r.result in (CRC_ERROR, FORMAT_ERROR) and lockout is KEYPAD and store is not None:
        store.commit(RECORD, _record(dec, fp))     # the keypad's lockout count survives a reboot
    # out["result"], not r.result: committing the result marks the object itself "used".
    emit("token", {"result": out["result"], "source": source if source[:4] != "sms:" else "sms"})
    out["credit"] = prepaid.ledger.credit
    return out
