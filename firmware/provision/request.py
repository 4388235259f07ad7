"""`provision` and `factory_lock`: checks a provision request field by field, writes the identity and
keys records in one atomic step, and leaves factory mode for good. Imported per request by
`provision.commands`, then dropped: factory-line code should not hold heap for the meter's life."""
import gc
from binascii import hexlify, unhexlify

from provision import identity as _id
from provision.identity import ProvisionError

BASE_DATES = ("93", "14", "35")


def luhn_ok(digits):
    """True when the last digit is the Luhn check digit of the others."""
    total = 0
    for i in range(len(digits)):
        d = ord(digits[len(digits) - 1 - i]) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def check_pan(pan):
    if not isinstance(pan, str) or len(pan) != 18 or not all("0" <= c <= "9" for c in pan):
        raise ProvisionError("pan must be 18 digits (IIN + meter number + Luhn digit)")
    if not luhn_ok(pan):
        raise ProvisionError("pan %s fails its Luhn check" % pan)
    return pan


def _int(req, name, lo, hi, default=None):
    v = req.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise ProvisionError("%s must be an integer %d..%d" % (name, lo, hi))
    return v


def _text(req, name, lo, hi):
    v = req.get(name)
    if not isinstance(v, str) or not (lo <= len(v) <= hi):
        raise ProvisionError("%s must be text of %d..%d characters" % (name, lo, hi))
    return v


def key_bytes(text, n, name):
    """`text` as n bytes of hex; refuses a wrong length and a key of one repeated byte (a blank)."""
    try:
        k = unhexlify(text) if isinstance(text, str) else b""
    except ValueError:
        k = b""
    if len(k) != n:
        raise ProvisionError("%s must be %d hex digits" % (name, 2 * n))
    if k == bytes((k[0],)) * n:
        raise ProvisionError("%s is a blank key (one byte repeated): generate a random one" % name)
    return k


def records_from_request(req, now):
    """(identity, keys) record values from a provision request, every field checked first."""
    pan = check_pan(req.get("pan"))
    serial = _int(req, "serial", 0, 99999999999)
    meter_id = _text(req, "meter_id", 1, 32)
    sgc = req.get("sgc")
    if isinstance(sgc, int) and not isinstance(sgc, bool):
        sgc = "%06d" % sgc
    if not isinstance(sgc, str) or not (1 <= len(sgc) <= 6) or not all("0" <= c <= "9" for c in sgc):
        raise ProvisionError("sgc must be the supply group code, up to 6 digits")
    base = req.get("base_date", "14")   # as the host tools: base date 93's TIDs ran out in November 2024
    if base not in BASE_DATES:
        raise ProvisionError("base_date must be one of 93, 14, 35")
    broker = req.get("broker")
    if not isinstance(broker, dict):
        raise ProvisionError("broker must be an object {host, port, username, password}")
    keys = {
        "sts_key": hexlify(key_bytes(req.get("sts_key"), 16, "sts_key")).decode(),
        "sgc": "%06d" % int(sgc),
        "ti": _int(req, "ti", 0, 99),
        "krn": _int(req, "krn", 1, 9),
        "kt": _int(req, "kt", 0, 3, 2),
        "ken": _int(req, "ken", 0, 255, 255),
        "base_date": base,
        "message_key": hexlify(key_bytes(req.get("message_key"), 32, "message_key")).decode(),
        "service_key": hexlify(key_bytes(req.get("service_key"), 32, "service_key")).decode(),
        "broker_password": _text(broker, "password", 8, 64),
    }
    if req.get("opaygo_key") is not None:
        # OpenPAYGO (off-grid and mini-grid operators): the device's 128-bit secret and starting code.
        keys["opaygo_key"] = hexlify(key_bytes(req.get("opaygo_key"), 16, "opaygo_key")).decode()
        keys["opaygo_starting_code"] = _int(req, "opaygo_starting_code", 0, 999999999)
    identity = {
        "meter_id": meter_id, "pan": pan, "serial": serial,
        "broker": {"host": _text(broker, "host", 1, 64), "port": _int(broker, "port", 1, 65535),
                   "username": _text(broker, "username", 1, 64)},
        "provisioned_at": now,
    }
    if broker.get("ca") is not None:
        # The utility CA (PEM): the meter reaches the broker over TLS and trusts only this CA.
        ca = _text(broker, "ca", 200, 3000)
        if not ca.startswith("-----BEGIN CERTIFICATE-----"):
            raise ProvisionError("broker ca must be a PEM certificate")
        identity["broker"]["ca"] = ca
    # The customer's phone (receipts, warnings, statements by SMS) and the utility's numbers (signed SMS
    # commands), in international form: optional.
    if req.get("customer") is not None:
        identity["customer"] = _phone(req.get("customer"), "customer")
    nums = req.get("utility_numbers")
    if nums is not None:
        if not isinstance(nums, list) or len(nums) > 4:
            raise ProvisionError("utility_numbers must be a list of up to 4 phone numbers")
        identity["utility_numbers"] = [_phone(n, "utility_numbers") for n in nums]
    return identity, keys


def _phone(v, name):
    if not isinstance(v, str) or not 8 <= len(v) <= 16 or v[0] != "+" or not all("0" <= c <= "9" for c in v[1:]):
        raise ProvisionError("%s must be a phone number like +22236000001" % name)
    return v


def cmd_provision(pc, req):
    if pc.store is None:
        raise _id.ProvisionError("no file system: cannot store keys")
    rekey = req.get("rekey") is True
    if pc.provisioned and not rekey:
        old = _id.load_identity(pc.store)
        raise _id.ProvisionError("already provisioned as PAN %s (meter id %s): send rekey true to replace "
                                 "its identity and keys" % (old.get("pan"), old.get("meter_id")))
    if not pc.session.factory_mode and not rekey:
        raise _id.ProvisionError("the meter has left factory mode: only an authenticated rekey may write keys")
    ident, keys = records_from_request(req, pc.clock.time())
    gc.collect()  # the store opens three files next; give littlefs a tidy heap
    # One atomic step: a cut leaves the old identity and keys, or both new ones, never a mix.
    recs = {_id.IDENTITY: ident, _id.KEYS: keys}
    if pc.session.factory_mode:
        # Factory mode is a record of its own from here on: once identity and keys exist, a missing
        # lock record means locked (provision.commands), so the line can still reboot before the lock.
        recs[_id.FACTORY] = {"locked": False}
    pc.store.commit_many(recs)
    pc.provisioned = True
    pc.emit("provisioned", {"krn": keys["krn"], "rekey": rekey})
    return {"provisioned": True, "rekey": rekey, "meter_id": ident["meter_id"], "pan": ident["pan"],
            "key_revision": keys["krn"]}


def cmd_factory_lock(pc, req):
    if not pc.session.factory_mode:
        return {"factory_mode": False, "already": True}
    if not pc.provisioned:
        raise _id.ProvisionError("provision first: a locked meter without a service key could never be serviced")
    pc.store.commit(_id.FACTORY, {"locked": True, "at": pc.clock.time()})
    pc.session.factory_mode = False
    pc.emit("factory_locked", None)
    return {"factory_mode": False, "already": False}
