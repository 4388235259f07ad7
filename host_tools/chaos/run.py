"""A simulated fleet through N days in which everything goes wrong (`meterkit sim chaos`).

M simulated ESP32 meters run the real firmware (each boot runs the frozen app of the image in the slot its
bootloader picks) in seeded households, online through their AT-level modems to an in-process broker and
the real head-end in virtual time; the agency's payments lifecycle sells credit through a payment provider
in virtual time (`provider.py`); its tokens reach the meters over MQTT and, through the customers, by SMS
and on the keypad; the operator tops up, opens and closes the supply remotely and changes the tariff; an
OTA campaign updates the fleet; and the seeded `FaultSchedule` strikes throughout. `checks.Checker` watches
it all independently of the firmware and lists every violation with the seed and the step (virtual second)
to reproduce it. Same seed, same report (everything runs in virtual time; no wall clock decides anything).

Returns the report dict: `days`, `meters`, `faults` (counts by kind), `violations`, `recovery_max_s`,
`seed` and the figures behind them."""
import json
import os
import random
import re
import tempfile
import time

from host_tools.chaos import faults as F
from host_tools.chaos.checks import Checker
from host_tools.chaos.provider import VirtualProvider
from host_tools.errors import SimulationError, UsageError

OLD, NEW = "0.1.0", "0.2.0"
EPOCH = 1767571200               # 2026-01-05 00:00 UTC, a Monday
HEAP = "448k"
SERVICE_KEY = "a5c3" * 16
UTILITY = "+22245000100"
STEP_S = 1.0                     # the loop's step when something is in flight
QUIET_STEP_S = 5.0               # ... and when nothing is
PRICE, PRICE_NEW = 237500, 262500          # minor units per MWh before and after the tariff change
OPENING = 3000
# Friendly hours (credit never cuts the supply): every night 20:00-07:00 and all of Friday (weekday 4).
FRIENDLY = [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "20:00", "end": "07:00"},
            {"days": [4], "start": "00:00", "end": "00:00"}]


def _tariff(changes):
    return {"mode": "money", "minor_per_major": 100,
            "tariffs": [{"start": start, "blocks": [{"price_per_mwh": price}]} for start, price in changes]}


def meter_settings():
    return {"meter_period_s": 10, "ota_trial_s": 180, "reading_period_s": 3600,
            "prepaid": {"tariff": _tariff([(0, PRICE)]),
                        "ledger": {"opening_credit": OPENING},
                        "policy": {"friendly": FRIENDLY, "low_credit": 500, "low_credit_hysteresis": 100},
                        "supply": {"reconnect": "auto"}}}


class ChaosMeter:
    """One meter of the fleet and what the run knows about it (not what the firmware says)."""

    def __init__(self, idx, row, sim, smsc, phone, customer_id):
        self.idx, self.row, self.id, self.sim, self.smsc = idx, row, row["meter_id"], sim, smsc
        self.phone, self.customer_id = phone, customer_id
        self.sms_lost = 0
        self.cut_next_token = False
        self.cut_in_ota = False
        self.chip_faulty = False
        self.dead = None          # a SimulationError that ended this meter
        self.purchases = 0


class _CustomerSms:
    """The agency's SMS channel: texts land on the customers' phones (the run reads tokens from them)."""
    name = "sms"

    def __init__(self, run):
        self.run = run

    def send(self, address, text, subject=None):
        self.run.customer_text(address, text)
        return "sms-%d" % len(text)


class _Inbox:
    """E-mail and WhatsApp: receipts and statements the customers read (nothing the run acts on)."""

    def __init__(self, name):
        self.name, self.sent = name, 0

    def send(self, address, text, subject=None):
        self.sent += 1
        return "%s-%d" % (self.name, self.sent)


_TOKEN = re.compile(r"\d[\d -]{18,}\d")


