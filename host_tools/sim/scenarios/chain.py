"""End-to-end scenarios over the whole chain: a broker, the head-end, and a simulated meter whose
AT-level modem is bridged to that broker. `Chain` builds and drives it; `remote_topups()` proves the
headline promise (a remote top-up lands exactly once whatever the network does) and backs
`meterkit sim scenario remote-topups`.

Time. With the in-process broker (`broker="sim"`, the default, or `"sim-volatile"`, which loses its
sessions on a restart as amqtt does) everything runs in the simulator's virtual time: the broker is
stepped with the world and the head-end's clock and retry timers are virtual, so a run is exactly
reproducible from its seed and as fast as the firmware. With a real broker (`amqtt`, `mosquitto`) the
broker and the head-end's network loop run in wall time beside the lockstep world; the chain then paces
virtual time at `SPEED` virtual seconds per wall second so that a downlink in flight reaches the meter,
the head-end's clock stays virtual, and runs prove the same properties without being reproducible to
the message. Latencies are virtual (simulated) seconds, measured on the meter's own ledger (`topups`),
with a resolution of `STEP_S`."""
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from host_tools.errors import DeviceError, SimulationError, UsageError
from host_tools.headend import vending
from host_tools.headend.broker import free_port
from host_tools.headend.demo import make_fleet
from host_tools.headend.mosquitto import mosquitto_path
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store
from host_tools.lifecycle import Managed
from host_tools.paths import ROOT
from host_tools.sim.net.mqttbroker import SimBroker

SPEED = 100.0            # virtual seconds per wall second while a chain on a real broker is paced
STEP_S = 0.25            # virtual step between looks at the meter's ledger (latency resolution)
RETRY_S = 30.0           # the head-end's production retry (doubling up to RETRY_MAX_S), in virtual
RETRY_MAX_S = 600.0      # seconds (the head-end runs on the chain's virtual clock)
HEADEND_POLL_S = 0.01    # the head-end looks for due downlinks this often (wall)
# Heap cap of the chain's meter on the 64-bit unix port (.mpy loaded into RAM, about twice the 32-bit
# size): at 320k the provisioned, online meter ran with ~60 KB free and tokens met MemoryError under
# long outages (answered `fault` and retried, so still exactly once, but slow). What the firmware needs
# on the chip is judged on the 32-bit interpreter (README, memory).
CHAIN_HEAP = "384k"
SERVICE_KEY = "a5c3" * 16
CUSTOMER = "+22236000001"          # the household's phone: receipts and warnings by SMS
UTILITY = "+22245000100"           # the utility's operations phone: signed SMS commands
HEADEND_HOST = "headend.example"   # what the meter is provisioned with; the modem bridges it to the broker

FAULTS = ("drop_link", "coverage", "hang", "reboot", "broker_restart")


def _wait_listening(proc, port, what, log_path):
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise DeviceError("%s exited at start" % what, hint="see %s" % log_path)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise DeviceError("%s did not start listening on port %d" % (what, port), hint="see %s" % log_path)


