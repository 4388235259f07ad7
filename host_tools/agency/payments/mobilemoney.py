"""A mobile-money provider over HTTP (the simulated one in `simprovider` speaks exactly this): a bearer
API key for our requests, HMAC-signed callbacks for theirs."""
import httpx

from host_tools.agency.payments import provider as P


class MobileMoney(P.Provider):
    name = "mobilemoney"

    def __init__(self, base_url, api_key, callback_secret, timeout=5.0):
        self.base = base_url.rstrip("/")
        self.secret = callback_secret
        self.client = httpx.Client(timeout=timeout, headers={"Authorization": "Bearer " + api_key})

    def _call(self, method, path, **kw):
        try:
            r = self.client.request(method, self.base + path, **kw)
        except httpx.HTTPError as e:
            raise P.ProviderError("provider unreachable: %s" % e) from None
        if r.status_code >= 500:
            raise P.ProviderError("provider answered %d" % r.status_code)
        if r.status_code != 200:
            raise P.ProviderError("provider refused (%d): %s" % (r.status_code, r.text[:200]), retry=False)
        return r.json()

    def create(self, reference, amount_minor, currency, callback_url, return_url):
        return self._call("POST", "/v1/payments", headers={"Idempotency-Key": reference},
                          json={"reference": reference, "amount": amount_minor, "currency": currency,
                                "callback_url": callback_url, "return_url": return_url})

    def parse_callback(self, headers, body):
        return P.verify(self.secret, headers.get(P.SIGNATURE_HEADER), body)

    def status(self, provider_ref):
        return self._call("GET", "/v1/payments/" + provider_ref)

    def refund(self, provider_ref, amount_minor):
        return self._call("POST", "/v1/payments/%s/refund" % provider_ref, json={"amount": amount_minor})