class ChaosRun:
    def __init__(self, days=1.0, meters=1, seed=1, per_day=6.0, kinds=None, workdir=None, log=None,
                 campaign=True, tariff_change=True, step_s=STEP_S, quiet_step_s=QUIET_STEP_S):
        if not 0 < days <= 3660:
            raise UsageError("--days %s must be above 0 and at most 3660" % days, hint="e.g. --days 2")
        if not 1 <= meters <= 50:
            raise UsageError("--meters %s must be 1..50" % meters, hint="each meter is a MicroPython process")
        if per_day < 0:
            raise UsageError("--faults-per-day must be 0 or more")
        self.days, self.n, self.seed, self.per_day = days, meters, seed, per_day
        self.say = log or (lambda text: None)
        self.campaign_wanted, self.tariff_change = campaign, tariff_change
        self.step_s, self.quiet_step_s = step_s, quiet_step_s
        self.rng = random.Random(seed)
        self.schedule = F.FaultSchedule(seed, days, meters, per_day, kinds, start_s=0.0)
        self.kinds = self.schedule.kinds
        self.kinds_asked = list(kinds) if kinds else None
        self.tmp = tempfile.TemporaryDirectory(prefix="chaos-") if workdir is None else None
        self.wd = self.tmp.name if self.tmp else str(workdir)
        self.v = 0.0              # virtual seconds since the world's epoch
        self.fleet = []
        self.store = self.he = self.broker = self.agency = self.ota = None
        self.actions = []         # (t_s, n, fn) customer and operator actions
        self._n = 0
        self.undo = []            # (t_s, n, fn) faults ending
        self.faults = {}
        self.fault_log = []       # [t_s, meter id or None, kind, note]
        self.stats = {"purchases": 0, "purchases_declined": 0, "keypad_tokens": 0, "sms_tokens": 0,
                      "sms_lost": 0, "remote_topups": 0, "remote_commands": 0, "tariff_changes": 0,
                      "chunks_served": 0}
        self.cid = None
        self.pkg_size = None
        self.wall0 = time.monotonic()

    # -- virtual time ------------------------------------------------------------------------------
    def unix_now(self):
        return EPOCH + self.v

    def at(self, t_s, fn):
        self._n += 1
        self.actions.append((t_s, self._n, fn))
        self.actions.sort(key=lambda a: (a[0], a[1]))

    # -- set-up ------------------------------------------------------------------------------------
    def start(self):
        from host_tools.agency import registry
        from host_tools.agency.agency import Agency
        from host_tools.agency.settings import Settings
        from host_tools.agency.stack import customer_phone, customers_csv
        from host_tools.headend import ota as heota
        from host_tools.headend import vending
        from host_tools.headend.demo import make_fleet
        from host_tools.headend.service import HeadEnd
        from host_tools.headend.store import Store
        from host_tools.ota import keys, package, simimage
        from host_tools.sim.esp32 import otachip
        from host_tools.sim.net.headend_client import SimHeadEndClient
        from host_tools.sim.esp32.runner import SimMeter
        from host_tools.sim.scenarios.chain import SteppedBroker
        from host_tools.sim.modem.smsc import SMSC
        wd, seed = self.wd, self.seed
        self.say("building the firmware images %s and %s" % (OLD, NEW))
        keys.generate(os.path.join(wd, "maker.pem"), force=True)
        maker = keys.load_private(os.path.join(wd, "maker.pem"))
        old_img = simimage.build(OLD)
        self.pkg_path = os.path.join(wd, "update.ota")
        with open(self.pkg_path, "wb") as f:
            f.write(package.build(simimage.build(NEW), "sim", NEW, maker, min_version=OLD))
        self.pkg_size = len(package.parse(open(self.pkg_path, "rb").read()).image)
        self.signer = maker
        trust = json.dumps(keys.trust_entry_file([maker.public_key()])).encode()

        self.store = store = Store(os.path.join(wd, "headend.db"), clock=self.unix_now)
        csv_path, ks_path, rows = make_fleet(os.path.join(wd, "fleet"), self.n, rng=random.Random(seed * 104729 + 3))
        store.import_csv(csv_path)
        self.keystore = vending.load_keystore(ks_path)
        self.broker = SteppedBroker(lambda: self.v)
        self.he = HeadEnd(store, self.broker.url, retry_s=30.0, retry_max_s=600.0, clock=self.unix_now,
                          client=SimHeadEndClient(self.broker.sim, clock=lambda: self.v))
        # chunks on the head-end's own session, attached before it connects, as `headend serve` does (its
        # topics are subscribed at every connect; a separate clean session would lose its subscription in
        # the first broker restart)
        self.ota = heota.attach(self.he, rng=random.Random(seed * 7 + 5))
        self.he.start()

        # The agency over the same store: customers (every second one with post-paid arrears), payments
        # through the virtual provider, texts to the customers' phones.
        self.provider = VirtualProvider(random.Random(seed * 13 + 1), self.unix_now)
        settings = Settings(clock=self.unix_now, payment_poll_after_s=120.0, secret="chaos-%d" % seed)
        self.agency = Agency(store, settings, self.provider, self.keystore, sms=_CustomerSms(self),
                             email=_Inbox("email"), whatsapp=_Inbox("whatsapp"))
        ids = [r["meter_id"] for r in rows]
        registry.import_csv(store, customers_csv(ids, arrears_every=2), self.unix_now())
        self.checker = Checker(self)

        for i, row in enumerate(rows):
            d = os.path.join(wd, "meter-%d" % i)
            os.makedirs(d, exist_ok=True)
            chip = os.path.join(d, "chip.img")
            otachip.create(chip, old_img)
            smsc = SMSC()
            sim = SimMeter(seed=seed * 100 + i, afe="ideal", profile="household", heap=HEAP, broker=self.broker.sim,
                           smsc=smsc, settings=meter_settings(), workdir=os.path.join(d, "work"), epoch=EPOCH,
                           esp32=chip, files={"ota_trust.json": trust})
            phone = customer_phone(i)
            cust = store.q1("SELECT customer_id FROM customer_meters WHERE meter_id=?", (row["meter_id"],))
            m = ChaosMeter(i, row, sim, smsc, phone, cust["customer_id"])
            self.fleet.append(m)
            sim.run_for(3)
            r = sim.request("provision", pan=row["pan"], serial=int(row["serial"][2:]), meter_id=row["meter_id"],
                            sgc=row["sgc"], ti=int(row["ti"]), krn=int(row["krn"]),
                            sts_key=vending.decoder_key(self.keystore, store.meter(row["meter_id"])).hex(),
                            message_key=row["message_key_hex"], service_key=SERVICE_KEY, base_date="14",
                            broker={"host": "headend.example", "port": 1883, "username": row["meter_id"],
                                    "password": row["broker_password"]}, customer=phone,
                            utility_numbers=[UTILITY])
            if not r.get("ok"):
                raise SimulationError("meter %d refused provisioning: %s" % (i, r.get("error")))
            self.checker.attach(m)
            sim.power_cut()          # the app starts its cellular side at the next boot
        self.v = max(m.sim.world.now_ms for m in self.fleet) / 1000.0
        while not self._online():
            self.step(self.step_s)
            if self.v > 900:
                raise SimulationError("the meters did not all come online within 900 simulated seconds")
        self.t0 = self.v
        self.checker.started()
        self._plan()
        return self

    def _online(self):
        n = self.store.q1("SELECT COUNT(*) AS n FROM meters WHERE status='online'")["n"]
        return n == len(self.fleet)

    def close(self):
        for m in self.fleet:
            try:
                m.sim.close()
            except Exception:  # noqa: BLE001 - closing after a failure
                pass
        if self.he is not None:
            try:
                self.he.stop()
            except Exception:  # noqa: BLE001
                pass
        if self.store is not None:
            self.store.close()
        if self.tmp is not None:
            self.tmp.cleanup()

    # -- what people and the utility do ------------------------------------------------------------
    def _plan(self):
        """Seeded plans for the whole run: purchases, operator top-ups and commands, the tariff change,
        the campaign. Fault times come from the FaultSchedule (times are from the start of the run)."""
        rng = random.Random(self.seed * 31337 + 5)
        end = self.t0 + self.days * 86400
        span = end - self.t0
        for m in self.fleet:
            # whatever the length of the run, each meter sees a purchase, an operator's top-up and a remote
            # disconnect early on, so that a short run exercises every path
            self.at(self.t0 + rng.uniform(0.02, 0.2) * span, lambda m=m, a=rng.randint(10, 60) * 100: self.purchase(m, a))
            self.at(self.t0 + rng.uniform(0.02, 0.3) * span,
                    lambda m=m, a=rng.randint(1, 20) * 100 + rng.randint(0, 99): self.remote_topup(m, a))
            self.at(self.t0 + rng.uniform(0.1, 0.5) * span, lambda m=m, d=rng.randint(60, 900): self.remote_relay(m, d))
            t = self.t0
            while True:
                t += rng.expovariate(1.3 / 86400)
                if t >= end:
                    break
                self.at(t, lambda m=m, a=rng.randint(10, 60) * 100: self.purchase(m, a))
            t = self.t0
            while True:
                t += rng.expovariate(0.3 / 86400)
                if t >= end:
                    break
                self.at(t, lambda m=m, a=rng.randint(1, 20) * 100 + rng.randint(0, 99): self.remote_topup(m, a))
            t = self.t0
            while True:
                t += rng.expovariate(0.4 / 86400)
                if t >= end:
                    break
                self.at(t, lambda m=m, d=rng.randint(60, 1800): self.remote_relay(m, d))
                self.at(t + rng.uniform(0, 3600), lambda m=m: self.command(m, "get_readings"))
        if self.tariff_change:
            t = self.t0 + self.days * 86400 * 0.4
            self.at(t, self.change_tariff)
        if self.campaign_wanted:
            self.at(self.t0 + self.days * 86400 * 0.25, self.start_campaign)

    def purchase(self, m, amount):
        """The customer buys credit on the agency's site; approves on the phone a while later (or not)."""
        from host_tools.agency.payments.lifecycle import PaymentRefused
        m.purchases += 1
        key = "chaos-%d-%d-%d" % (self.seed, m.idx, m.purchases)
        try:
            p = self.agency.payments.start(m.customer_id, m.id, amount, key)
        except PaymentRefused as e:
            self.checker.flag(m, "agency", "purchase of %d refused: %s" % (amount, e))
            return
        if self.rng.random() < 0.2:
            self.agency.payments.start(m.customer_id, m.id, amount, key)   # the form sent twice: one purchase
        self.stats["purchases"] += 1
        ref = self.agency.payments.reference(p)
        approve = self.rng.random() < 0.93
        if not approve:
            self.stats["purchases_declined"] += 1
        self.at(self.v + self.rng.uniform(10, 300), lambda: self.provider.decide(ref, approve))

    def customer_text(self, phone, text):
        """A text reached a customer's phone. A token: typed on the keypad, or forwarded to the meter by
        SMS, or left to the remote delivery, as people do."""
        m = next((x for x in self.fleet if x.phone == phone), None)
        found = [re.sub(r"\D", "", x) for x in _TOKEN.findall(text)]
        found = [x for x in found if len(x) == 20]
        if m is None or not found:
            return
        digits = found[0]
        r = self.rng.random()
        if r < 0.35:
            self.at(self.v + self.rng.uniform(20, 3600), lambda: self.keypad(m, digits))
        elif r < 0.65:
            self.at(self.v + self.rng.uniform(5, 1800), lambda: self.sms_token(m, digits))

    def _arm_token_cut(self, m):
        if m.cut_next_token:
            m.cut_next_token = False
            m.sim.flash.cut_hook = F.tear_hook(m.sim.flash, self.rng.randint(1, 3), random.Random(self.rng.getrandbits(32)),
                                               ("write", "erase"))

    def keypad(self, m, digits):
        if m.dead or not m.sim.world.grid_on:
            self.at(self.v + 600, lambda: self.keypad(m, digits))     # back when the lights are
            return
        self.stats["keypad_tokens"] += 1
        self._arm_token_cut(m)
        for d in digits:
            m.sim.press(d)
        m.sim.press("ENTER")

    def sms_token(self, m, digits):
        if m.sms_lost:
            m.sms_lost -= 1
            self.stats["sms_lost"] += 1
            return
        self.stats["sms_tokens"] += 1
        self._arm_token_cut(m)
        grouped = " ".join(digits[i:i + 4] for i in range(0, 20, 4))
        m.smsc.deliver(m.phone, grouped, unix_s=int(self.unix_now()))

    def remote_topup(self, m, amount_minor):
        from host_tools.headend import vending
        self.stats["remote_topups"] += 1
        v = vending.vend_topup(self.store, self.keystore, m.id, amount="%d.%02d" % divmod(amount_minor, 100),
                               rng=random.Random(self.rng.getrandbits(64)))
        return v

    def command(self, m, cmd, args=None):
        from host_tools.headend import vending
        self.stats["remote_commands"] += 1
        return vending.queue_command(self.store, m.id, cmd, args, rng=random.Random(self.rng.getrandbits(64)))

    def remote_relay(self, m, dur):
        mid = self.command(m, "relay_open")
        self.checker.remote_opened(m, mid)
        self.at(self.v + dur, lambda: self.checker.remote_closing(m, self.command(m, "relay_close")))

    def change_tariff(self):
        """A new price from the next midnight, sent ahead as a dated entry of the tariff list."""
        start = int(self.unix_now()) // 86400 * 86400 + 86400
        for m in self.fleet:
            self.command(m, "set_config", {"prepaid": {"tariff": _tariff([(0, PRICE), (start, PRICE_NEW)])}})
        self.stats["tariff_changes"] += 1
        self.checker.tariff_from = start

    def start_campaign(self):
        from host_tools.headend import ota as heota
        heota.upload(self.store, self.pkg_path, [self.signer.public_key()])
        self.cid = heota.start_campaign(self.store, NEW, "all", stages=(50, 100), threshold_pct=50.0)
        self.say("%.0f s: OTA campaign %s started" % (self.v - self.t0, NEW))

    # -- the loop ----------------------------------------------------------------------------------
    def strike(self, item):
        t, idx, kind, kseed = item
        m = self.fleet[idx] if idx is not None else self.fleet[0]
        if m.dead:
            return
        st = F.REGISTRY[kind].strike(self, m, random.Random(kseed))
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.fault_log.append([round(self.v - self.t0, 1), m.id if idx is not None else None, kind, st.note])
        self.checker.fault(m if idx is not None else None, kind, st)
        if st.undo_s:
            def end(st=st, m=m, kind=kind):
                if st.undo:
                    st.undo(self, m)
                self.checker.fault_ended(m, kind, st)
            self._n += 1
            self.undo.append((self.v + st.undo_s, self._n, end))
            self.undo.sort(key=lambda a: (a[0], a[1]))

    def _in_ota(self, m):
        if self.cid is None:
            return False
        t = self.store.q1("SELECT state, bytes FROM ota_targets WHERE campaign_id=? AND meter_id=?", (self.cid, m.id))
        return t is not None and t["state"] == "downloading" and 0 < t["bytes"]

    def step(self, dt):
        self.v += dt
        t_ms = int(round(self.v * 1000))
        for m in self.fleet:
            if m.dead:
                continue
            try:
                m.sim.run_until(t_ms)
            except SimulationError as e:
                m.dead = str(e)
                self.checker.flag(m, "stuck", "the meter stopped: %s" % e)
        b = self.broker.sim
        b.pump()
        self.he.client.service()
        self.he.tick()
        self.ota.tick()
        b.pump()

    def busy(self):
        """Something is in flight: step finely."""
        for m in self.fleet:
            mo = m.sim.modem
            if mo is not None and (mo.has_data() or mo.expecting_reply()):
                return True
        return bool(self.undo and self.undo[0][0] < self.v + self.quiet_step_s)

    def run(self, progress=None):
        end = self.t0 + self.days * 86400
        next_work = self.v
        next_check = self.v + 3600
        while self.v < end:
            for item in self.schedule.due(self.v - self.t0):
                self.strike(item)
            while self.undo and self.undo[0][0] <= self.v:
                self.undo.pop(0)[2]()
            while self.actions and self.actions[0][0] <= self.v:
                self.actions.pop(0)[2]()
            for m in self.fleet:
                if m.cut_in_ota and not m.dead and self._in_ota(m):
                    m.cut_in_ota = False
                    m.sim.power_cut()
            if self.v >= next_work:
                for headers, body in self.provider.due_callbacks():
                    self.agency.payments.callback(headers, body, ip="provider")
                self.agency.work_once()
                next_work = self.v + 30
            dt = self.step_s if self.busy() else self.quiet_step_s
            nxt = min([end] + [a[0] for a in self.actions[:1]] + [u[0] for u in self.undo[:1]] +
                      [self.t0 + i[0] for i in self.schedule.items[:1]])
            dt = max(0.05, min(dt, nxt - self.v)) if nxt > self.v else dt
            self.step(dt)
            self.checker.observe()
            if self.v >= next_check:
                self.checker.hourly()
                next_check = self.v + 3600
                if progress:
                    progress(self.v - self.t0, self.days * 86400)
        self.settle()
        return self.report()

    def settle(self, limit_s=9000):
        """The faults end, the links come back, every downlink gets its answer, the agency finishes. A grid
        outage is not undone: it ends on its own (up to 2 h after it struck), and the meter boots again."""
        for _, _, fn in list(self.undo):
            fn()
        self.undo = []
        self.actions = [a for a in self.actions if False]
        for m in self.fleet:
            m.cut_in_ota = m.cut_next_token = False
            m.sim.flash.cut_hook = None
        end = self.v + limit_s
        while self.v < end:
            for headers, body in self.provider.due_callbacks():
                self.agency.payments.callback(headers, body, ip="provider")
            self.agency.work_once()
            for _ in range(30):
                self.step(self.step_s)
                self.checker.observe()
            if self._settled():
                break
        for _ in range(60):
            self.step(self.step_s)
        self.agency.work_once()

    def _settled(self):
        from host_tools.headend import ota as heota
        n = self.store.q1("SELECT COUNT(*) AS n FROM messages WHERE state!='done'")["n"]
        p = self.store.q1("SELECT COUNT(*) AS n FROM payments WHERE state IN ('created','pending','paid','vended',"
                          "'refund_pending')")["n"]
        camp = True
        if self.cid is not None:
            rows = self.store.q("SELECT state FROM ota_targets WHERE campaign_id=?", (self.cid,))
            camp = all(r["state"] in heota.FINAL for r in rows)
        grid = all(m.sim.world.grid_on for m in self.fleet if not m.dead)
        return n == 0 and p == 0 and camp and grid and not self.provider.queue

    def report(self):
        rep = self.checker.final()
        rep.update({
            "days": self.days, "meters": self.n, "seed": self.seed,
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "fault_log": self.fault_log,
            "fault_kinds": self.kinds,
            "provider_callback_faults": dict(self.provider.fault_counts),
            "activity": dict(self.stats, chunks_served=self.ota.stats.get("chunks", 0)),
            "sim_s": round(self.v - self.t0, 1),
            "wall_s": round(time.monotonic() - self.wall0, 1),
        })
        return rep


def run(days=1.0, meters=1, seed=1, per_day=6.0, kinds=None, workdir=None, log=None, progress=None, **kw):
    r = ChaosRun(days=days, meters=meters, seed=seed, per_day=per_day, kinds=kinds, workdir=workdir, log=log, **kw)
    try:
        r.start()
        return r.run(progress=progress)
    finally:
        r.close()
