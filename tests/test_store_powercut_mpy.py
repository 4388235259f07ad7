"""Power cuts at every write offset under real MicroPython with os.VfsLfs2: state is always old or new.

Each test runs one micropython process that cuts the flash thousands of times (RAM block device,
snapshot/restore between cuts), reboots, remounts and loads after every cut, and asserts inside
MicroPython; it prints one `RESULT {...}` JSON line that the test checks. Finalisers of the abandoned
file systems may print `OSError: [Errno 5] EIO` lines: those are the dead flash refusing them.
"""
import json

import pytest
from mpyrun import run_micropython

# Shared micropython-side rig: a formatted RAM flash mounted at /fl, cut/reboot/restore, and a sweep.
HARNESS = r'''
import os, gc, json
from store.blockdev import RAMBlockDev, PowerCut
from store import Store, StoreMissing, StoreCorrupt
from store.eventlog import EventLog

MP = "/fl"

class Rig:
    def __init__(self, blocks=32):
        self.blocks = blocks
        self.dev = RAMBlockDev(blocks)
        self.snap = bytearray(len(self.dev.data))  # one snapshot buffer, reused (no heap churn)
        os.VfsLfs2.mkfs(self.dev)
        self.mounted = False
        self.mount()
    def mount(self):
        os.mount(os.VfsLfs2(self.dev), MP)
        self.mounted = True
    def unmount(self):
        if self.mounted:
            os.umount(MP)
            self.mounted = False
    def reboot(self):
        self.unmount()
        self.dev = self.dev.reboot()
        self.mount()
    def snapshot(self):
        self.snap[:] = self.dev.data
        return self.snap
    def restore(self, snap):
        self.unmount()
        self.dev.data[:] = snap
        self.dev = self.dev.reboot()
        self.mount()

def attempt(rig, action):
    # Run action; True if it finished, False if the power died (any error must come from the cut).
    try:
        action()
        return True
    except Exception as e:
        if not rig.dev.dead:
            raise
        return False

def sweep(rig, snap, action, check, erases, step=1, seeds=1):
    # erases=False: cut at every byte offset of the action's programs (erases never torn).
    # erases=True: cut at every write operation (programs and erases), `seeds` random offsets each.
    counts = {"old": 0, "new": 0, "cuts": 0, "uncut": 0}
    rig.restore(snap)
    d = rig.dev
    d.arm(erases=erases)
    b0, w0 = d.bytes_written, d.writes
    action()
    total = (d.bytes_written - b0) if not erases else (d.writes - w0)
    k = 0
    while k < total:
        for seed in range(seeds):
            rig.restore(snap)
            if erases:
                rig.dev.arm(after_writes=k, seed=seed * 7919 + k + 1, erases=True)
            else:
                rig.dev.arm(after_bytes=k, seed=k + 1, erases=False)
            counts["uncut" if attempt(rig, action) else "cuts"] += 1
            rig.reboot()
            counts[check()] += 1
        k += step
        if k % 32 == 0:
            gc.collect()
    counts["total"] = total
    return counts

def result(obj):
    print("RESULT " + json.dumps(obj))
'''


def results(out):
    return [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]


def assert_sweep(r, both=True):
    # Every cut was followed by a clean old-or-new load; byte sweeps really see both outcomes
    # (random offsets in the last write rarely land after littlefs's commit CRC, so `both` is optional).
    assert r["cuts"] > 0 and r["uncut"] == 0, r
    assert r["old"] + r["new"] == r["cuts"], r
    assert r["old"] > 0 and (r["new"] > 0 or not both), r


def test_single_commit_is_old_or_new_after_a_cut_at_every_byte_and_every_write():
    # Swept from many file-system histories, so some sweeps cut littlefs's metadata compaction too.
    code = HARNESS + r'''
rig = Rig()
for label, pad, histories in (("inline", "x" * 20, 40), ("block", "y" * 700, 4)):
    s = Store(MP + "/st")
    s.commit("credit", {"milli": 1000, "pad": pad})
    tot = {"label": label, "old": 0, "new": 0, "cuts": 0, "uncut": 0, "with_erase": 0, "max_bytes": 0}
    for h in range(histories):
        Store(MP + "/st").commit("credit", {"milli": 1000, "pad": pad})
        snap = rig.snapshot()
        def act():
            Store(MP + "/st").commit("credit", {"milli": 999, "pad": pad})
        def chk():
            st = Store(MP + "/st")
            v = st.load("credit")
            assert v["pad"] == pad, v
            assert not st.take_faults()
            if v["milli"] == 1000:
                return "old"
            assert v["milli"] == 999, v
            return "new"
        for erases, seeds in ((False, 1), (True, 3)):
            r = sweep(rig, snap, act, chk, erases, seeds=seeds)
            for k in ("old", "new", "cuts", "uncut"):
                tot[k] += r[k]
            if not erases:
                tot["max_bytes"] = max(tot["max_bytes"], r["total"])
            elif r["total"] > 1:
                tot["with_erase"] += 1
        rig.restore(snap)
    result(tot)
'''
    rs = results(run_micropython(code, heap="640k", timeout=120))
    assert [r["label"] for r in rs] == ["inline", "block"]
    for r in rs:
        assert_sweep(r)
    # Some inline histories erased a block (a metadata compaction) inside the cut window.
    assert rs[0]["with_erase"] > 0, rs[0]
    assert rs[0]["cuts"] > 3000 and rs[1]["max_bytes"] > 600, rs


