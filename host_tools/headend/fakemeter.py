"""A lightweight CPython meter that speaks the envelope protocol over paho-mqtt as a real meter would:
persistent session, last will, signed uplinks with its own sequence, downlink checks (HMAC, stale seq,
unsigned tokens), idempotent results for the last 64 message ids, STS tokens checked with the
firmware's own decoder. Many meters share one thread (FakeMeterPool), for tests and the benchmark."""
import collections
import queue
import select
import threading
import time

import paho.mqtt.client as mqtt

from host_tools.headend import envelope

_REMEMBER = 64
_COMMANDS = ("relay_open", "relay_close", "set_config", "set_time", "get_readings", "get_statement",
             "clear_tamper", "fw_offer", "load_debt")


def _sts():
    try:
        from host_tools.fwimport import firmware_module
        return firmware_module("tokens.sts")
    except ImportError:  # firmware decoder not present: accept well-formed tokens unchecked
        return None


class FakeMeter:
    """The protocol side of one meter; transport-free so tests can also drive it directly."""

    def __init__(self, meter_id, message_key, password=None, decoder_key=None, ignore_first=0):
        self.meter_id = meter_id
        self.key = message_key
        self.password = password
        self.decoder_key = decoder_key
        self.ignore_first = ignore_first      # lose the first N deliveries of each message id (tests retry)
        self.up_seq = 0
        self.down_seq = None
        self.results = collections.OrderedDict()   # msg id -> (code, detail), the last 64
        self.seen_deliveries = collections.Counter()
        self.tids = set()
        self.credited = []                          # (msg id, token) applied exactly once each
        self.commands = []
        self.rejects = []
        self.client = None
        self._sts = _sts() if decoder_key else None

    @property
    def down_topic(self):
        return f"meters/{self.meter_id}/down"

    @property
    def up_topic(self):
        return f"meters/{self.meter_id}/up"

    def uplink(self, inner, seq=None, key=None):
        """(topic, payload) for an inner message, signed with the next uplink seq (or the given one)."""
        if seq is None:
            self.up_seq += 1
            seq = self.up_seq
        return self.up_topic, envelope.seal(key or self.key, self.meter_id, seq, inner, direction=envelope.UP)

    def handle_down(self, payload):
        """Process one downlink; returns the uplinks to publish [(topic, payload)]."""
        try:
            s, inner = envelope.check(self.key, payload, self.down_seq, envelope.DOWN, allow_unsigned_token=True,
                                      meter_id=self.meter_id)
        except envelope.EnvelopeError as e:
            try:
                s = envelope.parse(payload)[1]
            except envelope.EnvelopeError:
                s = None
            self.rejects.append(e.why)
            return [self.uplink({"t": "reject", "why": e.why, "s": s})]
        if envelope.parse(payload)[4]:  # signed: this seq is now the last accepted one
            self.down_seq = s
        msg_id = str(inner.get("id"))
        self.seen_deliveries[msg_id] += 1
        if self.seen_deliveries[msg_id] <= self.ignore_first:
            return []  # as if lost on the air: no result, the head-end must resend
        if msg_id in self.results:
            code, detail = self.results[msg_id]  # redelivery: same answer, never act twice
        else:
            code, detail = self._act(msg_id, inner)
            self.results[msg_id] = (code, detail)
            while len(self.results) > _REMEMBER:
                self.results.popitem(last=False)
        return [self.uplink({"t": "result", "ref": msg_id, "code": code, "detail": detail})]

    def _act(self, msg_id, inner):
        if inner.get("t") == "token":
            digits = str(inner.get("token", "")).replace(" ", "").replace("-", "")
            if not digits.isdigit() or len(digits) not in (9, 12, 20):
                return "format_error", {}
            if self._sts is not None and len(digits) == 20:
                t = self._sts.decode(self.decoder_key, digits)
                if not t.crc_ok:
                    return "crc_error", {}
                if t.tid in self.tids:
                    return "used", {"tid": t.tid}
                self.tids.add(t.tid)
                self.credited.append((msg_id, digits))
                return "accepted", {"tid": t.tid, "subclass": t.subclass, "amount": t.amount()}
            self.credited.append((msg_id, digits))
            return "accepted", {}
        if inner.get("t") == "cmd":
            if inner.get("cmd") not in _COMMANDS:
                return "unknown_cmd", {}
            self.commands.append((inner["cmd"], inner.get("args") or {}))
            return "done", {}
        return "refused", {"t": inner.get("t")}


