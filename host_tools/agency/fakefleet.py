"""Lightweight simulated meters for the agency's scenario and benchmark: the head-end's protocol-level
FakeMeter (envelope checks, idempotent results, STS tokens checked with the firmware's own decoder),
with a prepaid balance that accepted tokens raise, periodic readings, and a lossy link: each downlink,
and each result on its way back, is lost with probability `drop`, so the head-end has to resend."""
import random
import threading

from host_tools.headend.fakemeter import FakeMeter, FakeMeterPool


class LossyMeter(FakeMeter):
    def __init__(self, *a, drop=0.0, rng=None, credit=5000, **kw):
        super().__init__(*a, **kw)
        self.drop = drop
        self.rng = rng or random.Random(1)
        self.credit = credit          # minor units
        self.import_wh = 0
        self.lost_down = 0
        self.lost_up = 0
        self.credit_by_msg = {}       # msg id -> times its token added credit (must be 1)

    def handle_down(self, payload):
        if self.rng.random() < self.drop:
            self.lost_down += 1
            return []                 # the downlink never reached the meter
        n = len(self.credited)
        out = super().handle_down(payload)
        for msg_id, digits in self.credited[n:]:
            self.credit_by_msg[msg_id] = self.credit_by_msg.get(msg_id, 0) + 1
            if self._sts is not None:
                t = self._sts.decode(self.decoder_key, digits)
                self.credit += t.amount() // 1000     # STS currency units of 0.00001 -> minor units (1/100)
        if out and self.rng.random() < self.drop:
            self.lost_up += 1
            return []                 # acted on, but the result was lost on the way back
        return out

    def reading(self, ts):
        if self.credit > 0:
            self.import_wh += 40
            self.credit = max(0, self.credit - 20)
        return {"t": "reading", "ts": int(ts), "import_wh": self.import_wh, "export_wh": 0, "credit": self.credit,
                "debt": 0, "p_w": 480, "supply": "closed" if self.credit > 0 else "open",
                "reasons": "" if self.credit > 0 else "NO_CREDIT", "tamper": []}


class FakeFleet:
    """LossyMeters for the rows of a demo fleet, driven by FakeMeterPools on a broker; readings every
    `reading_s` seconds (wall) from a thread of their own."""

    def __init__(self, store, keystore, rows, broker_port, drop=0.0, seed=1, pools=2, reading_s=None, clock=None,
                 credits=None):
        from host_tools.headend import vending
        rng = random.Random(seed)
        credits = credits or [5000] * len(rows)
        self.meters = [LossyMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                                  vending.decoder_key(keystore, store.meter(r["meter_id"])), drop=drop,
                                  rng=random.Random(rng.random()), credit=c) for r, c in zip(rows, credits)]
        self.pools = [FakeMeterPool("127.0.0.1", broker_port, self.meters[i::pools]) for i in range(pools)]
        self.reading_s = reading_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread = None

    def start(self, timeout=120):
        got = sum(p.start(timeout=timeout) for p in self.pools)
        if self.reading_s:
            self._thread = threading.Thread(target=self._readings, daemon=True, name="fake-readings")
            self._thread.start()
        return got

    def _readings(self):
        import time
        while not self._stop.wait(self.reading_s):
            for i, pool in enumerate(self.pools):
                for fm in pool.meters:
                    topic, payload = fm.uplink(fm.reading((self.clock or time.time)()))
                    try:
                        pool.publish(fm, topic, payload)
                    except Exception:
                        pass

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        for p in self.pools:
            p.stop()


