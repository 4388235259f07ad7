"""The one interface every payment provider is used through, and callback signatures.

A provider: create(reference, amount_minor, currency, callback_url, return_url) -> {"provider_ref",
"approve_url", "status"} (idempotent on `reference`: the same reference returns the same payment);
parse_callback(headers, body) -> {"provider_ref", "status", ...} or BadSignature; status(provider_ref)
-> {"status", ...}; refund(provider_ref, amount_minor) -> {"status"}. Statuses: pending, paid, failed,
refunded."""
import hashlib
import hmac
import json
import time

SIGNATURE_HEADER = "x-mm-signature"
TOLERANCE_S = 3600    # a callback signed longer ago than this is refused (a replay, not a late one)


class ProviderError(Exception):
    """The provider could not be reached or refused the request; `retry` says whether to try again."""

    def __init__(self, message, retry=True):
        super().__init__(message)
        self.retry = retry


class BadSignature(Exception):
    pass


class Provider:
    name = "abstract"

    def create(self, reference, amount_minor, currency, callback_url, return_url):
        raise NotImplementedError

    def parse_callback(self, headers, body):
        raise NotImplementedError

    def status(self, provider_ref):
        raise NotImplementedError

    def refund(self, provider_ref, amount_minor):
        raise NotImplementedError


def sign(secret, body, t=None):
    """The signature header value for a callback body (bytes): t=<unix>,v1=<hex HMAC-SHA-256 of t.body>."""
    t = int(time.time() if t is None else t)
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def verify(secret, header, body, now=None):
    """The callback's JSON when the signature is right and fresh; BadSignature (with why) otherwise."""
    try:
        parts = dict(p.split("=", 1) for p in (header or "").split(","))
        t, given = int(parts["t"]), parts["v1"]
    except (ValueError, KeyError):
        raise BadSignature("no signature or a malformed one") from None
    want = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, given):
        raise BadSignature("signature does not match")
    now = time.time() if now is None else now
    if abs(now - t) > TOLERANCE_S:
        raise BadSignature("signature timestamp %d is too far from now" % t)
    try:
        data = json.loads(body)
    except ValueError:
        raise BadSignature("signed body is not JSON") from None
    if not isinstance(data, dict) or "provider_ref" not in data or "status" not in data:
        raise BadSignature("signed body lacks provider_ref/status")
    return data
