"""`identity` and `key_check`: what the meter is, and proof that it holds each key. Imported per
request by `provision.commands`, then dropped.

Keys never leave the meter: `key_check` returns HMAC(HMAC(key, "meterkit key check"), challenge).
The MAC is under a key derived for this purpose, not the key itself, so the meter can never be used
as a MAC oracle for the auth nonce (service key) or for head-end messages (message key)."""
from binascii import hexlify, unhexlify

from provision import identity as _id
from comms.auth import hmac_sha256

_CHECK_LABEL = b"meterkit key check"
_CHALLENGE_MIN = 8
_CHALLENGE_MAX = 64


def key_check_mac(key, challenge):
    """What `key_check` answers (the host computes the same from the key it sent)."""
    return hmac_sha256(hmac_sha256(key, _CHECK_LABEL), challenge)


def cmd_identity(pc, req):
    ident = None
    keys = None
    if pc.provisioned:
        ident = _id.load_identity(pc.store)
        try:
            keys = _id.keys_or_refuse(pc.store)
        except _id.ProvisionError:
            keys = None
    ident = ident or {}
    out = {"meter_id": ident.get("meter_id"), "pan": ident.get("pan"), "serial": ident.get("serial"),
           "board": pc.board_name, "firmware": pc.version,
           "provisioned": pc.provisioned, "factory_mode": pc.session.factory_mode,
           "broker": ident.get("broker"), "provisioned_at": ident.get("provisioned_at"), "key_revision": None}
    if keys:
        out["key_revision"] = keys["krn"]
        out["sts"] = {"sgc": keys["sgc"], "ti": keys["ti"], "krn": keys["krn"], "kt": keys["kt"],
                      "ken": keys["ken"], "base_date": keys["base_date"]}
    return out


def cmd_key_check(pc, req):
    which = req.get("key")
    if not isinstance(which, str) or which not in _id.KEY_FIELDS:   # a list is no key (nor a dict key)
        raise _id.ProvisionError("key must be one of sts, message, service")
    try:
        challenge = unhexlify(req.get("challenge", ""))
    except (ValueError, TypeError):
        challenge = b""
    if not _CHALLENGE_MIN <= len(challenge) <= _CHALLENGE_MAX:
        raise _id.ProvisionError("challenge must be %d..%d bytes of hex" % (_CHALLENGE_MIN, _CHALLENGE_MAX))
    keys = _id.keys_or_refuse(pc.store)
    if keys is None:
        raise _id.ProvisionError("not provisioned: no keys to check")
    mac = key_check_mac(keys[_id.KEY_FIELDS[which][0]], challenge)
    return {"key": which, "mac": hexlify(mac).decode()}
