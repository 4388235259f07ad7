"""Wear counting and the lifetime arithmetic."""
import pytest

from store.blockdev import RAMBlockDev
from store.wear import WearCounter, lifetime_days, lifetime_years, per_day


def test_counter_forwards_and_counts_programs_bytes_and_erases_per_block():
    d = RAMBlockDev(4)
    w = WearCounter(d)
    w.ioctl(6, 2)
    w.ioctl(6, 2)
    w.ioctl(6, 3)
    w.writeblocks(2, b"abcd", 8)
    w.writeblocks(1, b"\x00" * 4096)  # simple protocol: an implied erase
    buf = bytearray(4)
    w.readblocks(2, buf, 8)
    assert buf == b"abcd"
    assert (w.erases, w.writes, w.bytes_written) == (4, 2, 4100)
    assert [w.erases_of(b) for b in range(4)] == [0, 1, 2, 1]
    assert w.max_block_erases() == 2
    assert w.ioctl(4, 0) == 4
    w.reset()
    assert (w.erases, w.writes, w.max_block_erases()) == (0, 0, 0)


def test_per_day_scales_and_rounds_up():
    assert per_day(10, 86400) == 10
    assert per_day(1, 3600) == 24
    assert per_day(1, 86401) == 1  # rounded up: the budget is never flattered
    with pytest.raises(ValueError):
        per_day(1, 0)


def test_lifetime_uses_levelled_blocks_and_endurance():
    # 512 blocks (2 MB vfs) x 100,000 cycles / 2,000 erases a day = 25,600 days = 70 years.
    assert lifetime_days(2000, 512) == 25600
    assert lifetime_years(2000, 512) == 70
    # Blocks pinned by static data do not share the wear.
    assert lifetime_days(2000, 512, static_blocks=12) == 25000
    assert lifetime_days(2000, 512, endurance=10000) == 2560
    assert lifetime_days(0, 512) == -1 and lifetime_years(0, 512) == -1
    with pytest.raises(ValueError):
        lifetime_days(1, 4, static_blocks=4)


def test_report_is_a_flat_dict_of_ints():
    w = WearCounter(RAMBlockDev(8))
    for _ in range(6):
        w.ioctl(6, 5)
    r = w.report(43200)
    assert r["erases"] == 6 and r["erases_per_day"] == 12
    assert r["lifetime_days"] == 8 * 100000 // 12
    assert all(isinstance(v, int) for v in r.values())
