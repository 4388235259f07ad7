"""The mobile-money provider in virtual time, behind the agency's one provider interface
(host_tools/agency/payments/provider.py): the customer approves or declines on the phone after a while,
and the provider's signed callbacks come prompt, late, twice, reordered (a stale `pending` after the
final one) or never, as `simprovider.SimProvider` does over HTTP in wall time. Its own books (what money
it took, what it refunded) are the reference the chaos run checks the agency's and the meters' against.

Why not the HTTP provider: its callbacks are timed by the wall clock, so a seeded run would not be
reproducible; this one is stepped by the chaos loop at the world's virtual time."""
import heapq
import json

from host_tools.agency.payments.provider import SIGNATURE_HEADER, Provider, ProviderError, sign, verify

CALLBACK_FAULTS = ("late", "twice", "reorder", "never")


class VirtualProvider(Provider):
    name = "mobilemoney"

    def __init__(self, rng, clock, secret="chaos-provider-secret", faults=0.3):
        self.rng, self.clock, self.secret, self.faults = rng, clock, secret, faults
        self.by_ref = {}        # provider_ref -> payment dict
        self.by_reference = {}  # merchant reference -> provider_ref
        self.queue = []         # (due_s, n, body)
        self._n = 0
        self.fault_counts = {k: 0 for k in CALLBACK_FAULTS}
        self.outage_until = 0.0  # the provider's API unreachable until then (creates and polls fail)

    # -- the interface -----------------------------------------------------------------------------
    def create(self, reference, amount_minor, currency, callback_url, return_url):
        if self.clock() < self.outage_until:
            raise ProviderError("provider unreachable")
        if reference in self.by_reference:
            p = self.by_ref[self.by_reference[reference]]
        else:
            self._n += 1
            pr = "VP%07d" % self._n
            p = {"provider_ref": pr, "reference": reference, "amount": amount_minor, "status": "pending",
                 "created": self.clock()}
            self.by_ref[pr] = p
            self.by_reference[reference] = pr
        return {"provider_ref": p["provider_ref"], "approve_url": "virtual:%s" % p["provider_ref"],
                "status": p["status"]}

    def parse_callback(self, headers, body):
        return verify(self.secret, headers.get(SIGNATURE_HEADER), body, now=self.clock())

    def status(self, provider_ref):
        if self.clock() < self.outage_until:
            raise ProviderError("provider unreachable")
        p = self.by_ref.get(provider_ref)
        if p is None:
            raise ProviderError("unknown payment %s" % provider_ref, retry=False)
        return {"status": p["status"], "provider_ref": provider_ref}

    def refund(self, provider_ref, amount_minor):
        p = self.by_ref.get(provider_ref)
        if p is None or p["status"] not in ("paid", "refunded"):
            raise ProviderError("nothing to refund for %s" % provider_ref, retry=False)
        p["status"] = "refunded"
        return {"status": "refunded"}

    # -- the customer and the callbacks ------------------------------------------------------------
    def decide(self, reference, approve):
        """The customer approves (the money is taken) or declines on the phone."""
        pr = self.by_reference.get(reference)
        if pr is None:
            return False
        p = self.by_ref[pr]
        if p["status"] != "pending":
            return False
        p["status"] = "paid" if approve else "failed"
        p["decided"] = self.clock()
        final = json.dumps({"provider_ref": pr, "reference": reference, "status": p["status"],
                            "amount": p["amount"]}, sort_keys=True).encode()
        stale = json.dumps({"provider_ref": pr, "reference": reference, "status": "pending",
                            "amount": p["amount"]}, sort_keys=True).encode()
        fault = self.rng.choice(CALLBACK_FAULTS) if self.rng.random() < self.faults else None
        if fault:
            self.fault_counts[fault] += 1
        prompt = self.rng.uniform(1, 10)
        late = self.rng.uniform(60, 1800)
        sends = {None: [(prompt, final)], "late": [(late, final)],
                 "twice": [(prompt, final), (prompt + late / 4, final)],
                 "reorder": [(prompt, final), (prompt + 2, stale)], "never": []}[fault]
        now = self.clock()
        for delay, body in sends:
            self._n += 1
            heapq.heappush(self.queue, (now + delay, self._n, body))
        return True

    def due_callbacks(self):
        """[(headers, body)] of the callbacks due now, signed at this instant."""
        out = []
        now = self.clock()
        while self.queue and self.queue[0][0] <= now:
            _, _, body = heapq.heappop(self.queue)
            out.append(({SIGNATURE_HEADER: sign(self.secret, body, t=now)}, body))
        return out

    # -- the provider's books ----------------------------------------------------------------------
    def taken(self):
        """{merchant reference: amount} of the payments whose money the provider holds (paid, not refunded)."""
        return {p["reference"]: p["amount"] for p in self.by_ref.values() if p["status"] == "paid"}

    def refunded(self):
        return {p["reference"]: p["amount"] for p in self.by_ref.values() if p["status"] == "refunded"}
