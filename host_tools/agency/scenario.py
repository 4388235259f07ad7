"""`meterkit agency scenario`: N customers buy credit over HTTP, each for their own simulated meter,
while the payment provider delays, doubles, reorders and drops its callbacks and the meters' link loses
downlinks and results. Proves the promise end to end: every paid purchase lands on its meter exactly
once, or is refunded; none is lost.

Each customer signs in with the SMS code (read from the fake SMS gateway), opens the purchase form,
submits it (one in ten twice, as an impatient thumb would: the request key makes it one purchase),
approves on the provider's page and follows the purchase page's status until "credited".

Time: the whole chain runs `speed` times faster than production: the head-end's retry (30 s doubling to
600 s), the agency's status poll (30 s) and the provider's delays are divided by it, and durations are
reported multiplied by it (simulated seconds). The meters are the head-end's lightweight protocol meters
(`fakefleet.LossyMeter`: real envelope checks and the firmware's own STS decoder), not the firmware: a
thousand firmware processes do not fit this machine; the firmware's side of exactly-once is proved by
`meterkit sim scenario remote-topups`."""
import math
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from host_tools.agency.settings import Settings
from host_tools.agency.stack import Stack, customer_phone
from host_tools.errors import DeviceError, UsageError

TOKEN_RE = re.compile(r'name="(csrf|request_key)" value="([^"]+)"')


def _p(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))]


def _broker():
    from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
    if mosquitto_path():
        return Mosquitto().start(), "mosquitto"
    from host_tools.headend.broker import EmbeddedBroker
    return EmbeddedBroker().start(), "amqtt"