@pytest.mark.long
def test_commit_many_leaves_all_records_old_or_all_new_after_a_cut_anywhere():
    code = HARNESS + r'''
rig = Rig()
s = Store(MP + "/st")
s.commit_many({"credit": {"milli": 5000}, "tokens": {"used": [11, 12]}, "totals": {"wh": 70}})
def act():
    Store(MP + "/st").commit_many({"credit": {"milli": 6000}, "tokens": {"used": [11, 12, 13]},
                                  "totals": {"wh": 71}})
replayed = [0]
def chk():
    st = Store(MP + "/st")
    for code, _ in st.take_faults():
        assert code in ("journal_replayed", "journal_discarded"), code
        replayed[0] += code == "journal_replayed"
    c, t, w = st.load("credit")["milli"], st.load("tokens")["used"], st.load("totals")["wh"]
    if c == 5000:
        assert t == [11, 12] and w == 70, (c, t, w)
        return "old"
    assert (c, t, w) == (6000, [11, 12, 13], 71), (c, t, w)
    return "new"
for erases, seeds in ((False, 1), (True, 4)):
    tot = {"old": 0, "new": 0, "cuts": 0, "uncut": 0}
    replayed[0] = 0
    for h in range(4):
        # A different history each round: one more (uncut) commit of the same old values.
        Store(MP + "/st").commit_many({"credit": {"milli": 5000}, "tokens": {"used": [11, 12]},
                                      "totals": {"wh": 70}})
        snap = rig.snapshot()
        r = sweep(rig, snap, act, chk, erases, seeds=seeds)
        for k in tot:
            tot[k] += r[k]
        rig.restore(snap)
    tot["replayed"] = replayed[0]
    result(tot)
'''
    rs = results(run_micropython(code, heap="640k", timeout=120))
    assert len(rs) == 2
    for r in rs:
        assert_sweep(r)
        # Some cuts fell after the journal's commit point, so the next boot finished the step.
        assert r["replayed"] > 0, r


def test_topup_applied_exactly_once_through_random_cuts_including_cuts_during_recovery():
    # A long chain on one evolving file system (compactions, relocations): each token is redelivered
    # after every cut until the meter accepts it, as the head-end's QoS 1 redelivery would do.
    code = HARNESS + r'''
from store.blockdev import _XorShift
rig = Rig(blocks=24)
s = Store(MP + "/st")
s.commit_many({"credit": {"milli": 0}, "tokens": {"used": []}})
rng = _XorShift(2024)
TOKENS, AMOUNT = 200, 250
cuts = deliveries = recover_cuts = 0
for tok in range(1, TOKENS + 1):
    while True:
        deliveries += 1
        rig.dev.arm(after_writes=rng.below(14), seed=rng.next(), erases=True)
        stage = ["boot"]
        def deliver():
            st = Store(MP + "/st")  # boot: recovery of a journal left by an earlier cut happens here
            stage[0] = "apply"
            used = st.load("tokens")["used"]
            if tok in used:
                return  # already applied before the cut: idempotent
            credit = st.load("credit")["milli"]
            st.commit_many({"credit": {"milli": credit + AMOUNT}, "tokens": {"used": used + [tok]}})
        done = attempt(rig, deliver)
        rig.dev.disarm()
        if not done:
            cuts += 1
            recover_cuts += stage[0] == "boot"
            rig.reboot()
            continue
        break
    st = Store(MP + "/st")
    used = st.load("tokens")["used"]
    assert used == list(range(1, tok + 1)), used
    assert st.load("credit")["milli"] == tok * AMOUNT
    gc.collect()
result({"cuts": cuts, "deliveries": deliveries, "recover_cuts": recover_cuts,
        "credit": Store(MP + "/st").load("credit")["milli"]})
'''
    (r,) = results(run_micropython(code, heap="400k", timeout=120))
    assert r["credit"] == 200 * 250
    assert r["cuts"] >= 100, r
    assert r["recover_cuts"] > 0, r


