"""Sign-in machinery: one-time codes (hashed, expiring, limited attempts, rate limited per address and per
client address), operator passwords (argon2), sessions (random token, only its hash stored) with a CSRF
token each, and the audit log of operator actions."""
import hashlib
import hmac
import json
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "agent", "admin")
_hasher = PasswordHasher()   # argon2id with the library's recommended parameters


class Refused(Exception):
    """A sign-in step refused; the message is for the person (a phrase key or plain text)."""


def _h(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _code_hash(secret, address, code):
    return hmac.new(secret.encode(), ("%s|%s" % (address, code)).encode(), hashlib.sha256).hexdigest()


# -- one-time codes -------------------------------------------------------------------------------
def issue_otp(store, settings, purpose, address, ip, customer_id=None, field=None):
    """A new 6-digit code for `address` (phone, e-mail, WhatsApp number); returns the code to send.
    Refused past the hourly limits per address and per client address."""
    now = settings.clock()
    hour = now - 3600
    n_addr = store.q1("SELECT COUNT(*) AS n FROM otp WHERE address=? AND created>?", (address, hour))["n"]
    if n_addr >= settings.otp_per_address_per_hour:
        raise Refused("too many codes for this number: try again in an hour")
    n_ip = store.q1("SELECT COUNT(*) AS n FROM otp WHERE ip=? AND created>?", (ip, hour))["n"]
    if n_ip >= settings.otp_per_ip_per_hour:
        raise Refused("too many codes from this address: try again in an hour")
    code = "%06d" % secrets.randbelow(1_000_000)
    with store.tx() as db:
        # a new code replaces any earlier one for the same purpose and address
        db.execute("UPDATE otp SET used=1 WHERE address=? AND purpose=? AND used=0", (address, purpose))
        db.execute("INSERT INTO otp (purpose, address, customer_id, field, code_hash, created, expires, ip)"
                   " VALUES (?,?,?,?,?,?,?,?)",
                   (purpose, address, customer_id, field, _code_hash(settings.secret, address, code), now,
                    now + settings.otp_ttl_s, ip))
    return code


def check_otp(store, settings, purpose, address, code):
    """The otp row when `code` is the live code for address; Refused (expired, wrong, too many tries)."""
    now = settings.clock()
    row = store.q1("SELECT * FROM otp WHERE address=? AND purpose=? AND used=0 ORDER BY id DESC LIMIT 1",
                   (address, purpose))
    if row is None:
        raise Refused("no code is waiting for this number: ask for a new one")
    if row["expires"] < now:
        raise Refused("this code has expired: ask for a new one")
    if row["attempts"] >= settings.otp_max_attempts:
        raise Refused("too many wrong codes: ask for a new one")
    code = (code or "").strip()
    ok = code.isdigit() and hmac.compare_digest(row["code_hash"], _code_hash(settings.secret, address, code))
    with store.tx() as db:
        if ok:
            n = db.execute("UPDATE otp SET used=1 WHERE id=? AND used=0", (row["id"],)).rowcount
            ok = n == 1   # used once only, even by two requests at the same time
        else:
            db.execute("UPDATE otp SET attempts=attempts+1 WHERE id=?", (row["id"],))
    if not ok:
        left = settings.otp_max_attempts - row["attempts"] - 1
        raise Refused("wrong code (%d tries left)" % max(left, 0))
    return row


# -- operator passwords -----------------------------------------------------------------------------
def hash_password(password):
    return _hasher.hash(password)


def add_operator(store, username, password, role, now):
    if role not in ROLES:
        raise ValueError("role must be one of " + ", ".join(ROLES))
    if not username or len(password) < 8:
        raise ValueError("a user name and a password of at least 8 characters are needed")
    with store.tx() as db:
        db.execute("INSERT INTO operators (username, password_hash, role, created) VALUES (?,?,?,?) "
                   "ON CONFLICT (username) DO UPDATE SET password_hash=excluded.password_hash, role=excluded.role",
                   (username, hash_password(password), role, now))
    return store.q1("SELECT * FROM operators WHERE username=?", (username,))


def check_operator(store, settings, username, password, ip):
    """The operator row for a right password; Refused otherwise (rate limited per user name)."""
    now = settings.clock()
    fails = store.q1("SELECT COUNT(*) AS n FROM signin_failures WHERE who=? AND at>?",
                     ("op:" + username, now - 900))["n"]
    if fails >= settings.signin_failures_per_15min:
        raise Refused("too many failed sign-ins for this account: wait 15 minutes")
    row = store.q1("SELECT * FROM operators WHERE username=? AND disabled=0", (username,))
    ok = False
    if row is not None:
        try:
            ok = _hasher.verify(row["password_hash"], password or "")
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok:
        with store.tx() as db:
            db.execute("INSERT INTO signin_failures (who, ip, at) VALUES (?,?,?)", ("op:" + username, ip, now))
        raise Refused("wrong user name or password")
    return row


# -- sessions ---------------------------------------------------------------------------------------
def open_session(store, settings, kind, subject_id, ip):
    """A new session; returns (cookie token, csrf token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = settings.clock()
    with store.tx() as db:
        db.execute("INSERT INTO sessions (token_hash, kind, subject_id, csrf, created, expires, ip) VALUES "
                   "(?,?,?,?,?,?,?)", (_h(token), kind, subject_id, csrf, now, now + settings.session_ttl_s, ip))
    return token, csrf


def session(store, settings, token, kind):
    if not token:
        return None
    row = store.q1("SELECT * FROM sessions WHERE token_hash=? AND kind=?", (_h(token), kind))
    if row is None or row["expires"] < settings.clock():
        return None
    return row


def close_session(store, token):
    with store.tx() as db:
        db.execute("DELETE FROM sessions WHERE token_hash=?", (_h(token or ""),))


# -- audit ------------------------------------------------------------------------------------------
def audit(store, settings, operator, action, target=None, detail=None, ip=None, db=None):
    args = (settings.clock(), operator["id"] if operator else None, operator["username"] if operator else "-",
            action, target, json.dumps(detail or {}, sort_keys=True), ip)
    sql = "INSERT INTO audit (at, operator_id, username, action, target, detail, ip) VALUES (?,?,?,?,?,?,?)"
    if db is not None:
        db.execute(sql, args)
    else:
        with store.tx() as d:
            d.execute(sql, args)