class Customer:
    def __init__(self, stack, i, amount_minor, speed, rng):
        self.stack, self.i, self.amount = stack, i, amount_minor
        self.phone = customer_phone(i)
        self.speed = speed
        self.double = rng.random() < 0.1
        self.http = httpx.Client(base_url=stack.url, timeout=30.0)
        self.payment_id = None
        self.t_approved = None
        self.state = None
        self.error = None

    def _code(self):
        for _ in range(200):
            msgs = self.stack.gateways.sms_to(self.phone)
            if msgs:
                return re.search(r"\b(\d{6})\b", msgs[-1]).group(1)
            time.sleep(0.01)
        raise DeviceError("no sign-in code reached %s" % self.phone)

    def run(self, deadline):
        try:
            r = self.http.post("/signin", data={"phone": self.phone})
            assert r.status_code == 303, "sign-in: %d %s" % (r.status_code, r.text[:200])
            r = self.http.post("/signin/code", data={"phone": self.phone, "code": self._code()})
            assert r.status_code == 303 and r.headers["location"] == "/home", "code refused: %s" % r.text[:300]
            form = dict(TOKEN_RE.findall(self.http.get("/buy").text))
            data = {"csrf": form["csrf"], "request_key": form["request_key"],
                    "amount": "%d.%02d" % (self.amount // 100, self.amount % 100)}
            r = self.http.post("/buy", data=data)
            if self.double:
                r2 = self.http.post("/buy", data=data)
                assert r2.headers.get("location") == r.headers.get("location"), "a double submit made two purchases"
            approve = r.headers["location"]
            assert "/pay/" in approve, "not sent to the provider: %s" % approve
            self.t_approved = time.time()
            r = httpx.post(approve, data={"decision": "approve"}, timeout=30.0)
            back = r.headers["location"]
            self.payment_id = int(back.rsplit("/", 1)[1])
            while time.monotonic() < deadline:
                v = self.http.get("/purchases/%d/status" % self.payment_id).json()
                self.state = v["state"]
                if v["done"]:
                    break
                time.sleep(0.5 / self.speed * 10)
        except Exception as e:      # reported per customer; the scenario goes on
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.http.close()


def run(customers=20, seed=1, provider_faults=0.3, drop=0.3, speed=20.0, concurrency=16, timeout_s=600,
        log=None, progress=None):
    if not 1 <= customers <= 5000:
        raise UsageError("--customers must be 1..5000", hint="e.g. --customers 50")
    if not (0 <= provider_faults <= 1 and 0 <= drop < 1):
        raise UsageError("--provider-faults must be 0..1 and --drop 0..<1", hint="e.g. --provider-faults 0.3")
    from host_tools.agency.fakefleet import FakeFleet
    from host_tools.headend.service import HeadEnd
    say = log or (lambda text: None)
    rng = random.Random(seed)
    wall0 = time.monotonic()
    settings = Settings(otp_per_ip_per_hour=3 * customers + 10, payment_poll_after_s=30.0 / speed,
                        payment_stuck_after_s=900.0 / speed)
    stack = Stack(meters=customers, faults=provider_faults, seed=seed, settings=settings, time_scale=1.0 / speed,
                  worker_period_s=0.05)
    broker = he = fleet = None
    stop = threading.Event()
    try:
        stack.start()
        broker, broker_kind = _broker()
        he = HeadEnd(stack.store, broker.url, retry_s=30.0 / speed, retry_max_s=600.0 / speed, poll_s=0.01)
        he.start()
        threading.Thread(target=he.serve, args=(stop,), daemon=True, name="headend").start()
        fleet = FakeFleet(stack.store, stack.keystore, stack.rows, broker.port, drop=drop, seed=seed,
                          pools=4 if customers > 200 else 1)
        connected = fleet.start()
        if connected < customers:
            raise DeviceError("only %d of %d simulated meters connected to the broker" % (connected, customers))
        say("%d meters online on %s; %d customers buying" % (connected, broker_kind, customers))
        amounts = [500 + i for i in range(customers)]          # distinct, so a misplaced credit shows
        people = [Customer(stack, i, amounts[i], speed, random.Random(rng.random())) for i in range(customers)]
        deadline = time.monotonic() + timeout_s
        done = [0]

        def one(c):
            c.run(deadline)
            done[0] += 1
            if progress:
                progress(done[0], customers)
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, people))
        # settle: everything paid must end credited or refunded
        store = stack.store
        while time.monotonic() < deadline:
            n = store.q1("SELECT COUNT(*) AS n FROM payments WHERE state IN ('created','pending','paid','vended',"
                         "'refund_pending') AND paid_at IS NOT NULL")["n"]
            if n == 0:
                break
            time.sleep(0.1)
        time.sleep(10.0 / speed)    # anything delivered late would show now
        pays = [dict(r) for r in store.q("SELECT * FROM payments ORDER BY id")]
        by_msg = {}
        for fm in fleet.meters:
            for msg_id, count in fm.credit_by_msg.items():
                by_msg[msg_id] = by_msg.get(msg_id, 0) + count
        credited_once = duplicates = lost = 0
        for p in pays:
            n = by_msg.pop(p["msg_id"], 0) if p["msg_id"] else 0
            if p["paid_at"] is None:
                continue
            if n == 1 and p["state"] != "refunded":
                credited_once += 1
            elif n > 1:
                duplicates += n - 1
            elif n == 0 and p["state"] != "refunded":
                lost += 1
        duplicates += sum(by_msg.values())      # credit on a meter that matches no purchase
        # pay-to-credit: from the customer's approval on the provider's page to the meter's result
        # (both wall clock: time.time here, the head-end's done_at there), in simulated seconds
        when = {c.payment_id: c.t_approved for c in people if c.payment_id is not None and c.t_approved}
        lat = [(p["credited_at"] - when[p["id"]]) * speed for p in pays if p["credited_at"] and p["id"] in when]
        errors = [c.error for c in people if c.error]
        for e in errors[:5]:
            say("customer error: " + e)
        report = {
            "purchases": len(pays),
            "customers": customers,
            "paid": sum(1 for p in pays if p["paid_at"] is not None),
            "credited_once": credited_once,
            "duplicates": duplicates,
            "lost": lost,
            "refunded": sum(1 for p in pays if p["state"] == "refunded"),
            "failed": sum(1 for p in pays if p["state"] == "failed"),
            "customer_errors": len(errors),
            "double_submits": sum(1 for c in people if c.double),
            "p50_pay_to_credit_s": _round(_p(lat, 50)),
            "p95_pay_to_credit_s": _round(_p(lat, 95)),
            "max_pay_to_credit_s": _round(max(lat) if lat else None),
            "provider_faults": provider_faults,
            "provider_fault_counts": dict(stack.sim.fault_counts),
            "callbacks_refused": store.q1("SELECT COUNT(*) AS n FROM payment_events WHERE kind='callback_refused'")["n"],
            "status_polls": store.q1("SELECT COUNT(*) AS n FROM payment_events WHERE kind='polled'")["n"],
            "link_drop": drop,
            "downlinks_lost": sum(m.lost_down for m in fleet.meters),
            "results_lost": sum(m.lost_up for m in fleet.meters),
            "redeliveries": store.q1("SELECT COUNT(*) AS n FROM events WHERE kind='redelivery'")["n"],
            "broker": broker_kind,
            "speed": speed,
            "seed": seed,
            "wall_seconds": round(time.monotonic() - wall0, 1),
        }
        return report
    finally:
        stop.set()
        if fleet:
            fleet.stop()
        if he:
            try:
                he.stop()
            except Exception:
                pass
        if broker:
            broker.stop()
        stack.close()


def _round(v):
    return None if v is None else round(v, 2)
