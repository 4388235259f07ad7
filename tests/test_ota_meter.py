"""The meter's updater (firmware/ota/) under the real MicroPython with a heap cap, over the simulated
ESP32's `esp32.Partition` and a chip file whose bootloader rule the simulator applies: an update is
offered, downloaded in checked chunks, resumed after a power cut, verified, switched to, and either
proves itself (marked valid) or is rolled back by the bootloader and reported with its reason."""
import json
import os
import subprocess

import pytest
from mpyrun import FIRMWARE, micropython_bin

from host_tools.flash import imagegen
from host_tools.ota import keys, package
from host_tools.sim.esp32 import otachip

SHIM = otachip.SHIM_DIR
HEAP = "128k"

HARNESS = r'''
import json, os, struct
import esp32
from ota.updater import Updater
from tokens.dkga04 import hmac_sha256
W = os.getenv("OTA_DIR")


class Store:
    def load(self, name):
        with open(W + "/rec-" + name + ".json") as f:
            return json.load(f)

    def commit(self, name, obj):
        with open(W + "/rec-" + name + ".json", "w") as f:
            json.dump(obj, f)


class Clock:
    t = 0

    def ticks_ms(self):
        return self.t

    def ticks_add(self, a, b):
        return a + b

    def ticks_diff(self, a, b):
        return a - b


EV = []
CLK = Clock()
KEY = b"K" * 32


def emit(k, d):
    EV.append([k, d])


def mac(sha8, off, data):
    return hmac_sha256(KEY, b"fw" + sha8.encode() + struct.pack("<I", off) + data)[:8]


with open(W + "/trust.json") as f:
    TRUST = json.load(f)["keys"]


def make(version="0.1.0", trial_s=600):
    return Updater(Store(), esp32.Partition, CLK, emit, "sim", version, TRUST, mac, trial_s=trial_s)


def offer(name="offer.bin"):
    with open(W + "/" + name, "rb") as f:
        return f.read()


def serve(u, image="image.bin", limit=0):
    """The head-end: answer each request with the chunk asked for; returns the chunk results."""
    out = []
    with open(W + "/" + image, "rb") as f:     # the head-end's copy, read as asked (not in the meter's heap)
        for _ in range(100000):
            CLK.t += 300
            w = u.wanted()
            if w is None:
                if u.state != "dl":
                    return out
                continue
            sha8, off, n = w
            f.seek(off)
            data = f.read(n)
            out.append(u.chunk(off, data, mac(sha8, off, data)))
            if limit and len(out) >= limit:
                return out
    return out


def show(**kw):
    kw["events"] = EV
    print("RESULT " + json.dumps(kw))
'''


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    d = tmp_path_factory.mktemp("otakeys")
    keys.generate(d / "k.pem")
    keys.generate(d / "other.pem")
    return keys.load_private(d / "k.pem"), keys.load_private(d / "other.pem")


@pytest.fixture
def meter(tmp_path, signer):
    """A chip with version 0.1.0 in ota_0, the meter's trust file, and a package of 0.2.0."""
    key, _other = signer
    old = imagegen.app(48 * 1024, version="0.1.0", seed=5)
    new = imagegen.app(40 * 1024 + 333, version="0.2.0", seed=9)
    otachip.create(tmp_path / "chip.img", old)
    (tmp_path / "trust.json").write_text(json.dumps(keys.trust_entry_file([key.public_key()])))
    pkg = package.parse(package.build(new, "sim", "0.2.0", key, min_version="0.1.0", anti_rollback="0.2.0"))
    (tmp_path / "offer.bin").write_bytes(pkg.offer)
    (tmp_path / "image.bin").write_bytes(pkg.image)
    return tmp_path, pkg