class FakeMeterPool:
    """Drives many FakeMeters' paho clients from one thread with select(); start() connects them all."""

    def __init__(self, host, port, meters, keepalive=120, ca_file=None):
        """`ca_file`: connect with TLS (mqtts), trusting this CA (broker-config's ca.crt), as a meter's
        modem does; `host` must then be a name on the broker's certificate."""
        self.host, self.port = host, port
        self.ca_file = ca_file
        self.meters = list(meters)
        self.keepalive = keepalive
        self._calls = queue.Queue()
        self._stop = threading.Event()
        self._thread = None
        self.connected = 0
        self._lock = threading.Lock()

    def _make_client(self, fm):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=fm.meter_id, clean_session=False,
                        protocol=mqtt.MQTTv311, userdata=fm)
        c.username_pw_set(fm.meter_id, fm.password or "")
        if self.ca_file:
            c.tls_set(ca_certs=self.ca_file)
        c.will_set(f"meters/{fm.meter_id}/status", b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        fm.client = c
        return c

    def _on_connect(self, c, fm, flags, reason, props):
        if reason.is_failure:
            return
        c.subscribe(fm.down_topic, qos=1)
        c.publish(f"meters/{fm.meter_id}/status", b"online", qos=1, retain=True)
        with self._lock:
            self.connected += 1

    def _on_message(self, c, fm, msg):
        for topic, payload in fm.handle_down(msg.payload):
            c.publish(topic, payload, qos=1)

    def start(self, timeout=60.0, batch=50):
        """Connect every meter, `batch` at a time (a slow broker's listen backlog is small); returns how
        many got their CONNACK within timeout."""
        for fm in self.meters:
            self._make_client(fm)
        self._thread = threading.Thread(target=self._run, name="fakemeters", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        for i, fm in enumerate(self.meters):
            if i and i % batch == 0:
                while self.connected < i and time.monotonic() < end:
                    time.sleep(0.01)
            for attempt in range(3):
                try:
                    self.call(lambda: fm.client.connect(self.host, self.port, keepalive=self.keepalive))
                    break
                except OSError:
                    if attempt == 2 or time.monotonic() > end:
                        raise
                    time.sleep(0.2)
        while self.connected < len(self.meters) and time.monotonic() < end:
            time.sleep(0.02)
        return self.connected

    def call(self, fn):
        """Run fn() on the pool thread (paho clients are driven there)."""
        done = threading.Event()
        box = {}

        def wrapped():
            try:
                box["r"] = fn()
            except Exception as e:  # handed back to the caller's thread
                box["e"] = e
            finally:
                done.set()
        self._calls.put(wrapped)
        done.wait(10)
        if "e" in box:
            raise box["e"]
        return box.get("r")

    def publish(self, fm, topic, payload):
        self.call(lambda: fm.client.publish(topic, payload, qos=1))

    def _run(self):
        last_misc = 0.0
        while not self._stop.is_set():
            while True:
                try:
                    self._calls.get_nowait()()
                except queue.Empty:
                    break
            # poll() rather than select(): a thousand sockets pass FD_SETSIZE
            poller = select.poll()
            clients = {}
            for fm in self.meters:
                s = fm.client.socket()
                if s is None:
                    continue
                fd = s.fileno()
                clients[fd] = fm.client
                poller.register(fd, select.POLLIN | (select.POLLOUT if fm.client.want_write() else 0))
            if not clients:
                time.sleep(0.01)
                continue
            for fd, ev in poller.poll(10):
                c = clients[fd]
                if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    c.loop_read()
                if ev & select.POLLOUT and c.socket() is not None:
                    c.loop_write()
            now = time.monotonic()
            if now - last_misc > 0.5:
                last_misc = now
                for fm in self.meters:
                    fm.client.loop_misc()

    def stop(self, clean=True):
        """Disconnect (clean: a DISCONNECT packet, so no last will) and stop the thread."""
        if clean and self._thread:
            self.call(lambda: [fm.client.disconnect() for fm in self.meters])
            time.sleep(0.1)
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        for fm in self.meters:
            try:
                s = fm.client.socket()
                if s:
                    s.close()
            except OSError:
                pass
