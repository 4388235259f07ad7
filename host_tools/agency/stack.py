"""The whole agency on this machine, for tests, the demo, the scenario and the benchmark: a head-end
store with a demo fleet, the fake SMS/WhatsApp gateways and an SMTP server, the simulated mobile-money
provider as its own HTTP service, and the agency app served by uvicorn with its worker. Meters and the
head-end's MQTT side are added by the caller (fake meters, or real firmware in simulated meters)."""
import csv
import io
import os
import secrets
import tempfile

from host_tools.agency import registry, security
from host_tools.agency.agency import Agency
from host_tools.agency.channels.email import SmtpEmail
from host_tools.agency.channels.fakes import FakeGateways, LocalSmtp
from host_tools.agency.channels.sms import GatewaySms
from host_tools.agency.channels.whatsapp import WhatsAppCloud
from host_tools.agency.payments.mobilemoney import MobileMoney
from host_tools.agency.payments.simprovider import SimProvider
from host_tools.agency.server import ServerThread, free_port
from host_tools.agency.settings import Settings
from host_tools.agency.web.app import create_app
from host_tools.headend import vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.store import Store
from host_tools.lifecycle import Managed

OPERATORS = (("admin", "admin-demo-pass", "admin"), ("agent", "agent-demo-pass", "agent"),
             ("viewer", "viewer-demo-pass", "viewer"))


def customer_phone(i):
    return "+2223600%04d" % (i + 1)


def customers_csv(meter_ids, arrears_every=0):
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(registry.CSV_COLUMNS)
    for i, m in enumerate(meter_ids):
        lang = "ar" if i % 2 else "fr"
        arrears = 5000 if arrears_every and i % arrears_every == arrears_every - 1 else 0
        w.writerow(["Client %d" % (i + 1), customer_phone(i), m, customer_phone(i),
                    "client%d@example.org" % (i + 1), lang, "sms,email" if i % 3 == 0 else "sms", 1, arrears, 2500])
    return out.getvalue()


class Stack(Managed):
    def __init__(self, workdir=None, meters=3, store=None, keystore=None, meter_ids=None, faults=0.0, seed=1,
                 settings=None, time_scale=1.0, worker_period_s=0.2, arrears_every=0, host="127.0.0.1",
                 port=None, on_sms=None):
        self.tmp = None
        if workdir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="agency-")
            workdir = self.tmp.name
        self.workdir = str(workdir)
        self.n = meters
        self.store, self.keystore, self.meter_ids = store, keystore, meter_ids
        self.faults, self.seed, self.time_scale = faults, seed, time_scale
        self.settings = settings or Settings()
        self.worker_period_s = worker_period_s
        self.arrears_every = arrears_every
        self.host, self.port, self.on_sms = host, port, on_sms
        self.parts = []
        self.rows = []

    def start(self):
        if self.store is None:
            csv_path, ks_path, self.rows = make_fleet(os.path.join(self.workdir, "fleet"), self.n)
            self.store = Store(os.path.join(self.workdir, "headend.db"))
            self.store.import_csv(csv_path)
            self.keystore = vending.load_keystore(ks_path)
            self.meter_ids = [r["meter_id"] for r in self.rows]
        self.gateways = self._up(FakeGateways(on_message=self.on_sms).start())
        self.smtp = self._up(LocalSmtp().start())
        api_key, secret = secrets.token_hex(8), secrets.token_hex(16)
        self.sim = SimProvider(api_key, secret, faults=self.faults, seed=self.seed,
                               time_scale=self.time_scale)
        self.provider_server = self._up(ServerThread(self.sim.app, name="sim-provider").start())
        port = self.port or free_port(self.host)
        self.settings.callback_base = "http://%s:%d" % (self.host, port)
        self.agency = Agency(self.store, self.settings,
                             MobileMoney(self.provider_server.url, api_key, secret), self.keystore,
                             sms=GatewaySms(self.gateways.url), email=SmtpEmail("127.0.0.1", self.smtp.port),
                             whatsapp=WhatsAppCloud(self.gateways.url, "100200300", self.gateways.token))
        registry.import_csv(self.store, customers_csv(self.meter_ids, self.arrears_every), self.settings.clock())
        for user, pw, role in OPERATORS:
            security.add_operator(self.store, user, pw, role, self.settings.clock())
        self.app = create_app(self.agency)
        self.server = self._up(ServerThread(self.app, host=self.host, port=port, name="agency").start())
        self.agency.start_worker(self.worker_period_s)
        return self

    @property
    def url(self):
        return self.server.url

    def _up(self, part):
        self.parts.append(part)
        return part

    def close(self):
        if getattr(self, "agency", None):
            self.agency.stop_worker()
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                pass
        if getattr(self, "sim", None):
            self.sim.close()
        if self.tmp:
            if self.store is not None:
                self.store.close()
            self.tmp.cleanup()