def _halt(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class AmqttBroker:
    """The embedded amqtt broker (host_tools.headend.broker), open to any client on loopback, run in a
    process of its own on a fixed port so that a restart is a real one: the process ends and the port
    is free again (in-process, amqtt's shutdown can fail half-way and leave its listener bound). amqtt
    keeps sessions in memory only, so a restart loses them: the meter subscribes again after every
    CONNACK and the head-end resends any downlink without a result, which is the recovery a real
    broker crash needs (`--broker mosquitto` keeps them)."""

    name = "amqtt"

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self.proc = None
        self._log = tempfile.NamedTemporaryFile(prefix="amqtt-", suffix=".log", delete=False)
        self.log_path = self._log.name

    def start(self):
        code = ("import logging, threading\n"
                "logging.disable(logging.CRITICAL)\n"
                "from host_tools.headend.broker import EmbeddedBroker\n"
                "EmbeddedBroker(port=%d).start()\n"
                "threading.Event().wait()\n" % self.port)
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        _wait_listening(self.proc, self.port, "the amqtt broker", self.log_path)
        return self

    def restart(self):
        _halt(self.proc)
        self.start()

    def stop(self):
        _halt(self.proc)
        self.proc = None
        self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


class PersistentMosquitto:
    """mosquitto on a loopback port with persistence on: a restart (SIGTERM, which saves the database,
    then a fresh process on the same port and database) keeps every persistent session, its
    subscriptions and the QoS 1 messages queued for offline clients. Anonymous access: loopback only."""

    name = "mosquitto"

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self.dir = None
        self.proc = None

    def start(self):
        exe = mosquitto_path()
        if not exe:
            raise DeviceError("mosquitto is not installed", hint="apt-get install -y mosquitto, or use --broker amqtt")
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="mosq-persist-")
            os.chmod(self.dir, 0o777)   # mosquitto started as root drops to its own user to write the db
            conf = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true", "persistence true",
                    "persistence_location %s/" % self.dir, "autosave_interval 0",
                    "max_queued_messages 10000", "max_inflight_messages 100", "set_tcp_nodelay true"]
            with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
                f.write("\n".join(conf) + "\n")
        self._log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.proc = subprocess.Popen([exe, "-c", os.path.join(self.dir, "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        _wait_listening(self.proc, self.port, "mosquitto", os.path.join(self.dir, "mosquitto.log"))
        return self

    def _halt(self):
        _halt(self.proc)                   # SIGTERM: mosquitto writes its persistence file, then exits
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def restart(self):
        self._halt()
        self.start()

    def stop(self):
        self._halt()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class SecureMosquitto(PersistentMosquitto):
    """mosquitto as production runs it: the configuration `meterkit headend broker-config` writes from the
    head-end's store (mqtts with the utility CA, a user per meter, ACLs, client id = user name), with
    persistence. The meter is provisioned with the CA, so its modem speaks TLS (SIM7600 SSL commands)."""

    name = "mosquitto-tls"

    def __init__(self, store, port=None):
        super().__init__(port)
        self.store = store

    def start(self):
        if self.dir is None:
            from host_tools.headend import brokerconfig
            self.dir = tempfile.mkdtemp(prefix="mosq-tls-")
            out = brokerconfig.build(self.store, self.dir, hostnames=[HEADEND_HOST, "localhost", "127.0.0.1"],
                                     port=self.port, run_as="root" if os.geteuid() == 0 else None)
            self.ca = out["ca"]
            with open(out["url_file"]) as f:
                # the head-end reaches the broker on loopback; the name is what its certificate says
                self.url = f.read().strip().replace("@%s:" % HEADEND_HOST, "@localhost:")
        return super().start()


class SteppedBroker:
    """The in-process broker (host_tools/sim/net/mqttbroker.py) on the chain's virtual clock. `persistent`:
    sessions survive a restart (mosquitto with persistence); otherwise they are lost (amqtt)."""

    url = "mqtt://in-process"
    port = None

    def __init__(self, clock, persistent=True):
        self.name = "sim" if persistent else "sim-volatile"
        self.sim = SimBroker(clock, persistent=persistent, name=self.name)

    def secure(self, store):
        """Enforce the production broker's rules (host_tools/headend/acl.py) with the meters' passwords
        from `store`; the url then carries the head-end's own credentials."""
        import secrets
        from host_tools.headend import acl
        pw = secrets.token_hex(12)
        # a second head-end user stands for whoever sits on the head-end's side of the broker and
        # replays or forges downlinks (Chain.publish_down): the broker lets it publish, the meter decides
        self.injector = ("headend-injector", secrets.token_hex(12))
        self.sim.authenticate, self.sim.authorize = acl.registry_hooks(store, {acl.HEADEND_USER: pw,
                                                                              self.injector[0]: self.injector[1]})
        self.url = "mqtt://%s:%s@in-process" % (acl.HEADEND_USER, pw)

    def start(self):
        return self

    def restart(self):
        self.sim.restart()

    def stop(self):
        pass


BROKERS = ("sim", "sim-volatile", "amqtt", "mosquitto", "mosquitto-tls")


def make_broker(kind, clock=None, store=None):
    if kind in ("sim", "sim-volatile"):
        return SteppedBroker(clock, persistent=kind == "sim")
    if kind == "amqtt":
        return AmqttBroker()
    if kind == "mosquitto":
        return PersistentMosquitto()
    if kind == "mosquitto-tls":
        return SecureMosquitto(store)
    raise UsageError("unknown broker %r" % kind, hint=", ".join(BROKERS))


class Chain(Managed):
    """Broker + head-end (its own thread) + one provisioned simulated meter with a modem, in `workdir`
    (a temporary folder by default). `settings` become the meter's settings.json; `smsc` is the SMS
    centre behind its modem. The meter is provisioned with the household's number (CUSTOMER: receipts,
    warnings, statements) and the utility's (UTILITY: signed SMS commands); `epoch` is the world's start
    (Unix seconds)."""

    def __init__(self, workdir=None, seed=1, broker="sim", settings=None, profile="constant", smsc=None,
                 speed=SPEED, heap=CHAIN_HEAP, epoch=None, utility_numbers=(UTILITY,), virtual_headend=True):
        self.tmp = None
        if workdir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="chain-")
            workdir = self.tmp.name
        self.workdir = str(workdir)
        self.seed = seed
        self.broker_kind = broker
        self.settings = settings or {"meter_period_s": 5, "prepaid": {"ledger": {"opening_credit": 100000}}}
        if broker == "mosquitto-tls":
            # the provisioning request carries the utility CA (about 1.2 KB of PEM): the factory raises
            # the service port's line limit for it, as any meter provisioned for TLS needs
            self.settings = dict(self.settings, service_line_max=max(2048, self.settings.get("service_line_max", 0)))
        self.profile = profile
        self.smsc = smsc
        self.speed = speed
        self.heap = heap
        self.epoch = epoch
        self.utility_numbers = list(utility_numbers)
        self.broker = None
        self.he = None
        self.meter = None
        self.store = None
        self._stop = threading.Event()
        self._thread = None
        self._anchor = None
        self.stepped = broker in ("sim", "sim-volatile")
        # The head-end's clock: the world's virtual time (reproducible retries), or, on a real broker
        # only, the wall clock with its retry times divided by the speed (a live demo beside people)
        self.virtual_headend = virtual_headend or self.stepped
        self.rng = random.Random(seed * 7919 + 11)   # message ids and tokens' random bits

    # -- set-up ------------------------------------------------------------------------------------
    def unix_now(self):
        """The chain's clock in Unix seconds: the world's (virtual) time, which the head-end also uses."""
        if self.meter is not None:
            return self.meter.world.epoch + self.meter.world.now_ms / 1000.0
        from host_tools.sim.world.world import DEFAULT_EPOCH
        return float(self.epoch if self.epoch is not None else DEFAULT_EPOCH)

    def _virtual_s(self):
        return self.meter.world.now_ms / 1000.0 if self.meter is not None else 0.0

    def start(self, online_timeout_s=600):
        from host_tools.sim.esp32.runner import SimMeter
        csv_path, ks_path, rows = make_fleet(os.path.join(self.workdir, "fleet"), 1,
                                             rng=random.Random(self.seed * 104729 + 3))
        self.row = row = rows[0]
        self.meter_id = row["meter_id"]
        self.store = Store(os.path.join(self.workdir, "headend.db"),
                           clock=self.unix_now if self.virtual_headend else time.time)
        self.store.import_csv(csv_path)
        self.keystore = vending.load_keystore(ks_path)
        self.message_key = bytes.fromhex(row["message_key_hex"])
        self.broker = make_broker(self.broker_kind, clock=self._virtual_s, store=self.store).start()
        if self.stepped:
            self.broker.secure(self.store)
            from host_tools.sim.net.headend_client import SimHeadEndClient
            self.he = HeadEnd(self.store, self.broker.url, retry_s=RETRY_S, retry_max_s=RETRY_MAX_S,
                              clock=self.unix_now, client=SimHeadEndClient(self.broker.sim, clock=self._virtual_s))
            self.he.start()
        else:
            scale = 1.0 if self.virtual_headend else self.speed
            self.he = HeadEnd(self.store, self.broker.url, poll_s=HEADEND_POLL_S, retry_s=RETRY_S / scale,
                              retry_max_s=RETRY_MAX_S / scale, ca_file=getattr(self.broker, "ca", None),
                              clock=self.unix_now if self.virtual_headend else time.time)
            # reconnect quickly after a broker restart (paho's default waits 1 s, then doubles to 120 s)
            self.he.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
            self.he.start()
            self._thread = threading.Thread(target=self.he.serve, args=(self._stop,), daemon=True, name="headend")
            self._thread.start()
        dk = vending.decoder_key(self.keystore, self.store.meter(self.meter_id))
        self.meter = m = SimMeter(seed=self.seed, afe="ideal", profile=self.profile, heap=self.heap,
                                  broker=self.broker.sim if self.stepped else ("127.0.0.1", self.broker.port),
                                  smsc=self.smsc, settings=self.settings,
                                  workdir=os.path.join(self.workdir, "meter"), epoch=self.epoch)
        m.run_for(5)
        r = m.request("provision", pan=row["pan"], serial=int(row["serial"][2:]), meter_id=self.meter_id,
                      sgc=row["sgc"], ti=int(row["ti"]), krn=int(row["krn"]), sts_key=dk.hex(),
                      message_key=row["message_key_hex"], service_key=SERVICE_KEY, base_date="14",
                      broker=dict({"host": HEADEND_HOST, "port": self.broker.port or 1883, "username": self.meter_id,
                                   "password": row["broker_password"]}, **self._broker_ca()), customer=CUSTOMER,
                      utility_numbers=self.utility_numbers)
        if not r.get("ok"):
            raise SimulationError("the simulated meter refused provisioning: %s" % r.get("error"),
                                  hint="see %s" % m.log_path)
        m.power_cut()               # the app starts its cellular side at boot, once provisioned
        m.run_for(1)
        if not self.run(online_timeout_s, until=self.online):
            raise SimulationError("the meter did not come online within %d simulated seconds" % online_timeout_s,
                                  hint="see %s and the modem log" % m.log_path)
        return self

    def _broker_ca(self):
        """{"ca": PEM} for a TLS broker (the meter trusts only the utility CA), else {}."""
        ca = getattr(self.broker, "ca", None)
        if not ca:
            return {}
        with open(ca) as f:
            return {"ca": f.read()}

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self.he:
            try:
                self.he.stop()
            except Exception:
                pass
        if self.meter:
            self.meter.close()
        if self.broker:
            self.broker.stop()
        if self.store:
            self.store.close()
        if self.tmp:
            self.tmp.cleanup()


    # -- driving -----------------------------------------------------------------------------------
    @property
    def now_s(self):
        return self.meter.world.now_ms / 1000.0

    def online(self):
        return self.store.meter(self.meter_id)["status"] == "online" and self.he.connected.is_set()

    def step(self, seconds=STEP_S, paced=True):
        """Advance the meter `seconds` of virtual time. On the in-process broker the broker and the
        head-end then take their turn at the same virtual instant; on a real broker (paced) the chain
        never runs faster than `speed` x wall time."""
        self.meter.run_for(seconds)
        if self.stepped:
            self.broker.sim.pump()          # uplinks reach the head-end
            self.he.client.service()        # its reconnect after a broker restart
            self.he.tick()                  # downlinks due now
            return
        if not paced:
            self._anchor = None
            return
        now_w, now_v = time.monotonic(), self.meter.world.now_ms / 1000.0
        if self._anchor is None:
            self._anchor = (now_w, now_v)
            return
        allowed_v = self._anchor[1] + (now_w - self._anchor[0]) * self.speed
        if now_v > allowed_v:
            time.sleep((now_v - allowed_v) / self.speed)
        elif allowed_v - now_v > 2.0:
            self._anchor = (now_w, now_v)   # the firmware was the bottleneck: do not race to catch up

    def run(self, seconds, until=None, step_s=STEP_S, paced=True, on_step=None):
        """Step for up to `seconds` virtual seconds; returns True as soon as until() holds (if given)."""
        end = self.meter.world.now_ms + int(seconds * 1000)
        while self.meter.world.now_ms < end:
            if until is not None and until():
                return True
            self.step(step_s, paced)
            if on_step:
                on_step()
        return bool(until and until())

    def credit(self):
        return self.meter.request("credit")

    def vend(self, amount=None, kwh=None):
        return vending.vend_topup(self.store, self.keystore, self.meter_id, amount=amount, kwh=kwh, rng=self.rng)

    def message(self, msg_id):
        return self.store.message(msg_id)

    def undelivered(self):
        return len(self.store.messages(self.meter_id, done=False))

    def events(self, kind=None):
        return [e for e in self.store.events(self.meter_id, limit=100000) if kind is None or e["kind"] == kind]

    def publish_down(self, payload, timeout=5.0):
        """Publish raw bytes on the meter's downlink topic, as an attacker or a replaying network would."""
        if self.stepped:
            user, pw = getattr(self.broker, "injector", ("injector-%d" % self.rng.getrandbits(32), None))
            c = self.broker.sim.client(user, clean_session=True, username=user if pw else None, password=pw)
            c.connect()
            c.publish("meters/%s/down" % self.meter_id, payload, 1)
            c.disconnect()
            return
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="injector-%d" % random.getrandbits(32),
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.connect("127.0.0.1", self.broker.port, keepalive=30)
        c.loop_start()
        try:
            c.publish("meters/%s/down" % self.meter_id, payload, qos=1).wait_for_publish(timeout)
        finally:
            c.disconnect()
            c.loop_stop()

    # -- faults ------------------------------------------------------------------------------------
    def inject(self, fault, rng):
        """Apply one network fault now; returns (description, seconds after which to undo it or None)."""
        modem = self.meter.modem
        if fault == "drop_link":
            modem.drop_link()
            return "TCP link dropped", None
        if fault == "coverage":
            modem.set_coverage(False)
            return "coverage lost", rng.randint(10, 120)
        if fault == "hang":
            modem.hang()
            return "modem hung (the meter must power-cycle it)", None
        if fault == "reboot":
            modem.reboot()
            return "modem rebooted by itself", None
        if fault == "broker_restart":
            self.broker.restart()
            return "%s broker restarted" % self.broker.name, None
        raise UsageError("unknown fault %r" % fault, hint=", ".join(FAULTS))

    def undo(self, fault):
        if fault == "coverage":
            self.meter.modem.set_coverage(True)


def _no_network(modem):
    """True while no meter could reach the network through this modem, whatever it did: no coverage,
    or a modem that works (powered, not hung) still booting or not yet registered. A hung modem, one
    the meter keeps powered off, and the meter's back-off all count as the meter's time."""
    if not modem.coverage:
        return True
    return modem.powered and not modem.hung and (modem._booting or modem._reg != 1)


def _percentile(values, q):
    """The q-th percentile (nearest rank) of a list, or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def remote_topups(count=50, drop=0.3, seed=1, broker="sim", land_timeout_s=1800, settle_s=1800,
                  workdir=None, progress=None, log=None, speed=SPEED):
    """Vend `count` remote top-ups one after another; with probability `drop` per top-up a random
    network fault (FAULTS) strikes at a random moment within 1.5 simulated seconds of the vend, so it
    finds the token in the head-end, in the broker, on the link or the result on its way back. Verifies on
    the meter's own ledger that each landed exactly once and that the head-end got every result.

    Amounts are distinct (1.00 MRU + i cents for the i-th: the largest STS currency amount is 182 MRU, and
    whole cents keep the STS amount exact), so a duplicate or a late landing shows in the ledger.

    The report explains itself: every ledger move other than the awaited amount is listed in `moves`
    with the top-up, its message id and TID, the faults around it and the head-end's and meter's
    events for it. On the in-process broker the same seed gives the same report (but `wall_seconds`).
    `speed`: virtual seconds per wall second on a real broker (ignored on the in-process one).
    Returns the report dict (time base: see the module docstring)."""
    if not 1 <= count <= 18000:
        raise UsageError("--count must be 1..18000 (distinct amounts below the largest STS amount)",
                         hint="e.g. --count 50")
    if not 0.0 <= drop <= 1.0:
        raise UsageError("--drop must be a probability 0..1", hint="e.g. --drop 0.3")
    if broker not in BROKERS:
        raise UsageError("unknown broker %r" % broker, hint=", ".join(BROKERS))
    rng = random.Random(seed)
    say = log or (lambda text: None)
    wall0 = time.monotonic()
    faults = {}
    fault_log = []     # [virtual s, top-up number, description]
    latencies = []
    net_latencies = []  # the same less the time no network could carry it (see _no_network)
    by_fault = {}
    net_by_fault = {}      # fault drawn for the top-up ("none" without one) -> its latencies
    landed = set()     # msg ids seen landing on the ledger
    moves = []         # ledger moves that were not exactly the top-up awaited, each explained
    pending = []       # [virtual ms, what, top-up number]: faults to strike, and coverage to restore
    slow = []          # (net s, gross s, top-up number, fault drawn, vended at s) of each landed top-up

    with Chain(workdir=workdir, seed=seed, broker=broker, speed=speed) as ch:
        def strike():
            now = ch.meter.world.now_ms
            for item in [x for x in pending if x[0] <= now]:
                pending.remove(item)
                at, what, n = item
                if what == "coverage_back":
                    ch.undo("coverage")
                    fault_log.append([round(now / 1000.0, 2), n, "coverage back"])
                    continue
                text, undo_s = ch.inject(what, rng)
                faults[what] = faults.get(what, 0) + 1
                fault_log.append([round(now / 1000.0, 2), n, text])
                say("top-up %d: %s" % (n, text))
                if undo_s:
                    pending.append([ch.meter.world.now_ms + undo_s * 1000, "coverage_back", n])

        def explain(n, v, v0_ms, expected, moved, meter_seq):
            """Everything known about one odd ledger move, for the report."""
            t0 = v0_ms / 1000.0
            mine = [e for e in ch.store.events(ch.meter_id, limit=100000)
                    if v["msg_id"] in (e["data"].get("msg_id"), e["data"].get("ref"))]
            try:
                mev = ch.meter.request("events", since=meter_seq)["events"]
            except Exception as e:       # the report must come out even if the meter is in trouble
                mev = [["error", repr(e)]]
            return {"topup": n, "msg_id": v["msg_id"], "tid": v["tid"], "expected": expected, "moved": moved,
                    "vended_at_s": round(t0, 2),
                    "faults": [f for f in fault_log if t0 - 300 <= f[0] <= ch.now_s],
                    "headend_events": [[round(e["at"] - ch.meter.world.epoch, 2), e["source"], e["kind"],
                                        e["data"]] for e in mine],
                    "meter_events": mev[-40:]}

        start_topups = base = ch.credit()["topups"]
        vended = []
        for i in range(count):
            amount_minor = 100 + i
            drawn = "none"
            if rng.random() < drop:
                drawn = rng.choice(FAULTS)
                pending.append([ch.meter.world.now_ms + rng.randint(0, 1500), drawn, i + 1])
            meter_seq = ch.meter.request("events", since=1 << 30).get("seq", 0)
            v = ch.vend(amount=amount_minor / 100.0)
            v0 = ch.meter.world.now_ms
            vended.append((v["msg_id"], amount_minor, v["tid"]))
            got, end = base, v0 + land_timeout_s * 1000
            out_ms = 0
            while ch.meter.world.now_ms < end:
                strike()
                t_step, off = ch.meter.world.now_ms, _no_network(ch.meter.modem)
                ch.step()
                if off:
                    out_ms += ch.meter.world.now_ms - t_step
                got = ch.credit()["topups"]
                if got >= base + amount_minor:
                    break
            if got >= base + amount_minor:
                landed.add(v["msg_id"])
                latencies.append((ch.meter.world.now_ms - v0) / 1000.0)
                net_latencies.append(max(0.0, latencies[-1] - out_ms / 1000.0))
                by_fault.setdefault(drawn, []).append(latencies[-1])
                net_by_fault.setdefault(drawn, []).append(net_latencies[-1])
                slow.append((net_latencies[-1], latencies[-1], i + 1, drawn, v0 / 1000.0))
            else:
                say("top-up %d: not landed after %d simulated seconds" % (i + 1, land_timeout_s))
            if got != base + amount_minor:
                moves.append(explain(i + 1, v, v0, amount_minor, got - base, meter_seq))
                say("top-up %d: ledger moved by %d, expected %d" % (i + 1, got - base, amount_minor))
            base = got
            if progress:
                progress(i + 1, count)
        # settle: the faults still due strike, coverage comes back, then every result must come in (and
        # any late landing would show in the ledger)
        ch.run(settle_s, until=lambda: not pending and ch.undelivered() == 0, on_step=strike)
        for at, what, n in pending:
            if what == "coverage_back":
                ch.undo("coverage")
        final = ch.credit()["topups"]
        if final != base:
            moves.append({"topup": None, "expected": 0, "moved": final - base, "when": "while settling",
                          "faults": [f for f in fault_log if f[0] >= ch.now_s - settle_s]})
        expected = sum(a for _, a, _ in vended)
        credited = final - start_topups
        done = {r["msg_id"]: (r["code"], r["detail"]) for r in ch.store.messages(ch.meter_id, done=True)}
        results_received = sum(1 for mid, _, _ in vended if mid in done)
        # Lost: a top-up whose amount never reached the ledger, even after settling. Duplicates: credit
        # beyond the sum of the distinct vends, counted in top-ups (by the amounts, smallest first).
        missing = [a for mid, a, _ in vended if mid not in landed]
        late = 0
        surplus = credited - (expected - sum(missing))
        for a in sorted(missing):           # a top-up that landed after its own wait, during a later one
            if surplus >= a:
                surplus -= a
                late += 1
        lost = len(missing) - late
        duplicates = 0
        for a in sorted((a for _, a, _ in vended), reverse=True):
            if surplus <= 0:
                break
            if a <= surplus:
                surplus -= a
                duplicates += 1
        if surplus > 0:
            duplicates += 1                 # credit that matches no vend at all
        from host_tools.headend.reconcile import reconcile
        books = reconcile(ch.store, ch.meter_id)
        report = {
            "requested": count,
            "credited_once": count - lost - duplicates,
            "duplicates": duplicates,
            "lost": lost,
            "results_received": results_received,
            "results_accepted": sum(1 for mid, _, _ in vended if done.get(mid, ("",))[0] == "accepted"),
            "results_confirmed_by_used": books["meters"][0]["confirmed_by_used"],
            "credit_expected_minor": expected,
            "credit_landed_minor": credited,
            "headend_accepted_minor": books["meters"][0]["accepted_minor"],
            "landed_late": late,
            "ledger_moves_unexpected": len(moves),
            "moves": moves,
            "latency_p50_s": _percentile(latencies, 50),
            "latency_p95_s": _percentile(latencies, 95),
            "latency_p99_s": _percentile(latencies, 99),
            "latency_max_s": max(latencies) if latencies else None,
            # the meter's own share: less the time without coverage and while a working modem booted
            # or registered (physics of the network and the module, not the meter's reactions)
            "latency_net_p50_s": _percentile(net_latencies, 50),
            "latency_net_p95_s": _percentile(net_latencies, 95),
            "latency_net_p99_s": _percentile(net_latencies, 99),
            "latency_net_max_s": max(net_latencies) if net_latencies else None,
            # where the tail comes from: p50/p95/max of the top-ups by the fault drawn for them
            "latency_by_fault": {k: {"n": len(v), "p50_s": _percentile(v, 50), "p95_s": _percentile(v, 95),
                                     "max_s": max(v), "net_p95_s": _percentile(net_by_fault[k], 95),
                                     "net_max_s": max(net_by_fault[k])} for k, v in sorted(by_fault.items())},
            # the slowest net latencies with the faults from a minute before each vend to its landing
            "latency_net_tail": [{"topup": n, "fault": d, "latency_s": g, "net_s": net, "vended_at_s": round(t0, 2),
                                  "faults": [f for f in fault_log if t0 - 60 <= f[0] <= t0 + g]}
                                 for net, g, n, d, t0 in sorted(slow, reverse=True)[:max(1, len(slow) // 20)]],
            "faults_injected": sum(faults.values()),
            "faults": faults,
            "redeliveries": len(ch.events("redelivery")),
            "downlink_rejected": len(ch.events("downlink_rejected")),
            "meter_faults_while_acting": sum(1 for e in ch.events("result") if e["data"].get("code") == "fault"),
            "modem_boots": sum(1 for _, e in ch.meter.modem.log if e == "* boot"),
            "broker": broker,
            "reproducible": ch.stepped,
            "drop": drop,
            "seed": seed,
            "virtual_seconds": round(ch.now_s, 1),
            "wall_seconds": round(time.monotonic() - wall0, 2),
        }
    return report


# -- CLI ---------------------------------------------------------------------------------------------
def register_sim(simsub):
    p = simsub.add_parser("scenario", help="end-to-end scenarios over broker, head-end and a simulated meter")
    ssub = p.add_subparsers(dest="scenario", metavar="SCENARIO")
    ssub.required = True
    q = ssub.add_parser("remote-topups", help="N remote top-ups while the network fails; each must land exactly once")
    q.add_argument("--count", type=int, default=50, help="top-ups to vend (default 50)")
    q.add_argument("--drop", type=float, default=0.3, help="probability of a network fault per top-up (default 0.3)")
    q.add_argument("--seed", type=int, default=1, help="seed for faults and the meter's world (default 1)")
    q.add_argument("--broker", choices=BROKERS, default="sim",
                   help="sim: in-process, stepped in virtual time, reproducible from the seed (default); "
                        "sim-volatile: the same, losing its sessions on a restart; amqtt: embedded; "
                        "mosquitto: with persistence, restarted keeping sessions (real brokers run in wall "
                        "time: not reproducible to the message)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_remote_topups)
    from host_tools.sim.scenarios import ota as ota_scenario     # firmware update campaigns (docs/ota.md)
    ota_scenario.register(ssub)


def cmd_remote_topups(args):
    progress, log, prog = None, None, None
    if not args.json:
        from rich.console import Console
        from rich.progress import Progress
        prog = Progress(console=Console(stderr=True), transient=True)
        prog.start()
        task = prog.add_task("remote top-ups", total=args.count)

        def progress(done, total):
            prog.update(task, completed=done)

        def log(text):
            prog.console.print(text)
    try:
        rep = remote_topups(count=args.count, drop=args.drop, seed=args.seed, broker=args.broker,
                            progress=progress, log=log)
    finally:
        if prog:
            prog.stop()
    from host_tools.cli import emit
    emit(rep, args.json)
    ok = (rep["duplicates"] == 0 and rep["lost"] == 0 and rep["results_received"] == rep["requested"]
          and rep["results_accepted"] == rep["requested"])
    if not ok and not args.json:
        sys.stderr.write("meterkit sim scenario: exactly-once NOT met (see duplicates/lost/results_received)\n")
    return 0 if ok else 1
