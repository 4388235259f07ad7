"""Shared test doubles for the comms tests: a clock moved by hand, a dict-backed store, a seeded
random source, an in-test MQTT broker peer and a scripted AT modem (SIM7600 and SIM800 dialects)
with transparent TCP bridged to that peer. The doubles' own behaviour: tests/test_fakes.py."""
import random

from comms import mqttpkt as pkt
from fakeclock import FakeClock as _Clock


def FakeClock(ms=0, epoch=1764000000, time_valid=False):
    """The tests' one clock (mpy_support/fakeclock.py) as the comms tests start it: time not known
    until the link sets it (every set_time is kept in `set_calls`)."""
    return _Clock(ms, epoch, time_valid)


class FakeStore:
    """load/commit of JSON-able dicts, copied so the code under test cannot alias stored state."""

    def __init__(self):
        self.data = {}
        self.commits = 0

    def load(self, name):
        import json
        v = self.data.get(name)
        return None if v is None else json.loads(v)

    def commit(self, name, d):
        import json
        from store.records import encode
        encode(d)  # the real store's ceiling (4 KB of payload) raises here as it would on the meter
        self.data[name] = json.dumps(d)
        self.commits += 1


class FakeRandom:
    def __init__(self, seed=1):
        self.r = random.Random(seed)

    def getrandbits(self, k):
        return self.r.getrandbits(k)


def split_packets(buf):
    """Complete MQTT packets at the front of buf: ([(first, body)], rest)."""
    out = []
    while len(buf) >= 2:
        n = 0
        shift = 0
        i = 1
        while True:
            if i >= len(buf):
                return out, buf
            b = buf[i]
            n |= (b & 0x7F) << shift
            shift += 7
            i += 1
            if not b & 0x80:
                break
        if len(buf) < i + n:
            return out, buf
        out.append((buf[0], bytes(buf[i:i + n])))
        buf = buf[i + n:]
    return out, buf


class Broker:
    """An MQTT 3.1.1 peer for one client: answers CONNECT, SUBSCRIBE, PUBLISH (QoS 1) and PINGREQ,
    records what it received, and can publish downlinks (QoS 1) that it keeps until PUBACKed."""

    def __init__(self, ack_publishes=True):
        self.buf = b""
        self.out = bytearray()
        self.connects = []
        self.publishes = []  # decoded PUBLISH dicts from the client
        self.subscriptions = []
        self.pings = 0
        self.acked = []  # packet ids of our downlinks the client acknowledged
        self.unacked = {}  # pid -> PUBLISH bytes
        self.ack_publishes = ack_publishes
        self.disconnected = False
        self._pid = 100

    def feed(self, data):
        self.buf += bytes(data)
        pkts, self.buf = split_packets(self.buf)
        for first, body in pkts:
            d = pkt.decode(first, body)
            t = d["type"]
            if t == pkt.CONNECT:
                self.connects.append(d)
                self.out += pkt.connack(False, 0)
            elif t == pkt.SUBSCRIBE:
                self.subscriptions += d["topics"]
                self.out += pkt.suback(d["pid"], [q for _, q in d["topics"]])
            elif t == pkt.PUBLISH:
                self.publishes.append(d)
                if d["qos"] == 1 and self.ack_publishes:
                    self.out += pkt.ack(pkt.PUBACK, d["pid"])
            elif t == pkt.PUBACK:
                self.acked.append(d["pid"])
                self.unacked.pop(d["pid"], None)
            elif t == pkt.PINGREQ:
                self.pings += 1
                self.out += pkt.simple(pkt.PINGRESP)
            elif t == pkt.DISCONNECT:
                self.disconnected = True

    def send(self, topic, payload, dup=False, pid=None):
        if pid is None:
            self._pid += 1
            pid = self._pid
        p = pkt.publish(topic, payload, 1, pid, dup=dup)
        self.unacked[pid] = p
        self.out += p
        return pid

    def redeliver(self):
        """What a broker does for a persistent session on reconnect: resend unacked with DUP."""
        for pid, p in list(self.unacked.items()):
            self.out += bytes((p[0] | 8,)) + p[1:]

    def take(self):
        o = bytes(self.out)
        self.out = bytearray()
        return o

    def up_payloads(self, topic_suffix="/up"):
        return [d["payload"] for d in self.publishes if d["topic"].endswith(topic_suffix)]


