"""The provisioning commands under the real MicroPython interpreter with a 96 KB heap: provision,
key check, lock, challenge-response and self-test on a littlefs RAM flash; and a power cut at every
write of `provision` leaves identity and keys both old or both new (that test's heap is larger
because its RAM flash and the snapshot live on the heap)."""
import hashlib
import hmac
import json

from mpyrun import run_micropython

PAN = "600727000000000009"
SVC_KEY = "a5" * 8 + "5a" * 8 + "c3" * 16

RIG = r'''
import os, json, gc
from store.blockdev import RAMBlockDev
from store.records import Store
from app.events import Events
from service.port import ServicePort
from provision.commands import ProvisionCommands
from provision import identity as ident

from fakeclock import FakeClock as Clock

class Rand:
    def bytes(self, n): return bytes(range(n))

class Board:
    info = {"name": "sim"}
    random = Rand()

class Stream:
    def __init__(self): self.rx = None; self.tx = b""
    def read(self):
        d = self.rx; self.rx = None; return d
    def write(self, d): self.tx += d

class Meter:
    health = 0
    def poll(self): pass

class App:
    version = "9.9.9"
    def __init__(self, store):
        self.board = Board(); self.clock = Clock(); self.events = Events(self.clock)
        self.store = store; self.stream = Stream()
        self.service = ServicePort(self.stream); self.meter = Meter(); self.calibrated = True
        self.provision = ProvisionCommands(self.service, store, self.clock, self.board.random, self.events.emit,
                                           self.board.info["name"], self.version, self.run_selftest)
    def run_selftest(self):
        from provision import selftest
        return selftest.run(self)
    def call(self, cmd, **a):
        a["cmd"] = cmd; a["id"] = 1
        self.stream.tx = b""; self.stream.rx = json.dumps(a).encode() + b"\n"
        self.service.poll()
        return json.loads(self.stream.tx)

REQ = {"pan": "%(pan)s", "serial": 9, "meter_id": "%(pan)s", "sts_key": "f94b6ed353c3bfdb113e2d3a7ea3c41d",
       "sgc": "123457", "ti": 1, "krn": 1, "kt": 2, "message_key": "11" * 16 + "22" * 16, "service_key": "%(svc)s",
       "broker": {"host": "127.0.0.1", "port": 1883, "username": "%(pan)s", "password": "s3cret-pass"}}
''' % {"pan": PAN, "svc": SVC_KEY}


def test_provision_lock_auth_and_selftest_under_micropython(tmp_path):
    code = "IMAGE = %r\n" % str(tmp_path / "flash.img") + RIG + r'''
from store.blockdev import FileBlockDev
dev = FileBlockDev(IMAGE, 32)
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), "/fl")
app = App(Store("/fl"))
out = {}
out["provision"] = app.call("provision", **REQ)
out["again"] = app.call("provision", **REQ)
out["check"] = app.call("key_check", key="service", challenge="00112233445566778899")
out["lock"] = app.call("factory_lock")
out["refused"] = app.call("selftest")
n = app.call("auth_challenge")["nonce"]
out["nonce"] = n
out["bad"] = app.call("auth", mac="00" * 32)
n = app.call("auth_challenge")["nonce"]
import hashlib
from tokens.dkga04 import hmac_sha256
from binascii import hexlify, unhexlify
out["auth"] = app.call("auth", mac=hexlify(hmac_sha256(unhexlify(REQ["service_key"]), unhexlify(n))).decode())
gc.collect()
out["selftest"] = app.call("selftest")
os.umount("/fl")
os.mount(os.VfsLfs2(FileBlockDev(IMAGE, 32)), "/fl")
again = App(Store("/fl"))
out["rebooted"] = again.call("identity")
print("RESULT " + json.dumps(out))
'''
    out = run_micropython(code, heap="96k")
    r = json.loads(out.split("RESULT ", 1)[1])
    assert r["provision"]["ok"] and r["provision"]["pan"] == PAN
    assert r["again"]["ok"] is False and "already provisioned" in r["again"]["error"]
    check = hmac.new(bytes.fromhex(SVC_KEY), b"meterkit key check", hashlib.sha256).digest()
    assert r["check"]["mac"] == hmac.new(check, bytes.fromhex("00112233445566778899"), hashlib.sha256).hexdigest()
    assert r["lock"]["factory_mode"] is False
    assert r["refused"]["ok"] is False and "authenticate first" in r["refused"]["error"]
    assert r["nonce"] == bytes(range(16)).hex()
    assert "wrong MAC (1 in a row)" in r["bad"]["error"]
    assert r["auth"]["ok"] and r["auth"]["session_s"] == 600
    assert r["selftest"]["ok"], r["selftest"]
    items = {i["item"]: i for i in r["selftest"]["items"]}
    assert items["flash"]["pass"] and items["clock"]["pass"] and items["metering_chip"]["pass"]
    assert items["relay"]["reason"].startswith("not wired")
    assert r["rebooted"]["provisioned"] and r["rebooted"]["factory_mode"] is False and r["rebooted"]["serial"] == 9
    assert r["rebooted"]["firmware"] == "9.9.9" and r["rebooted"]["key_revision"] == 1


def test_a_power_cut_at_any_write_of_provision_leaves_all_or_nothing():
    code = RIG + r'''
from store.blockdev import PowerCut
dev = RAMBlockDev(16)
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), "/fl")
App(Store("/fl")).call("provision", **REQ)        # the old keys: krn 1
os.umount("/fl")
snap = bytearray(dev.data)
new = dict(REQ); new["krn"] = 2; new["rekey"] = True; new["serial"] = 10
seen = {"old": 0, "new": 0}
k = 0
while True:
    k += 1
    dev.data[:] = snap
    dev = dev.reboot()
    os.mount(os.VfsLfs2(dev), "/fl")
    dev.arm(after_writes=k, seed=k)
    finished = True
    try:
        App(Store("/fl")).call("provision", **new)
    except Exception:
        pass
    finished = not dev.dead
    try:
        os.umount("/fl")
    except OSError:
        pass
    dev = dev.reboot()
    os.mount(os.VfsLfs2(dev), "/fl")
    st = Store("/fl")
    i = ident.load_identity(st)
    ks = ident.load_keys(st)
    pair = (i["serial"], ks["krn"])
    assert pair in ((9, 1), (10, 2)), pair
    seen["old" if pair == (9, 1) else "new"] += 1
    os.umount("/fl")
    gc.collect()
    if finished:
        break
seen["cuts"] = k - 1
print("RESULT " + json.dumps(seen))
'''
    out = run_micropython(code, heap="400k")  # the RAM flash and its snapshot live on the heap too
    r = json.loads(out.split("RESULT ", 1)[1])
    assert r["cuts"] >= 5 and r["old"] >= 1 and r["new"] >= 2
