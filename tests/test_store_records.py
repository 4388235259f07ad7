"""Record store behaviour under CPython on a plain directory: slots, CRC, generations, journal recovery.

A plain directory tears files the way FAT would (no littlefs atomicity), so torn slot and journal
files are made by hand here: the store must stay old-or-new on its own checks alone.
"""
import os

import pytest

from store import Store, StoreCorrupt, StoreMissing
from store import journal, records


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "state")


def slot_bytes(name, gen, obj):
    kind, payload = records.encode(obj)
    hdr = bytearray(20)
    records.header(hdr, name.encode(), kind, gen, payload)
    return bytes(hdr) + payload


def test_missing_record_raises_store_missing_not_a_default(root):
    s = Store(root)
    with pytest.raises(StoreMissing):
        s.load("credit")
    assert s.generation("credit") == 0


def test_commit_then_load_returns_newest_value_and_alternates_slots(root):
    s = Store(root)
    assert s.commit("credit", {"milli": 100}) == 1
    assert s.commit("credit", {"milli": 90}) == 2
    assert s.commit("credit", {"milli": 80}) == 3
    assert Store(root).load("credit") == {"milli": 80}
    assert Store(root).generation("credit") == 3
    assert sorted(os.listdir(root)) == ["credit.a", "credit.b"]
    assert records.parse("credit", open(os.path.join(root, "credit.a"), "rb").read()) == (3, {"milli": 80})
    assert records.parse("credit", open(os.path.join(root, "credit.b"), "rb").read()) == (2, {"milli": 90})


def test_bytes_records_round_trip_as_bytes(root):
    s = Store(root)
    s.commit("keys", b"\x00\xff\x10")
    assert Store(root).load("keys") == b"\x00\xff\x10"


def test_any_flipped_bit_in_newest_slot_is_corrected_or_detected_never_a_wrong_value(root):
    s = Store(root)
    s.commit("credit", {"milli": 100})
    s.commit("credit", {"milli": 90})  # newest is credit.b
    paths = [os.path.join(root, "credit." + x) for x in "ab"]
    good = [open(p, "rb").read() for p in paths]
    corrected = fell_back = 0
    for offset in range(len(good[1])):
        for bit in range(8):
            for p, g in zip(paths, good):
                open(p, "wb").write(g)
            data = bytearray(good[1])
            data[offset] ^= 1 << bit
            open(paths[1], "wb").write(data)
            s2 = Store(root)
            got = s2.load("credit")
            (fault,) = s2.take_faults()
            if good[1][offset] >> bit & 1:
                # A 1 lost (1 -> 0) is not what charge loss does: detected, the previous generation used.
                assert got == {"milli": 100}, (offset, bit)
                assert fault[1] == "credit" and fault[0] in ("slot_corrupt", "slot_newer_lost")
                fell_back += 1
            else:
                # A programmed 0 reading 1 (a worn cell's charge loss): put back from the CRC.
                assert got == {"milli": 90} and fault == ("slot_corrected", "credit"), (offset, bit, got)
                corrected += 1
    assert corrected > 0 and fell_back > 0
    for p, g in zip(paths, good):
        open(p, "wb").write(g)
    assert Store(root).load("credit") == {"milli": 90}


def test_both_slots_corrupt_raises_store_corrupt_and_next_commit_recovers(root):
    s = Store(root)
    s.commit("credit", {"milli": 100})
    s.commit("credit", {"milli": 90})
    for slot in "ab":
        path = os.path.join(root, "credit." + slot)
        data = bytearray(open(path, "rb").read())
        data[-1] ^= 0xFF
        open(path, "wb").write(data)
    s2 = Store(root)
    with pytest.raises(StoreCorrupt):
        s2.load("credit")
    assert s2.take_faults() == [("record_corrupt", "credit")]
    s2.commit("credit", {"milli": 0})
    assert Store(root).load("credit") == {"milli": 0}
    assert Store(root).generation("credit") == 3


def test_slot_copied_onto_another_record_is_refused(root):
    s = Store(root)
    s.commit("credit", {"milli": 1})
    s.commit("debt", {"milli": 2})
    os.replace(os.path.join(root, "credit.a"), os.path.join(root, "debt.b"))
    with pytest.raises(StoreMissing):
        Store(root).load("credit")
    s2 = Store(root)
    assert s2.load("debt") == {"milli": 2}
    assert s2.take_faults() == [("slot_corrupt", "debt")]


def test_torn_slot_write_at_every_length_loads_old_or_new(root):
    # On a tearing file system the slot being written holds any prefix of the new bytes, followed by
    # nothing (truncated), by its old bytes, or by erased bytes.
    s = Store(root)
    s.commit("credit", {"milli": 700, "t": "a"})  # a
    s.commit("credit", {"milli": 500, "t": "b"})  # b, newest; the next commit writes a
    old_a = open(os.path.join(root, "credit.a"), "rb").read()
    new_a = slot_bytes("credit", 3, {"milli": 400, "t": "c"})
    outcomes = set()
    for cut in range(len(new_a) + 1):
        for tail in (b"", old_a[cut:], b"\xff" * max(0, len(new_a) - cut)):
            open(os.path.join(root, "credit.a"), "wb").write(new_a[:cut] + tail)
            v = Store(root).load("credit")
            assert v in ({"milli": 500, "t": "b"}, {"milli": 400, "t": "c"}), (cut, tail, v)
            outcomes.add(v["milli"])
    assert outcomes == {500, 400}