class FakeModem:
    """A scripted SIMCom-style modem on the far side of the UART. Knobs: `reg` (registration stat),
    `sim` ("READY" or other), `hang` (answers nothing until power-cycled), `cclk`, `chunk` (bytes
    per read, so lines arrive in pieces), `peer` (the Broker the TCP link reaches)."""

    def __init__(self, clock, dialect="sim7600", peer=None, chunk=64):
        self.clock = clock
        self.dialect = dialect
        self.peer = peer
        self.chunk = chunk
        self.reg = 1
        self.sim = "READY"
        self.csq = 20
        self.cclk = '"26/11/25,10:30:00+00"'
        self.hang = False
        self.hang_after_power = False
        self.powered = False
        self.power_cycles = 0
        self.connect_fails = 0  # the next n TCP opens fail
        self.pending = []  # [release ms, bytes]
        self.inbuf = b""
        self.echo = True
        self.data = False
        self.tcp = False
        self.net_open = False
        self.sms_body = None
        self.sms_sent = []  # (declared length, pdu hex)
        self.stored = {}  # idx -> pdu hex
        self.commands = []
        self.last_data_rx = 0
        self.escape_at = None
        self.bytes_out = 0
        self.cmgs_delay = 0  # ms the network takes to accept each SMS part

    # -- the UART ---------------------------------------------------------------------------
    def _out(self, b, delay=0):
        self.pending.append([self.clock.ms + delay, bytes(b)])

    def _say(self, *lines, delay=0):
        self._out(b"".join(b"\r\n" + ln.encode() + b"\r\n" for ln in lines), delay)

    def read(self):
        if self.peer is not None and self.data:
            got = self.peer.take()
            if got:
                self._out(got)
        ready = b""
        keep = []
        for e in self.pending:
            if e[0] <= self.clock.ms and not keep:
                ready += e[1]
            else:
                keep.append(e)
        self.pending = keep
        if len(ready) > self.chunk:
            self.pending.insert(0, [self.clock.ms, ready[self.chunk:]])
            ready = ready[:self.chunk]
        self.bytes_out += len(ready)
        return ready or None

    def write(self, data):
        data = bytes(data)
        if not self.powered or self.hang:
            return
        if self.data:
            quiet = self.clock.ms - self.last_data_rx
            if data == b"+++" and quiet >= 1000:
                self.escape_at = self.clock.ms
                self.data = False
                self._say("OK", delay=1000)
                return
            self.last_data_rx = self.clock.ms
            if self.peer is not None and self.tcp:
                self.peer.feed(data)
            return
        if self.sms_body is not None:
            self.sms_body += data
            if b"\x1a" in self.sms_body:
                body = self.sms_body.split(b"\x1a")[0].decode()
                self.sms_sent.append((self.sms_len, body))
                self.sms_body = None
                self._say("+CMGS: %d" % len(self.sms_sent), "OK", delay=self.cmgs_delay)
            return
        self.inbuf += data
        while b"\r" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\r", 1)
            self._command(line.decode(errors="replace").strip())

    def set_power(self, on):
        if on and not self.powered:
            self.powered = True
            self.power_cycles += 1
            self.hang = self.hang_after_power
            self.echo = True
            self.data = self.tcp = self.net_open = False
            self.pending = []
            self._say("RDY", "+CPIN: READY", "SMS Ready", delay=500)
        elif not on:
            self.powered = False
            self.pending = []

    def reset(self):
        self.set_power(False)
        self.set_power(True)

    # -- the world --------------------------------------------------------------------------
    def drop_link(self):
        """The network closes the TCP connection."""
        if self.tcp:
            self.tcp = False
            if self.data:
                self.data = False
                self._say("CLOSED")
            else:
                self._say("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" if self.dialect == "sim7600" else "CLOSED")

    def deliver_sms(self, pdu_hex):
        idx = 1
        while idx in self.stored:
            idx += 1
        self.stored[idx] = pdu_hex
        if not self.data:
            self._say('+CMTI: "SM",%d' % idx)
        return idx

    def garbage(self, raw):
        self._out(raw)

    # -- commands ---------------------------------------------------------------------------
    def _command(self, cmd):
        if not cmd:
            return
        self.commands.append(cmd)
        if self.echo:
            self._out(cmd.encode() + b"\r")
        registered = self.reg in (1, 5)
        u = cmd.upper()
        if u in ("AT", "AT+CMEE=1", "AT+CMGF=0", "AT+CNMI=2,1,0,0,0", "AT+CTZU=1", "AT+CLTS=1",
                 "AT+CIPMODE=1") or u.startswith("AT+CGDCONT") or u.startswith("AT+CSTT"):
            self._say("OK")
        elif u == "ATE0":
            self.echo = False
            self._say("OK")
        elif u == "AT+CPIN?":
            self._say("+CPIN: " + self.sim, "OK") if self.sim == "READY" else self._say("+CME ERROR: 10")
        elif u == "AT+CSQ":
            self._say("+CSQ: %d,99" % self.csq, "OK")
        elif u in ("AT+CREG?", "AT+CGREG?", "AT+CEREG?"):
            if u == "AT+CEREG?" and self.dialect != "sim7600":
                self._say("ERROR")
            else:
                self._say("%s: 0,%d" % (u[2:-1], self.reg), "OK")
        elif u == "AT+COPS?":
            self._say('+COPS: 0,0,"Mauritel",7', "OK")
        elif u == "AT+CCLK?":
            self._say("+CCLK: " + self.cclk, "OK")
        elif u == "AT+NETOPEN":
            if self.net_open:
                self._say("+IP ERROR: Network is already opened", "ERROR")
            elif registered:
                self.net_open = True
                self._say("OK")
                self._say("+NETOPEN: 0", delay=200)
            else:
                self._say("OK")
                self._say("+NETOPEN: 1", delay=200)
        elif u.startswith("AT+CIPOPEN=") or u.startswith("AT+CIPSTART="):
            ok = registered and (self.net_open or self.dialect == "sim800") and self.connect_fails == 0
            if self.connect_fails:
                self.connect_fails -= 1
            if self.dialect == "sim800":
                self._say("OK")
            if ok:
                self.tcp = True
                self.data = True
                self.last_data_rx = self.clock.ms
                self._say("CONNECT 115200" if self.dialect == "sim7600" else "CONNECT", delay=300)
            else:
                self._say("CONNECT FAIL" if self.dialect == "sim800" else "ERROR", delay=300)
        elif u == "ATO":
            if self.tcp:
                self.data = True
                self.last_data_rx = self.clock.ms
                self._say("CONNECT 115200")
            else:
                self._say("NO CARRIER")
        elif u.startswith("AT+CIPCLOSE"):
            was = self.tcp
            self.tcp = False
            if self.dialect == "sim800":
                self._say("CLOSE OK" if was else "ERROR")
            else:
                self._say("+CIPCLOSE: 0,0", "OK") if was else self._say("+CIPCLOSE: 0,4", "ERROR")
        elif u == "AT+NETCLOSE":
            self.net_open = False
            self._say("OK", "+NETCLOSE: 0")
        elif u == "AT+CIPSHUT":
            self.tcp = False
            self._say("SHUT OK")
        elif u == "AT+CIICR":
            self._say("OK") if registered else self._say("ERROR")
        elif u == "AT+CIFSR":
            self._say("10.64.1.7") if registered else self._say("ERROR")
        elif u.startswith("AT+CMGS="):
            self.sms_len = int(u[8:])
            self.sms_body = b""
            self._out(b"\r\n> ")
        elif u.startswith("AT+CMGR="):
            idx = int(u[8:])
            if idx in self.stored:
                p = self.stored[idx]
                self._say("+CMGR: 0,,%d" % (len(p) // 2 - 1), p, "OK")
            else:
                self._say("OK")
        elif u == "AT+CMGL=4":
            lines = []
            for idx, p in sorted(self.stored.items()):
                lines += ["+CMGL: %d,0,,%d" % (idx, len(p) // 2 - 1), p]
            self._say(*(lines + ["OK"]))
        elif u.startswith("AT+CMGD="):
            self.stored.pop(int(u[8:]), None)
            self._say("OK")
        else:
            self._say("ERROR")


def drive(link, clock, steps, step_ms=100, until=None, max_bytes=None):
    """Poll `steps` times, advancing the clock; stop early when until() is true. Returns the number
    of polls made. Asserts that no single poll consumed more than `max_bytes` (it never blocks)."""
    for i in range(steps):
        clock.advance(step_ms)
        n = link.poll()
        if max_bytes is not None:
            assert n <= max_bytes
        if until is not None and until():
            return i + 1
    return steps
