"""Challenge-response for privileged service commands once the meter has left factory mode: the meter
gives a fresh nonce (board RNG), the host answers HMAC-SHA-256(service key, nonce), and a privileged
session runs for `session.SESSION_MS` of board clock or until the next challenge. Wrong MACs are
counted, reported as events and rate-limited. Imported per request by `provision.commands`, then
dropped; the state is in `provision.session`.

Why the back-off lives in RAM: the MAC is 256 bits, so guessing is hopeless anyway; the limit bounds
event and log noise, and persisting every failure would let anyone wear the flash out."""
from binascii import hexlify, unhexlify

from micropython import const

from comms.auth import equal, hmac_sha256  # constant time: the reply's timing must not reveal a MAC prefix
from provision import identity as _id
from provision.session import SESSION_MS

_NONCE_BYTES = const(16)
_NONCE_LIFE_MS = const(60000)       # an unanswered challenge goes stale
_FREE_FAILS = const(3)              # wrong MACs allowed before the back-off starts
_BACKOFF_MS = const(10000)          # first back-off; doubles per further failure
_BACKOFF_MAX_MS = const(3600000)    # capped at an hour (well inside the ticks_diff range)


def challenge(s):
    """A fresh nonce; ends any session (a new challenge means a new client)."""
    s.opened_at = None
    s.nonce = s.random.bytes(_NONCE_BYTES)
    s.nonce_at = s.clock.ticks_ms()
    return {"nonce": hexlify(s.nonce).decode(), "valid_s": _NONCE_LIFE_MS // 1000}


def answer(s, key, mac_hex):
    """Check the host's MAC of the pending nonce under `key` (None: not provisioned)."""
    wait = s.left_ms(s.locked_at, s.locked_ms)
    if wait:
        raise ValueError("too many wrong MACs: wait %d s, then ask auth_challenge again" % ((wait + 999) // 1000))
    if key is None:
        raise ValueError("not provisioned: there is no service key yet")
    nonce = s.nonce
    s.nonce = None  # single use, right or wrong: a wrong answer never gets a second try
    if nonce is None or not s.left_ms(s.nonce_at, _NONCE_LIFE_MS):
        raise ValueError("no fresh challenge: ask auth_challenge first")
    try:
        got = unhexlify(mac_hex)
    except (ValueError, TypeError):
        got = b""
    if not equal(got, hmac_sha256(key, nonce)):
        s.fails += 1
        s.emit("auth_failed", {"fails": s.fails})
        if s.fails >= _FREE_FAILS:
            ms = _BACKOFF_MS << min(s.fails - _FREE_FAILS, 9)
            s.locked_ms = ms if ms < _BACKOFF_MAX_MS else _BACKOFF_MAX_MS
            s.locked_at = s.clock.ticks_ms()
            s.emit("auth_locked", {"s": s.locked_ms // 1000})
        raise ValueError("wrong MAC (%d in a row)" % s.fails)
    s.fails = 0
    s.opened_at = s.clock.ticks_ms()
    s.emit("auth_ok", None)
    return {"session_s": SESSION_MS // 1000}


def cmd_auth_challenge(pc, req):
    return challenge(pc.session)


def cmd_auth(pc, req):
    keys = _id.keys_or_refuse(pc.store) if pc.provisioned else None
    return answer(pc.session, keys["service_key"] if keys else None, req.get("mac", ""))


def cmd_auth_end(pc, req):
    pc.session.opened_at = None
    return {"session_s": 0}
