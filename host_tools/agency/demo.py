"""`meterkit agency demo`: a small simulated fleet and everything around it on this machine. One meter
runs the real firmware under MicroPython with its modem simulated at AT level and bridged to a real
broker (the `Chain` of `meterkit sim scenario`), beside it a few lightweight protocol meters; the
head-end delivers to them; the simulated mobile-money provider, the fake SMS/WhatsApp gateways, an SMTP
server and the agency app run around it. The meters' past is a synthetic history (see history.py), their
present is what they report."""
import os
import random
import tempfile
import threading
import time

from host_tools.agency.fakefleet import FakeFleet
from host_tools.agency.history import seed_history
from host_tools.agency.settings import Settings
from host_tools.agency.stack import OPERATORS, Stack, customer_phone
from host_tools.headend.demo import make_fleet
from host_tools.lifecycle import Managed

DEMO_SPEED = 5.0     # the firmware meter's virtual seconds per wall second


class DemoWorld(Managed):
    def __init__(self, fake_meters=4, host="127.0.0.1", port=None, speed=DEMO_SPEED, on_sms=None, history=True,
                 workdir=None):
        self.fake_meters, self.host, self.port, self.speed = fake_meters, host, port, speed
        self.on_sms, self.history = on_sms, history
        self.tmp = tempfile.TemporaryDirectory(prefix="agency-demo-") if workdir is None else None
        self.workdir = workdir or self.tmp.name
        self.chain = self.stack = self.fleet = None
        self._stop = threading.Event()
        self._driver = None
        self.lock = threading.Lock()     # held by the driver while it steps the firmware meter

    def start(self):
        from host_tools.sim.scenarios.chain import Chain
        now = int(time.time())
        settings = {"meter_period_s": 5, "reading_period_s": 60,
                    "prepaid": {"ledger": {"opening_credit": 15000}}}
        self.chain = ch = Chain(workdir=os.path.join(self.workdir, "chain"), speed=self.speed, epoch=now,
                                broker="amqtt", virtual_headend=False,
                                settings=settings, profile="household")
        ch.start()
        csv_path, _, rows = make_fleet(os.path.join(self.workdir, "more"), self.fake_meters, seed_serial=2000)
        ch.store.import_csv(csv_path)
        self.meter_ids = [ch.meter_id] + [r["meter_id"] for r in rows]
        # the lightweight meters' credit: varied, one of them run out (supply open for no credit)
        rng = random.Random(7)
        credits = [0 if i == 1 else rng.randint(800, 30000) for i in range(len(rows))]
        if self.history:
            opening = settings["prepaid"]["ledger"]["opening_credit"]
            for i, (m, c) in enumerate(zip(self.meter_ids, [opening] + credits)):
                seed_history(ch.store, m, end=now - 60, days=400, seed=i + 1, credit=c)
        self.stack = Stack(workdir=self.workdir, store=ch.store, keystore=ch.keystore, meter_ids=self.meter_ids,
                           settings=Settings(payment_poll_after_s=10.0), host=self.host, port=self.port,
                           on_sms=self.on_sms, arrears_every=3)
        self.stack.start()
        self.fleet = FakeFleet(ch.store, ch.keystore, rows, ch.broker.port, reading_s=15.0, credits=credits)
        self.fleet.start()
        self._driver = threading.Thread(target=self._drive, name="firmware-meter", daemon=True)
        self._driver.start()
        return self

    def _drive(self):
        while not self._stop.is_set():
            with self.lock:
                self.chain.step()

    @property
    def url(self):
        return self.stack.url

    def sign_ins(self):
        return {"customers": [customer_phone(i) for i in range(len(self.meter_ids))],
                "firmware_meter": self.chain.meter_id, "firmware_meter_customer": customer_phone(0),
                "operators": {u: p for u, p, _ in OPERATORS}}

    def close(self):
        self._stop.set()
        if self._driver:
            self._driver.join(10)
        if self.fleet:
            self.fleet.stop()
        if self.stack:
            self.stack.close()
        if self.chain:
            self.chain.close()
        if self.tmp:
            self.tmp.cleanup()

