"""A day of meter persistence under a 96 KB heap on a 2 MB file-backed littlefs, then the image read by
littlefs-python on the host: the store fits the heap, its wear budget is reported, and its formats
are the same on both sides."""
import json
import os

import littlefs
import pytest

from mpyrun import run_micropython
from store import Store
from store.eventlog import EventLog

BLOCKS = 512  # the generic ESP32 4 MB layout's 2 MB vfs partition

DAY = r'''
import os, gc, json
from store.blockdev import FileBlockDev
from store.wear import WearCounter
gc.collect()
base = gc.mem_alloc()
dev = WearCounter(FileBlockDev(IMAGE, 512))
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), "/flash")
gc.collect()
mounted = gc.mem_alloc()
from store import Store
from store.eventlog import EventLog
gc.collect()
imported = gc.mem_alloc()
store = Store("/flash/state")
log = EventLog("/flash/events")
gc.collect()
objects = gc.mem_alloc() - imported
dev.reset()
low = gc.mem_free()
t0 = 1767225600
for minute in range(1440):  # one commit a minute for a day: credit, debt and totals in one record
    store.commit("ledger", {"credit_milli": 5000000 - 37 * minute, "debt_milli": 0,
                            "wh": 812345 + 3 * minute, "t": t0 + 60 * minute})
    if minute % 72 == 0:
        log.append(t0 + 60 * minute, 4, b"tamper?")
    if minute in (300, 900):  # two top-ups a day: token applied and marked used as one step
        led = store.load("ledger")
        store.commit_many({"ledger": led, "tokens": {"used": [minute, minute + 1]}})
    if minute % 60 == 0:
        gc.collect()
        low = min(low, gc.mem_free())
rep = dev.report(86400, static_blocks=4)
gc.collect()
print("RESULT " + json.dumps({"mount_bytes": mounted - base, "objects_bytes": objects, "low_free": low,
    "ledger": store.load("ledger"), "events": log.next_seq - 1,
    "erases_per_day": rep["erases_per_day"], "writes_per_day": rep["writes_per_day"],
    "bytes_per_day": rep["bytes_written"], "lifetime_days": rep["lifetime_days"],
    "max_block_erases": dev.max_block_erases()}))
os.umount("/flash")
'''


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    image = str(tmp_path_factory.mktemp("flash") / "vfs.bin")
    out = run_micropython("IMAGE = %r\n" % image + DAY, heap="96k", timeout=120)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    return image, json.loads(line[7:])


def test_a_day_of_commits_runs_in_a_96k_heap_with_small_store_objects(day):
    _, r = day
    assert r["ledger"]["credit_milli"] == 5000000 - 37 * 1439
    assert r["events"] == 20
    assert r["objects_bytes"] < 1500, r  # Store + EventLog with their preallocated buffers
    assert r["low_free"] > 40000, r  # plenty of the 96 KB heap left for the rest of the firmware


def test_wear_budget_for_a_commit_a_minute_lasts_beyond_twenty_years(day):
    _, r = day
    assert r["erases_per_day"] > 0
    assert r["lifetime_days"] > 20 * 365, r


def test_image_written_by_micropython_reads_back_on_the_host_with_littlefs_python(day, tmp_path):
    image, r = day
    fs = littlefs.LittleFS(block_size=4096, block_count=BLOCKS, mount=False)
    fs.context.buffer[:] = open(image, "rb").read()
    fs.mount()
    for d in ("state", "events"):
        os.mkdir(tmp_path / d)
        for name in fs.listdir("/" + d):
            with fs.open("/%s/%s" % (d, name), "rb") as f:
                (tmp_path / d / name).write_bytes(f.read())
    assert sorted(os.listdir(tmp_path / "state")) == ["ledger.a", "ledger.b", "tokens.a", "tokens.b"]
    s = Store(str(tmp_path / "state"))
    assert s.load("ledger") == r["ledger"]
    assert s.load("tokens") == {"used": [900, 901]}
    assert s.take_faults() == []
    events = EventLog(str(tmp_path / "events")).since(0, 100)
    assert [e[0] for e in events] == list(range(1, 21))
    assert events[0] == (1, 1767225600, 4, b"tamper?")


def test_littlefs_moves_a_worn_metadata_pair_so_erases_spread_over_blocks():
    # The lifetime sum assumes levelling; check it: small inline commits wear the directory's metadata
    # pair, and littlefs (block_cycles 100 in MicroPython) relocates it instead of wearing it out.
    code = r'''
import os
from store.blockdev import RAMBlockDev
from store.wear import WearCounter
from store import Store
w = WearCounter(RAMBlockDev(16))
os.VfsLfs2.mkfs(w)
os.mount(os.VfsLfs2(w), "/fl")
s = Store("/fl/st")
w.reset()
for i in range(9000):
    s.commit("ledger", {"credit_milli": 123456 - i, "wh": 98765 + i, "t": 1700000000 + 60 * i})
worn = [w.erases_of(b) for b in range(16)]
print("RESULT", w.erases, max(worn), len([e for e in worn if e]))
'''
    out = run_micropython(code, heap="160k", timeout=120)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    erases, worst, blocks_used = map(int, line.split()[1:])
    assert erases > 250
    assert worst <= 110, line  # no block far past littlefs's relocation threshold
    assert blocks_used >= 4, line  # the pair moved at least once