@pytest.mark.parametrize("geometry", [(2, 8, 21), (4, 64, 300)], ids=["2x8", "4x64"])
def test_event_log_keeps_every_earlier_entry_after_a_cut_during_an_append(geometry):
    code = HARNESS + "GEOMETRY = %r\n" % (geometry,) + r'''
FILES, PER, PRE = GEOMETRY
rig = Rig()
log = EventLog(MP + "/ev", files=FILES, per_file=PER)
for i in range(PRE):  # past one lap, so the next append overwrites the oldest entry
    log.append(1000 + i, 3, b"e%d" % (i + 1))
snap = rig.snapshot()
def act():
    EventLog(MP + "/ev", files=FILES, per_file=PER).append(5000, 9, b"new-event")
def chk():
    lg = EventLog(MP + "/ev", files=FILES, per_file=PER)
    es = lg.since(0, 1000)
    seqs = [e[0] for e in es]
    n = lg.next_seq - 1
    assert n in (PRE, PRE + 1), n
    assert seqs == list(range(n - FILES * PER + 1, n + 1)), seqs
    for seq, t, kind, data in es:
        if seq <= PRE:
            assert (t, kind, data) == (999 + seq, 3, b"e%d" % seq), (seq, t, kind, data)
        else:
            assert (t, kind, data) == (5000, 9, b"new-event"), (seq, t, kind, data)
    lg.append(6000, 1, b"after")  # the log keeps working after the cut
    assert lg.since(n + 1) == [(n + 1, 6000, 1, b"after")]
    return "old" if n == PRE else "new"
result(sweep(rig, snap, act, chk, False))
result(sweep(rig, snap, act, chk, True, seeds=6))
'''
    rs = results(run_micropython(code, heap="640k", timeout=120))
    assert len(rs) == 2
    assert_sweep(rs[0])
    assert_sweep(rs[1], both=False)


def test_flipped_byte_in_newest_slot_falls_back_to_previous_generation_under_micropython():
    code = HARNESS + r'''
rig = Rig()
s = Store(MP + "/st")
s.commit("credit", {"milli": 1})
s.commit("credit", {"milli": 2})
slot = MP + "/st/credit.b"
with open(slot, "r+b") as f:
    f.seek(25)
    b = f.read(1)
    f.seek(25)
    f.write(bytes([b[0] ^ 0x20]))   # a 1 lost ("l" -> "L"): not charge loss, so not corrected
rig.reboot()
s = Store(MP + "/st")
out = {"value": s.load("credit")["milli"], "faults": s.take_faults()}
try:
    s.load("nothing")
except StoreMissing:
    out["missing"] = True
with open(MP + "/st/credit.a", "r+b") as f:
    f.seek(21)
    f.write(b"?")
s = Store(MP + "/st")
try:
    s.load("credit")
except StoreCorrupt:
    out["corrupt"] = True
s.commit("credit", {"milli": 3})  # a fresh commit after the fault is readable again
out["after"] = Store(MP + "/st").load("credit")["milli"]
result(out)
'''
    (r,) = results(run_micropython(code, heap="400k"))
    assert r == {"value": 1, "faults": [["slot_newer_lost", "credit"]], "missing": True,
                 "corrupt": True, "after": 3}


def test_a_lost_bit_in_the_newest_slot_is_corrected_and_scrubbed_under_micropython():
    code = HARNESS + r'''
rig = Rig()
s = Store(MP + "/st")
big = {"credit": 123456, "refs": ["r%d" % i for i in range(60)]}
s.commit("prepaid", dict(big, credit=1))
s.commit("prepaid", big)
slot = MP + "/st/prepaid.b"
out = {"fixed": 0, "size": os.stat(slot)[6]}
with open(slot, "rb") as f:
    good = f.read()
# Lose one programmed 0 bit at a few places (header, payload, its end) and load each after a reboot.
for at in (3, 12, 40, len(good) // 2, len(good) - 1):
    b = good[at]
    bit = 0
    while b >> bit & 1:
        bit += 1
    s = Store(MP + "/st")
    s.commit("prepaid", big)
    s.commit("prepaid", big)                 # the newest in slot b again
    with open(slot, "r+b") as f:
        f.seek(at)
        f.write(bytes([b | 1 << bit]))
    rig.reboot()
    gc.collect()
    s = Store(MP + "/st")
    if s.load("prepaid") == big and s.take_faults() == [("slot_corrected", "prepaid")]:
        out["fixed"] += 1
    out["again"] = Store(MP + "/st").take_faults()
result(out)
'''
    (r,) = results(run_micropython(code, heap="400k"))
    assert r["size"] > 400 and r["fixed"] == 5 and r["again"] == [], r
