"""Block devices and the power-cut injector under CPython: protocol, torn writes, dead device, reboot."""
import pytest

from store.blockdev import FileBlockDev, PowerCut, RAMBlockDev, TEAR_BITS, TEAR_ERASED, TEAR_OLD


def test_ioctl_reports_geometry_and_erase_sets_ff():
    d = RAMBlockDev(4)
    assert d.ioctl(4, 0) == 4 and d.ioctl(5, 0) == 4096
    assert d.ioctl(1, 0) == 0 and d.ioctl(3, 0) == 0 and d.ioctl(2, 0) == 0
    d.writeblocks(1, b"\x00" * 16, 100)
    d.ioctl(6, 1)
    buf = bytearray(4096)
    d.readblocks(1, buf)
    assert buf == b"\xff" * 4096


def test_extended_write_programs_at_offset_and_simple_write_erases_whole_blocks():
    d = RAMBlockDev(4)
    d.writeblocks(2, b"abc", 10)
    buf = bytearray(5)
    d.readblocks(2, buf, 9)
    assert buf == b"\xffabc\xff"
    d.writeblocks(2, b"\x11" * 4096)
    d.readblocks(2, buf, 9)
    assert buf == b"\x11" * 5


@pytest.mark.parametrize("cut", [0, 1, 17, 63])
def test_cut_after_k_bytes_lands_exactly_k_bytes_then_device_is_dead(cut):
    d = RAMBlockDev(2)
    d.writeblocks(0, b"\x00" * 64, 0)  # old content
    d.ioctl(6, 1)
    d.arm(after_bytes=64 + cut, seed=3, erases=False)
    d.writeblocks(0, b"\x01" * 64, 0)  # 64 bytes pass
    with pytest.raises(PowerCut):
        d.writeblocks(1, b"\x22" * 64, 0)
    addr, landed, mode = d.last_cut
    assert (addr, landed) == (4096, cut)
    got = bytes(d.data[4096:4096 + 64])
    assert got[:cut] == b"\x22" * cut
    tail = got[cut:]
    if mode == TEAR_OLD or mode == TEAR_ERASED:
        assert tail == b"\xff" * (64 - cut)  # old content of an erased block is 0xFF too
    else:
        assert mode == TEAR_BITS and all(t & 0x22 == 0x22 for t in tail)
    # No power: later calls fail with -EIO and change nothing.
    before = bytes(d.data)
    assert d.writeblocks(0, b"\x33" * 64, 0) == -5
    assert d.ioctl(6, 0) == -5
    assert bytes(d.data) == before


def test_tear_modes_follow_the_seed_and_cover_old_erased_and_partial_bits():
    modes = set()
    for seed in range(30):
        d = RAMBlockDev(1)
        d.writeblocks(0, b"\x0f" * 32, 0)
        d.arm(after_writes=0, seed=seed, erases=False)
        with pytest.raises(PowerCut):
            d.writeblocks(0, b"\x00" * 32, 0)
        addr, cut, mode = d.last_cut
        modes.add(mode)
        tail = bytes(d.data[cut:32])
        if mode == TEAR_OLD:
            assert tail == b"\x0f" * (32 - cut)
        elif mode == TEAR_ERASED:
            assert tail == b"\xff" * (32 - cut)
        else:
            assert all(t & ~0x0F & 0xFF == 0 for t in tail)  # bits only cleared from the old 0x0f
        again = RAMBlockDev(1)
        again.writeblocks(0, b"\x0f" * 32, 0)
        again.arm(after_writes=0, seed=seed, erases=False)
        with pytest.raises(PowerCut):
            again.writeblocks(0, b"\x00" * 32, 0)
        assert again.last_cut == d.last_cut and again.data == d.data  # reproducible from the seed
    assert modes == {TEAR_OLD, TEAR_ERASED, TEAR_BITS}


def test_cut_can_tear_an_erase_when_erases_count_as_writes():
    d = RAMBlockDev(2)
    d.writeblocks(1, b"\x00" * 4096, 0)
    d.arm(after_writes=0, seed=5, erases=True)
    with pytest.raises(PowerCut):
        d.ioctl(6, 1)
    addr, cut, mode = d.last_cut
    assert addr == 4096 and d.data[4096:4096 + cut] == b"\xff" * cut
    assert d.data[4096 + cut:8192] != b"\xff" * (4096 - cut) or cut == 4096


def test_reboot_gives_a_live_device_over_the_same_bytes_while_the_old_one_stays_dead():
    d = RAMBlockDev(2)
    d.arm(after_writes=0, seed=1, erases=False)
    with pytest.raises(PowerCut):
        d.writeblocks(0, b"\x00" * 8, 0)
    d2 = d.reboot()
    assert d.dead and not d2.dead and d2.data is d.data
    d2.writeblocks(0, b"\x12", 100)
    assert d.data[100] == 0x12
    assert d.writeblocks(0, b"\x34", 100) == -5 and d.data[100] == 0x12


def test_file_device_creates_an_erased_image_and_persists_writes(tmp_path):
    path = str(tmp_path / "flash.bin")
    d = FileBlockDev(path, 3, offset=4096)
    d.writeblocks(1, b"hello", 7)
    d.close()
    raw = open(path, "rb").read()
    assert len(raw) == 4 * 4096
    assert raw[4096 + 4096 + 7:4096 + 4096 + 12] == b"hello"
    assert raw.count(b"\xff") == len(raw) - 5
    d2 = FileBlockDev(path, 3, offset=4096)
    buf = bytearray(5)
    d2.readblocks(1, buf, 7)
    assert buf == b"hello"
    d2.arm(after_bytes=2, seed=1, erases=False)
    with pytest.raises(PowerCut):
        d2.writeblocks(0, b"WORLD", 0)
    d3 = d2.reboot()
    d3.readblocks(0, buf, 0)
    assert buf[:2] == b"WO"
