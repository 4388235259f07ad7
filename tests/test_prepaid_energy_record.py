"""The energy record `pe`: small enough for littlefs to keep inline (no block erase per commit), laid
over the full record only when it extends that generation, and decoded the same way by the power-cut
checker's independent reader."""
import random
import sys

import pytest

from host_tools.paths import FIRMWARE
from host_tools.sim.scenarios import powercut
from host_tools.sim.world.flashfile import read_image_files
from host_tools.sim.esp32.runner import SimMeter

sys.path.insert(0, str(FIRMWARE))
sys.path.insert(0, str(FIRMWARE.parent / "tests" / "shims"))
from prepaid import core as prepaid  # noqa: E402  (firmware module, runs under CPython too)


def test_varints_round_trip_and_match_the_independent_reader():
    rng = random.Random(5)
    for _ in range(2000):
        vals = [rng.choice([0, 1, -1, rng.randrange(-2**40, 2**40), rng.randrange(0, 300)]) for _ in range(21)]
        b = prepaid.pack_hot(vals)
        assert prepaid.unpack_hot(b) == vals
        assert powercut._varints(b[1:]) == vals
    assert prepaid.unpack_hot(prepaid.pack_hot([300])[:-1]) is None       # truncated
    assert prepaid.unpack_hot(b"\x02\x00") is None                          # another format
    assert prepaid.unpack_hot(b"") is None


def test_overlay_only_onto_the_generation_it_extends():
    full = {"n": 4, "meter": [1, 0, 0, 0], "ledger": {k: 0 for k in prepaid.HOT_LEDGER},
            "policy": {k: 0 for k in prepaid.HOT_POLICY}}
    vals = [10, 3, 0, 0] + list(range(100, 112)) + [20000, 55, 1, 0]
    newer = powercut.overlay_energy(full, prepaid.pack_hot(vals + [4]))
    assert newer["meter"] == [10, 3, 0, 0] and newer["ledger"]["credit"] == 100 and newer["policy"]["today"] == 55
    stale = powercut.overlay_energy(full, prepaid.pack_hot(vals + [3]))
    assert stale == full


@pytest.fixture
def meter():
    load = {"kind": "constant", "name": "steady", "watts": 3000, "pf": 1.0}
    m = SimMeter(seed=2, profile=load, afe="ideal", settings={"meter_period_s": 1, "prepaid": {
        "ledger": {"opening_credit": 10000000}}})
    yield m
    m.close()


def test_energy_commits_are_small_records_and_survive_a_cut_with_a_full_commit_between(meter):
    m = meter
    m.run_for(120)
    v = m.request("credit")
    assert v["energy_commits"] >= 60                          # 3 kW: 0.83 Wh a second, 1 Wh per commit
    files = read_image_files(str(m.flash_path), m.flash.size, m.flash.block_size)
    slot = max((files.get(n, b"") for n in ("pe.a", "pe.b")), key=len)
    assert 20 < len(slot) <= 128, len(slot)                  # inline in littlefs (<= its 128-byte cache)
    r = m.request("topup", amount=500, ref="t-1")
    assert r.get("applied"), r
    m.run_for(30)                                            # energy commits on top of the new generation
    before = m.request("totals", fresh=True)["import_wh"]
    m.power_cut()
    m.run_for(2)
    after = m.request("credit")
    assert after["topups"] == 500 and after["check"] is None
    assert before - 2 <= m.request("totals", fresh=False)["import_wh"] <= before + 2
    rec = powercut.committed_record(m.flash)
    assert rec["ledger"]["topups"] == 500 and rec["n"] >= 2


def test_export_energy_is_committed_like_import(meter):
    m = meter
    m.world.tamper(line_reversed=True)            # 3 kW registered as export
    m.run_for(60)
    c0 = m.request("credit")["energy_commits"]
    m.run_for(60)
    assert m.request("credit")["energy_commits"] - c0 >= 30
    before = m.request("totals", fresh=True)["export_wh"]
    assert before >= 80
    m.power_cut()
    m.run_for(1)
    assert before - 2 <= powercut.committed_record(m.flash)["meter"][2] <= before + 2