def test_empty_slot_left_by_a_cut_after_create_is_not_a_fault(root):
    s = Store(root)
    s.commit("credit", {"milli": 1})
    open(os.path.join(root, "credit.b"), "wb").close()
    s2 = Store(root)
    assert s2.load("credit") == {"milli": 1}
    assert s2.take_faults() == []


def test_bad_names_and_oversized_payloads_are_refused_before_anything_is_written(root):
    s = Store(root)
    for bad in ("", "_journal", "Credit", "a/b", "x" * 25, "cr.dit"):
        with pytest.raises(ValueError):
            s.commit(bad, {"v": 1})
    with pytest.raises(ValueError):
        s.commit("big", b"x" * (records.MAX_PAYLOAD + 1))
    with pytest.raises(TypeError):
        s.commit("obj", {"v": object()})
    assert os.listdir(root) == []


def test_commit_many_changes_all_records_and_removes_its_journal(root):
    s = Store(root)
    s.commit("credit", {"milli": 10})
    s.commit_many({"credit": {"milli": 20}, "tokens": {"used": [1]}})
    s2 = Store(root)
    assert s2.load("credit") == {"milli": 20}
    assert s2.load("tokens") == {"used": [1]}
    assert s2.generation("credit") == 2 and s2.generation("tokens") == 1
    assert records.JOURNAL not in os.listdir(root)
    assert s2.take_faults() == []


def _journal_for(root, new):
    # The journal commit_many would write for `new`, without applying it (the cut came right after).
    s = Store(root)
    entries = []
    for name in sorted(new):
        kind, payload = records.encode(new[name])
        entries.append((name, kind, s.generation(name) + 1, payload))
    path = os.path.join(root, records.JOURNAL)
    journal.write(path, entries, bytearray(20))
    return path


def test_torn_journal_at_every_length_is_discarded_and_all_records_stay_old(root):
    s = Store(root)
    s.commit_many({"credit": {"milli": 10}, "tokens": {"used": []}})
    path = _journal_for(root, {"credit": {"milli": 20}, "tokens": {"used": [7]}})
    whole = open(path, "rb").read()
    for cut in range(len(whole)):
        open(path, "wb").write(whole[:cut])
        s2 = Store(root)
        assert (s2.load("credit"), s2.load("tokens")) == ({"milli": 10}, {"used": []}), cut
        assert s2.take_faults() == [("journal_discarded", "")]
        assert not os.path.exists(path)


def test_journal_replayed_after_cut_between_records_gives_all_new_and_is_idempotent(root):
    s = Store(root)
    s.commit_many({"credit": {"milli": 10}, "tokens": {"used": []}})
    path = _journal_for(root, {"credit": {"milli": 20}, "tokens": {"used": [7]}})
    s.commit("credit", {"milli": 20})  # the first record was applied, then the power died
    s2 = Store(root)
    assert (s2.load("credit"), s2.load("tokens")) == ({"milli": 20}, {"used": [7]})
    assert s2.generation("credit") == 2 and s2.generation("tokens") == 2
    assert s2.take_faults() == [("journal_replayed", "2")]
    assert not os.path.exists(path)
    # A second replay of the same journal (cut during the removal) changes nothing.
    journal.write(path, [("credit", 0, 2, b'{"milli": 20}'), ("tokens", 0, 2, b'{"used": [7]}')],
                      bytearray(20))
    s3 = Store(root)
    assert s3.generation("credit") == 2 and s3.generation("tokens") == 2
    assert (s3.load("credit"), s3.load("tokens")) == ({"milli": 20}, {"used": [7]})


def test_journal_with_a_flipped_byte_is_refused(root):
    s = Store(root)
    s.commit_many({"a": {"v": 1}, "b": {"v": 1}})
    path = _journal_for(root, {"a": {"v": 2}, "b": {"v": 2}})
    whole = bytearray(open(path, "rb").read())
    for i in range(len(whole)):
        bad = bytearray(whole)
        bad[i] ^= 0x04
        open(path, "wb").write(bad)
        assert journal.check(path, bytearray(128)) == journal.BAD, i
    open(path, "wb").write(whole)
    assert journal.check(path, bytearray(128)) == 2


def test_commit_many_refuses_too_many_records_before_writing_and_ignores_an_empty_step(root):
    s = Store(root)
    s.commit_many({})
    with pytest.raises(ValueError):
        s.commit_many({"r%d" % i: {"v": i} for i in range(17)})
    with pytest.raises(TypeError):
        s.commit_many({"a": {"v": 1}, "b": {"v": object()}})
    assert os.listdir(root) == []


def test_a_bad_slot_is_reported_once_however_often_it_is_loaded(root):
    s = Store(root)
    s.commit("credit", {"milli": 1})
    s.commit("credit", {"milli": 2})
    with open(os.path.join(root, "credit.a"), "r+b") as f:
        f.seek(22)
        f.write(b"#")
    s2 = Store(root)
    for _ in range(3):
        assert s2.load("credit") == {"milli": 2}
    assert s2.take_faults() == [("slot_corrupt", "credit")]
