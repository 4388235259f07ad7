"""Event log behaviour under CPython on a plain directory: ring order, paging, torn and rotten entries."""
import os

import pytest

from store.eventlog import DATA_MAX, EventLog


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "ev")


def test_empty_log_starts_at_sequence_one(root):
    log = EventLog(root)
    assert log.next_seq == 1
    assert log.since(0) == []
    assert log.append(100, 7, b"hi") == 1
    assert log.since(0) == [(1, 100, 7, b"hi")]


def test_ring_keeps_the_newest_capacity_entries_in_order_across_reboots(root):
    log = EventLog(root, files=3, per_file=4)
    for i in range(1, 31):
        log.append(1000 + i, i % 256, bytes([i]))
    again = EventLog(root, files=3, per_file=4)
    assert again.next_seq == 31
    got = again.since(0, limit=100)
    assert [e[0] for e in got] == list(range(19, 31))
    assert all(e == (s, 1000 + s, s, bytes([s])) for e, s in zip(got, range(19, 31)))
    assert sorted(os.listdir(root)) == ["ev0", "ev1", "ev2"]


def test_since_pages_from_a_sequence_number(root):
    log = EventLog(root, files=2, per_file=8)
    for i in range(1, 13):
        log.append(i, 1)
    page = log.since(5, limit=3)
    assert [e[0] for e in page] == [5, 6, 7]
    page = log.since(page[-1][0] + 1, limit=100)
    assert [e[0] for e in page] == list(range(8, 13))
    assert log.since(13) == []


def test_torn_last_entry_is_dropped_and_its_position_rewritten(root):
    log = EventLog(root, files=2, per_file=8)
    for i in range(1, 6):
        log.append(i, 1, b"ok")
    path = os.path.join(root, "ev0")
    whole = open(path, "rb").read()
    # Tear entry 5 (position 5) at every length: drop it, keep 1..4, then append over it.
    for cut in range(32):
        open(path, "wb").write(whole[:5 * 32 + cut])
        log2 = EventLog(root, files=2, per_file=8)
        assert log2.next_seq == 5, cut
        assert [e[0] for e in log2.since(0)] == [1, 2, 3, 4]
        assert log2.append(99, 2, b"again") == 5
        assert log2.since(5) == [(5, 99, 2, b"again")]
        open(path, "wb").write(whole)


def test_rotten_entry_in_the_middle_is_skipped_not_returned(root):
    log = EventLog(root, files=2, per_file=8)
    for i in range(1, 8):
        log.append(i, 1, b"d")
    path = os.path.join(root, "ev0")
    data = bytearray(open(path, "rb").read())
    data[3 * 32 + 12] ^= 0x40  # entry seq 3 lives at position 3
    open(path, "wb").write(data)
    log2 = EventLog(root, files=2, per_file=8)
    assert [e[0] for e in log2.since(0)] == [1, 2, 4, 5, 6, 7]
    assert log2.next_seq == 8


def test_kind_and_data_limits_are_enforced(root):
    log = EventLog(root)
    with pytest.raises(ValueError):
        log.append(1, 256)
    with pytest.raises(ValueError):
        log.append(1, 1, b"x" * (DATA_MAX + 1))
    assert log.append(1, 255, b"x" * DATA_MAX) == 1
    with pytest.raises(ValueError):
        EventLog(root + "2", per_file=129)