def run(work, body, slot="ota_0"):
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", str(FIRMWARE), str(SHIM)]),
               METER_CHIP=str(work / "chip.img"), METER_RUNNING_SLOT=slot, OTA_DIR=str(work))
    p = subprocess.run([micropython_bin(), "-X", "heapsize=" + HEAP, "-c", HARNESS + body],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, "micropython exited %d\n%s\n%s" % (p.returncode, p.stdout, p.stderr[-3000:])
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, p.stdout
    return json.loads(line[-1][7:])


def slot_bytes(work, label, n):
    parts = {"ota_0": 0x10000, "ota_1": 0x190000}
    with open(work / "chip.img", "rb") as f:
        f.seek(parts[label])
        return f.read(n)


def newest_state(work):
    """The state of the newest otadata entry (the one the bootloader goes by)."""
    ents = [e for e in otachip.read_state(work / "chip.img")["otadata"] if e is not None]
    return max(ents)[1]


def kinds(res):
    return [e[0] for e in res["events"]]


def test_update_downloads_into_the_next_slot_switches_and_marks_itself_valid(meter):
    work, pkg = meter
    r = run(work, '''
u = make()
code, why = u.offer(offer())
res = serve(u)
show(code=code, last=res[-1], state=u.state, status=u.status(), switched=u.switch(True))
''')
    assert r["code"] == "accepted" and r["last"] == "done" and r["state"] == "ready", r
    assert r["status"]["target"] == "0.2.0" and r["status"]["slot"] == "ota_0" and r["switched"] is True
    assert slot_bytes(work, "ota_1", len(pkg.image)) == pkg.image, "the slot does not hold the image"
    assert kinds(r) == ["ota_offered", "ota_ready", "ota_switch"], r["events"]
    b = otachip.boot(work / "chip.img")
    assert b.label == "ota_1" and b.image == pkg.image
    assert newest_state(work) == "pending_verify"
    r = run(work, '''
u = make("0.2.0")
t = u.boot()
show(trial=t, proved=u.prove({"metering": True, "records": True, "service": True, "link": True}), status=u.status())
''', slot="ota_1")
    assert r["trial"] == "trial" and r["proved"] == "valid", r
    assert r["status"] == {"version": "0.2.0", "slot": "ota_1", "state": "idle", "anti_rollback": "0.2.0",
                           "last": {"v": "0.2.0", "result": "valid", "from": "0.1.0"}}, r["status"]
    assert newest_state(work) == "valid"
    assert otachip.boot(work / "chip.img").label == "ota_1", "a valid image must keep running after a reset"


def _install_and_switch(work):
    r = run(work, '''
u = make()
u.offer(offer())
serve(u)
show(switched=u.switch(True))
''')
    assert r["switched"] is True, r


def test_an_image_that_fails_its_health_check_is_rolled_back_and_reported_with_the_reason(meter):
    work, _pkg = meter
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"
    r = run(work, '''
u = make("0.2.0", trial_s=120)
u.boot()
checks = {"metering": True, "records": True, "service": True, "link": False}
first = u.prove(checks)
CLK.t += 121000
show(first=first, then=u.prove(checks))
''', slot="ota_1")
    assert r["first"] is None and r["then"] == "reset", r
    b = otachip.boot(work / "chip.img")
    assert b.label == "ota_0" and "rollback" in b.note, b.note
    assert newest_state(work) == "aborted"
    r = run(work, '''
u = make("0.1.0")
show(boot=u.boot(), status=u.status())
''')
    assert r["boot"] == "rolled_back", r
    ev = [e for e in r["events"] if e[0] == "ota_rolled_back"]
    assert ev and ev[0][1]["version"] == "0.2.0" and "link" in ev[0][1]["reason"], r["events"]
    assert r["status"]["last"]["result"] == "rolled_back" and r["status"]["state"] == "idle"
    assert otachip.boot(work / "chip.img").label == "ota_0", "the old image must stay after the rollback"


def test_an_image_that_resets_before_proving_itself_is_rolled_back(meter):
    work, _pkg = meter
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"     # first boot: pending verify
    assert otachip.boot(work / "chip.img").label == "ota_0"     # a reset before it was marked valid
    r = run(work, 'u = make("0.1.0")\nshow(boot=u.boot())')
    ev = [e for e in r["events"] if e[0] == "ota_rolled_back"]
    assert r["boot"] == "rolled_back" and ev[0][1]["reason"] == "reset before the new image proved itself", r


def test_download_resumes_after_a_power_cut_from_the_last_committed_chunk(meter):
    work, pkg = meter
    r = run(work, '''
u = make()
u.offer(offer())
show(res=serve(u, limit=21))
''')
    assert r["res"] == ["ok"] * 21
    r = run(work, '''
u = make()
st = u.status()
res = serve(u)
show(start=st, res=res, n=len(res), state=u.state)
''')
    assert r["start"]["bytes"] == 21 * 1024, r["start"]      # committed every chunk: on from chunk 22,
    assert r["res"][-1] == "done" and r["state"] == "ready", r  # inside the block chunks 21-24 share
    assert r["n"] == (len(pkg.image) - 21 * 1024 + 1023) // 1024
    assert slot_bytes(work, "ota_1", len(pkg.image)) == pkg.image


def test_a_cut_between_a_chunks_write_and_its_commit_writes_that_chunk_again(meter):
    work, pkg = meter
    r = run(work, '''
u = make()
u.offer(offer())
res = serve(u, limit=21)
with open(W + "/image.bin", "rb") as f:
    f.seek(21 * 1024)
    data = f.read(1024)
u.part.writeblocks(5, data, 1024)   # chunk 22 reaches the slot (block 5, after chunk 21), the power goes
show(res=res)
''')
    assert r["res"] == ["ok"] * 21
    r = run(work, '''
u = make()
st = u.status()
res = serve(u)
show(start=st, res=res, state=u.state)
''')
    assert r["start"]["bytes"] == 21 * 1024, r["start"]      # chunk 22 was never committed: asked again
    assert r["res"][-1] == "done" and r["state"] == "ready", r
    assert slot_bytes(work, "ota_1", len(pkg.image)) == pkg.image


def test_corrupted_truncated_out_of_order_and_duplicated_chunks_are_each_refused(meter):
    work, pkg = meter
    r = run(work, '''
u = make()
u.offer(offer())
with open(W + "/image.bin", "rb") as f:
    img = f.read(3072)
sha8, off, n = u.wanted()
d = img[0:1024]
out = {}
bad = bytearray(d)
bad[7] ^= 1
out["corrupt"] = u.chunk(0, bytes(bad), mac(sha8, 0, d))
out["truncated"] = u.chunk(0, d[:500], mac(sha8, 0, d[:500]))
out["ahead"] = u.chunk(2048, img[2048:3072], mac(sha8, 2048, img[2048:3072]))
out["first"] = u.chunk(0, d, mac(sha8, 0, d))
out["again"] = u.chunk(0, d, mac(sha8, 0, d))
out["forged"] = u.chunk(1024, img[1024:2048], b"12345678")
res = serve(u)
show(out=out, last=res[-1], stats=u.stats)
''')
    assert r["out"] == {"corrupt": "bad_chunk", "truncated": "bad_chunk", "ahead": "out_of_order", "first": "ok",
                        "again": "duplicate", "forged": "bad_chunk"}, r["out"]
    assert r["last"] == "done" and r["stats"]["bad"] == 3, r
    assert slot_bytes(work, "ota_1", len(pkg.image)) == pkg.image


def test_an_image_that_does_not_hash_to_the_signed_sha256_is_not_installed(meter):
    work, pkg = meter
    bad = bytearray(pkg.image)
    bad[5000] ^= 0x10
    (work / "evil.bin").write_bytes(bytes(bad))     # a head-end serving the wrong bytes, MACs and all
    r = run(work, '''
u = make()
u.offer(offer())
res = serve(u, image="evil.bin")
show(last=res[-1], state=u.state, switched=u.switch(True), status=u.status())
''')
    assert r["last"] == "hash_mismatch" and r["state"] == "idle" and r["switched"] is False, r
    assert "ota_failed" in kinds(r) and r["status"]["last"]["result"] == "hash_mismatch"
    assert otachip.boot(work / "chip.img").label == "ota_0"


def _offer_file(work, name, blob):
    (work / name).write_bytes(package.parse(blob).offer)


def test_offers_are_refused_each_with_its_own_code_and_nothing_is_written(meter, signer):
    work, pkg = meter
    key, other = signer
    img = pkg.image
    _offer_file(work, "other-key.bin", package.build(img, "sim", "0.2.0", other))
    _offer_file(work, "other-board.bin", package.build(img, "esp32_atm90e26", "0.2.0", key))
    _offer_file(work, "needs-newer.bin", package.build(img, "sim", "0.2.0", key, min_version="0.1.5"))
    _offer_file(work, "same.bin", package.build(img, "sim", "0.1.0", key))
    _offer_file(work, "old.bin", package.build(img, "sim", "0.0.9", key))
    _offer_file(work, "huge.bin", package.build(b"\xe9" * (0x180000 + 4096), "sim", "0.2.0", key, slot=0x200000))
    forged = bytearray(pkg.offer)
    forged[forged.find(b'"board":"sim"') + 9] ^= 0x20         # "Sim": the header no longer verifies
    (work / "forged.bin").write_bytes(bytes(forged))
    (work / "junk.bin").write_bytes(b"MKOTA\x01\r\n\xff\xff\xff\xff")
    (work / "rec-ota.json").write_text(json.dumps({"f": 1, "st": "idle", "floor": "0.1.0"}))
    r = run(work, '''
u = make()
out = {}
for n in ("other-key", "other-board", "needs-newer", "same", "old", "huge", "forged", "junk"):
    out[n] = u.offer(offer(n + ".bin"))[0]
show(out=out, state=u.state)
''')
    assert r["out"] == {"other-key": "bad_signature", "other-board": "wrong_board", "needs-newer": "too_old",
                        "same": "already_installed", "old": "downgrade", "huge": "too_big",
                        "forged": "bad_signature", "junk": "bad_package"}, r["out"]
    assert r["state"] == "idle" and kinds(r).count("ota_refused") == 8
    assert slot_bytes(work, "ota_1", 4096) == b"\xff" * 4096, "a refused offer wrote into the slot"


def test_a_second_offer_while_one_is_in_progress_is_busy_and_the_same_one_resumes(meter, signer):
    work, pkg = meter
    key, _ = signer
    _offer_file(work, "other.bin", package.build(pkg.image, "sim", "0.3.0", key))
    r = run(work, '''
u = make()
a = u.offer(offer())[0]
serve(u, limit=3)
b = u.offer(offer("other.bin"))[0]
c = u.offer(offer())[0]
show(a=a, b=b, c=c, status=u.status())
''')
    assert (r["a"], r["b"], r["c"]) == ("accepted", "busy", "accepted"), r
    assert r["status"]["target"] == "0.2.0" and r["status"]["bytes"] == 3072


def test_chunk_requests_are_rate_limited_and_repeated_after_silence(meter):
    work, _pkg = meter
    r = run(work, '''
u = make()
u.offer(offer())
a = u.wanted()
b = u.wanted()                 # one request in flight: no second
CLK.t += 14999
c = u.wanted()
CLK.t += 1
d = u.wanted()                 # the head-end went quiet for 15 s: ask again
data = open(W + "/image.bin", "rb").read(1024)
u.chunk(0, data, mac(d[0], 0, data))
e = u.wanted()                 # right after a chunk: the gap (250 ms) first
CLK.t += 250
f = u.wanted()
show(r=[a, b, c, d, e, f])
''')
    a, b, c, d, e, f = r["r"]
    assert a[1:] == [0, 1024] and b is None and c is None and d[1:] == [0, 1024] and e is None and f[1:] == [1024, 1024], r


def test_record_migrations_run_only_after_the_new_image_marked_itself_valid(meter):
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    steps = '''
from ota import migrate
STEPS = (("prepaid", 1, lambda v: {"f": 2, "credit_minor": v["credit"]}),)
u = make("0.2.0")
u.boot()
u.on_valid = lambda: migrate.run(Store(), "0.2.0", STEPS, emit)
'''
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"
    r = run(work, steps + '''
CLK.t += 1000
during = Store().load("prepaid")
res = u.prove({"link": False})
show(during=during, res=res, after=Store().load("prepaid"))
''', slot="ota_1")
    assert r["during"] == {"credit": 5000} and r["after"] == {"credit": 5000} and r["res"] is None, r
    r = run(work, steps + '''
res = u.prove({"link": True})
show(res=res, after=Store().load("prepaid"))
''', slot="ota_1")
    assert r["res"] == "valid" and r["after"] == {"f": 2, "credit_minor": 5000}, r
    assert kinds(r)[-1] == "record_migrated"


def test_an_offer_hours_after_boot_is_downloaded_not_abandoned_at_once(meter):
    """Found by `meterkit sim chaos`: the stall clock started at boot, so an offer accepted more than the
    stall time after boot was abandoned before its first chunk was asked for."""
    work, _ = meter
    r = run(work, '''
u = make()
CLK.t += 7 * 3600 * 1000
code = u.offer(offer())[0]
w = u.wanted()
show(code=code, w=w, state=u.state)
''')
    assert r["code"] == "accepted" and r["w"] is not None and r["state"] != "idle", r
    assert not [e for e in r["events"] if e[0] == "ota_failed"], r["events"]


def test_a_download_nobody_serves_for_hours_is_abandoned_and_the_meter_takes_the_next_offer(meter, signer):
    work, pkg = meter
    key, _ = signer
    _offer_file(work, "next.bin", package.build(pkg.image, "sim", "0.3.0", key))
    r = run(work, '''
u = make()
u.offer(offer())
serve(u, limit=2)
CLK.t += 6 * 3600 * 1000 - 1
a = u.wanted()
b = u.offer(offer("next.bin"))[0]
CLK.t += 1000
c = u.wanted()
show(a=a, b=b, c=c, state=u.state, d=u.offer(offer("next.bin"))[0], status=u.status())
''')
    assert r["a"] is not None and r["b"] == "busy", r
    assert r["c"] is None and r["d"] == "accepted" and r["status"]["target"] == "0.3.0", r
    failed = [e for e in r["events"] if e[0] == "ota_failed"]
    assert failed and failed[0][1]["code"] == "abandoned", r["events"]


MIGRATING = '''
from ota import migrate


class Cut(Exception):
    pass


def cut_after(n):
    """A store that loses power after its n-th commit from now (the commit made, nothing after it)."""
    st = Store()
    count = [0]
    commit = st.commit

    def c(name, obj):
        commit(name, obj)
        count[0] += 1
        if count[0] >= n:
            raise Cut()
    st.commit = c
    return st


STEPS = (("prepaid", 1, lambda v: {"f": 2, "credit_minor": v["credit"]}),
         ("tariff", 1, lambda v: {"f": 2, "rate_minor": v["rate"] * 100}))
u = make("0.2.0")
'''


def test_record_migrations_cut_off_after_the_image_marked_itself_valid_run_at_the_next_boot(meter):
    """Audit of issue 14: migrations ran only from prove(); a power cut after mark_app_valid and before
    (or during) the migrations meant they never ran. The ota record's "mig" notes the image whose
    migrations ran to the end; at boot a valid image without it runs them (again: steps are idempotent)."""
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    (work / "rec-tariff.json").write_text(json.dumps({"rate": 7}))
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"
    # first boot of 0.2.0: valid, then the power goes after the first migrated record is written
    r = run(work, MIGRATING + '''
u.boot()
u.on_valid = lambda: migrate.run(cut_after(1), "0.2.0", STEPS, emit)
try:
    res = u.prove({"link": True})
except Cut:
    res = "cut"
show(res=res, rec=Store().load("ota"), prepaid=Store().load("prepaid"), tariff=Store().load("tariff"))
''', slot="ota_1")
    assert r["res"] == "cut" and r["rec"]["last"]["result"] == "valid" and r["rec"]["mig"] is None, r
    assert r["prepaid"] == {"f": 2, "credit_minor": 5000} and r["tariff"] == {"rate": 7}, r
    assert newest_state(work) == "valid"
    assert otachip.boot(work / "chip.img").label == "ota_1", "a valid image must keep running after a cut"
    # the next boot: the image is valid and its migrations are not noted done: they run, once each
    r = run(work, MIGRATING + '''
u.on_valid = lambda: migrate.run(Store(), "0.2.0", STEPS, emit)
res = u.boot()
show(res=res, rec=Store().load("ota"), prepaid=Store().load("prepaid"), tariff=Store().load("tariff"))
''', slot="ota_1")
    assert r["res"] is None and r["rec"]["mig"] == "0.2.0", r
    assert r["prepaid"] == {"f": 2, "credit_minor": 5000}, "a record migrated before the cut was migrated again"
    assert r["tariff"] == {"f": 2, "rate_minor": 700}, r
    assert [e[1]["record"] for e in r["events"] if e[0] == "record_migrated"] == ["tariff"], r["events"]
    # and never again
    r = run(work, MIGRATING + '''
calls = []
u.on_valid = lambda: calls.append(1)
show(res=u.boot(), calls=len(calls))
''', slot="ota_1")
    assert r["res"] is None and r["calls"] == 0, r


def test_a_cut_between_valid_and_any_migration_runs_them_at_the_next_boot(meter):
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"
    r = run(work, MIGRATING + '''
u.boot()
def cut():
    raise Cut()
u.on_valid = cut
try:
    res = u.prove({"link": True})
except Cut:
    res = "cut"
show(res=res)
''', slot="ota_1")
    assert r["res"] == "cut", r
    r = run(work, MIGRATING + '''
u.on_valid = lambda: migrate.run(Store(), "0.2.0", STEPS, emit)
show(res=u.boot(), prepaid=Store().load("prepaid"), status=u.status())
''', slot="ota_1")
    assert r["res"] is None and r["prepaid"] == {"f": 2, "credit_minor": 5000}, r
    assert r["status"]["state"] == "idle" and r["status"]["last"]["result"] == "valid"


def test_a_rolled_back_or_never_updated_image_runs_no_migrations_at_boot(meter):
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    r = run(work, MIGRATING.replace('make("0.2.0")', 'make("0.1.0")') + '''
calls = []
u.on_valid = lambda: calls.append(1)
show(res=u.boot(), calls=len(calls))
''')
    assert r["res"] is None and r["calls"] == 0, r
    _install_and_switch(work)
    assert otachip.boot(work / "chip.img").label == "ota_1"
    r = run(work, MIGRATING + '''
u.boot()
calls = []
u.on_valid = lambda: calls.append(1)
CLK.t += 1000
show(res=u.prove({"link": False}), calls=len(calls), prepaid=Store().load("prepaid"))
''', slot="ota_1")
    assert r["res"] is None and r["calls"] == 0 and r["prepaid"] == {"credit": 5000}, r


def test_the_switch_waits_for_a_quiet_moment_no_relay_move_pending_and_no_commit_open(meter):
    """Issue 14: set_boot and the reboot never while the relay is changing or a commit is open. The
    relay's pulse and a commit run inside one job (the updater's job never sees them half-way), so what
    it can see is a relay move the contact did not confirm (pulsed again every relay_retry_s) and a
    commit_many's journal still on flash."""
    work, _pkg = meter
    r = run(work, '''
from ota.wiring import OtaService
from relay.latching import LatchingRelay
from relay.supply import Supply, NO_CREDIT
from store.records import Store as Records, JOURNAL


class Pin:
    def __init__(self, v=0):
        self.v = v

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class Clk:
    def ticks_ms(self):
        return CLK.t

    def ticks_add(self, a, b):
        return a + b

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        CLK.t += ms


class NS:
    def __init__(self, **kw):
        for k in kw:
            setattr(self, k, kw[k])


feedback = Pin(0)                      # the auxiliary contact says open, whatever the coil is told
relay = LatchingRelay(Pin(), Pin(), Clk(), emit, feedback=feedback, state={"closed": 0})
supply = Supply(relay, Clk(), emit)    # no reason holds: it wants the supply closed
store = Records(W + "/store")
queue = []
cell = NS(link=NS(uplink=NS(queue=queue)))
app = NS(service=NS(buf=bytearray()), prepaid=NS(supply=supply, relay=relay), store=store, cellular=cell)
svc = OtaService(app, None)
out = {"relay_unconfirmed": svc.quiet(cell)}
feedback.v = 1                         # the contact moved: the next retry confirms it
CLK.t += 60000
supply.poll(CLK.t)
out["relay_settled"] = svc.quiet(cell)
with open(W + "/store/" + JOURNAL, "wb") as f:
    f.write(b"MTxn")                   # a commit_many in progress (its journal on flash)
out["commit_open"] = svc.quiet(cell)
os.remove(W + "/store/" + JOURNAL)
out["all_quiet"] = svc.quiet(cell)
app.service.buf = bytearray(b'{"cmd":')
out["service_half_read"] = svc.quiet(cell)
app.service.buf = bytearray()
queue.append(b"x")
out["uplink_owed"] = svc.quiet(cell)
show(out=out, closed=relay.closed, failed=relay.failed)
''')
    assert r["out"] == {"relay_unconfirmed": False, "relay_settled": True, "commit_open": False, "all_quiet": True,
                        "service_half_read": False, "uplink_owed": False}, r
    assert r["closed"] is True and r["failed"] is False


# -- power cuts inside the switch (the scenario's cuts land between its steps, when the firmware sleeps:
# the read-back and checks run inside the job that wrote the last chunk, and set_boot, the record and the
# reset inside one job run, so these are placed here) ----------------------------------------------------
def _credit(work):
    return json.loads((work / "rec-prepaid.json").read_text())


def test_a_cut_while_the_verified_image_waits_for_its_quiet_moment_switches_after_the_next_boot(meter):
    """Between `ready` and set_boot: nothing was switched, the old image boots, finds the image verified
    in its slot and switches at its next quiet moment; one trial, no rollback, credit untouched."""
    work, pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    r = run(work, '''
u = make()
u.offer(offer())
serve(u)
show(state=u.state)                 # verified; the power goes before the job's quiet moment
''')
    assert r["state"] == "ready", r
    assert otachip.boot(work / "chip.img").label == "ota_0"
    r = run(work, '''
u = make()
b = u.boot()
st = u.status()["state"]
show(boot=b, st=st, switched=u.switch(True))
''')
    assert r["boot"] is None and r["st"] == "ready" and r["switched"] is True, r
    assert kinds(r) == ["ota_switch"], r["events"]
    b = otachip.boot(work / "chip.img")
    assert b.label == "ota_1" and b.image == pkg.image
    r = run(work, '''
u = make("0.2.0")
t = u.boot()
show(trial=t, proved=u.prove({"metering": True, "records": True, "service": True, "link": True}))
''', slot="ota_1")
    assert r["trial"] == "trial" and r["proved"] == "valid", r
    assert kinds(r).count("ota_trial") == 1
    assert _credit(work) == {"credit": 5000}


def _set_boot_then_cut(work):
    """The switch's first half: set_boot made the new slot the boot slot; the power goes before the
    record says `switched`."""
    r = run(work, '''
u = make()
u.offer(offer())
serve(u)
u.part.set_boot()
show(rec=Store().load("ota"))
''')
    assert r["rec"]["st"] == "ready", r
    b = otachip.boot(work / "chip.img")
    assert b.label == "ota_1" and newest_state(work) == "pending_verify", b.note


def test_a_cut_between_set_boot_and_the_record_noting_it_boots_the_trial_and_the_new_image_notes_it(meter):
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    _set_boot_then_cut(work)
    r = run(work, '''
u = make("0.2.0")
t = u.boot()
show(trial=t, rec=Store().load("ota"), status=u.status(),
     proved=u.prove({"metering": True, "records": True, "service": True, "link": True}))
''', slot="ota_1")
    assert r["trial"] == "trial" and r["status"]["state"] == "trial", r
    assert r["rec"]["st"] == "switched", "the trial image must note the switch the cut kept from the record"
    assert r["proved"] == "valid" and kinds(r) == ["ota_trial", "ota_valid"], r["events"]
    assert newest_state(work) == "valid" and otachip.boot(work / "chip.img").label == "ota_1"
    assert _credit(work) == {"credit": 5000}


def test_a_trial_after_a_cut_between_set_boot_and_the_record_that_fails_is_rolled_back_and_reported(meter):
    """Before the fix the old image found its record still `ready` after the rollback: it reported
    nothing and switched again, a second trial of the image nobody was told had failed."""
    work, _pkg = meter
    (work / "rec-prepaid.json").write_text(json.dumps({"credit": 5000}))
    _set_boot_then_cut(work)
    r = run(work, '''
u = make("0.2.0")
show(trial=u.boot())                # a reset (another cut) before it proves itself
''', slot="ota_1")
    assert r["trial"] == "trial" and kinds(r) == ["ota_trial"], r
    b = otachip.boot(work / "chip.img")
    assert b.label == "ota_0" and "rollback" in b.note, b.note
    r = run(work, '''
u = make("0.1.0")
b = u.boot()
show(boot=b, switched=u.switch(True), status=u.status())
''')
    assert r["boot"] == "rolled_back" and r["switched"] is False, r
    ev = [e for e in r["events"] if e[0] == "ota_rolled_back"]
    assert ev and ev[0][1]["reason"] == "reset before the new image proved itself", r["events"]
    assert r["status"]["state"] == "idle" and r["status"]["last"]["result"] == "rolled_back", r["status"]
    assert otachip.boot(work / "chip.img").label == "ota_0", "the old image must stay after the rollback"
    assert _credit(work) == {"credit": 5000}
