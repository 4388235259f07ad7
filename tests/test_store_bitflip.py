"""A bit lost in a worn flash block (a programmed 0 reading 1) is corrected from the record's own CRC,
scrubbed into the other slot and reported once; what cannot be corrected falls back to the other slot
and is reported, never loaded as a wrong value. CPython on a plain directory (the store's own checks)."""
import os

import pytest

from store import Store, StoreCorrupt
from store import records


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "state")


def newest_slot(root, name):
    s = Store(root)
    slot, gen = s._scan(name, name.encode())[:2]
    return os.path.join(root, "%s.%s" % (name, "ab"[slot])), gen


def lose_bit(path, i, bit):
    data = bytearray(open(path, "rb").read())
    data[i] ^= 1 << bit
    open(path, "wb").write(bytes(data))


def zero_bits(path):
    data = open(path, "rb").read()
    return [(i, b) for i in range(len(data)) for b in range(8) if not data[i] >> b & 1]


VALUE = {"credit": 123456, "topups": 98765, "refs": ["s1-1", "s1-2"], "meter": [4021, 17, 0, 3]}


def fresh(tmp_path, k, value=VALUE):
    root = str(tmp_path / ("r%d" % k))
    s = Store(root)
    s.commit("prepaid", dict(value, credit=1))
    s.commit("prepaid", value)
    return root


def test_every_lost_bit_of_the_newest_slot_is_corrected_scrubbed_and_reported_once(tmp_path):
    path, gen = newest_slot(fresh(tmp_path, 0), "prepaid")
    clean = open(path, "rb").read()
    positions = zero_bits(path)
    assert len(positions) > 500
    for k, (i, b) in enumerate(positions):
        root = fresh(tmp_path, k + 1)
        path, gen = newest_slot(root, "prepaid")
        assert open(path, "rb").read() == clean
        lose_bit(path, i, b)
        s = Store(root)
        got = s.load("prepaid")
        assert got == VALUE, "bit %d of byte %d: loaded %r" % (b, i, got)
        assert s.take_faults() == [("slot_corrected", "prepaid")], (i, b)
        # Scrubbed: both slots hold the value whole again, at the next two generations.
        assert s.generation("prepaid") == gen + 2
        assert Store(root).load("prepaid") == VALUE
        assert s.take_faults() == [], "reported more than once (byte %d bit %d)" % (i, b)


def test_a_bit_that_went_from_1_to_0_is_not_explained_by_charge_loss_and_falls_back(root):
    s = Store(root)
    s.commit("prepaid", dict(VALUE, credit=1))
    s.commit("prepaid", VALUE)
    path, gen = newest_slot(root, "prepaid")
    data = bytearray(open(path, "rb").read())
    i = next(k for k in range(20, len(data)) if data[k] & 0x02)
    data[i] &= ~0x02
    open(path, "wb").write(bytes(data))
    s = Store(root)
    assert s.load("prepaid") == dict(VALUE, credit=1)        # the older generation, never a wrong value
    assert ("slot_newer_lost", "prepaid") in s.take_faults()


def test_two_lost_bits_are_detected_not_miscorrected(tmp_path):
    path, gen = newest_slot(fresh(tmp_path, 0), "prepaid")
    zs = zero_bits(path)
    # Many pairs across the slot: none may be corrected into a value that passes.
    for k in range(0, len(zs) - 37, 37):
        root = fresh(tmp_path, k + 1)
        path, gen = newest_slot(root, "prepaid")
        lose_bit(path, *zs[k])
        lose_bit(path, *zs[k + 37])
        s = Store(root)
        assert s.load("prepaid") == dict(VALUE, credit=1), (zs[k], zs[k + 37])
        assert ("slot_corrected", "prepaid") not in s.take_faults()


def test_both_slots_rotten_beyond_correction_is_reported_corrupt(root):
    s = Store(root)
    s.commit("tids", b"\x01\x02\x03\x04" * 8)
    s.commit("tids", b"\x05\x06\x07\x08" * 8)
    for slot in "ab":
        p = os.path.join(root, "tids." + slot)
        zs = zero_bits(p)
        lose_bit(p, *zs[3])
        lose_bit(p, *zs[-3])
    s = Store(root)
    with pytest.raises(StoreCorrupt):
        s.load("tids")
    assert ("record_corrupt", "tids") in s.take_faults()


def test_a_lost_bit_in_the_older_slot_leaves_the_newest_loaded_and_is_not_corrected(root):
    s = Store(root)
    s.commit("pe", b"\x01" + bytes(range(40)))
    s.commit("pe", b"\x01" + bytes(range(1, 41)))
    path, gen = newest_slot(root, "pe")
    other = path[:-1] + ("a" if path.endswith("b") else "b")
    lose_bit(other, *zero_bits(other)[10])
    s = Store(root)
    assert s.load("pe") == b"\x01" + bytes(range(1, 41))
    assert s.generation("pe") == gen
    assert s.take_faults() == [("slot_corrupt", "pe")]


def test_bit_location_from_the_syndrome_matches_brute_force():
    import zlib
    msg = bytearray(b"header-16-bytes!" + bytes(range(200)) + b"prepaid")
    base = zlib.crc32(msg)
    for j in (0, 1, 15, 16, 100, len(msg) - 1):
        for b in range(8):
            m = bytearray(msg)
            m[j] ^= 1 << b
            assert records._bit_at(base ^ zlib.crc32(m), len(msg)) == (j, b)


def test_a_rotten_older_slot_is_reported_once_however_often_the_record_is_checked(root):
    s = Store(root)
    s.commit("pe", b"\x01" + bytes(range(40)))
    s.commit("pe", b"\x01" + bytes(range(1, 41)))
    path, gen = newest_slot(root, "pe")
    other = path[:-1] + ("a" if path.endswith("b") else "b")
    data = bytearray(open(other, "rb").read())
    data[30] ^= 0x03                              # two bits: beyond correction
    open(other, "wb").write(bytes(data))
    s = Store(root)
    seen = []
    for _ in range(50):                          # an energy commit checks the generation every poll
        s.generation("pe")
        s.load("pe")
        seen += s.take_faults()
    assert seen == [("slot_corrupt", "pe")]
