"""`meterkit flash`: several simulated ESP32s flashed at once through esptool as a library, each
verified by MD5; every line failure (no port, wrong chip, a board dying mid-write, a verify
mismatch, an image too big) is reported per board with a clear message and a non-zero exit."""
import json
import os

import pytest

from host_tools.cli import main
from host_tools.flash.layout import vfs_image_from_flash
from host_tools.flash.rom_link import start_rom

BOARD = "esp32_atm90e26"
FW_OFFSET, VFS_OFFSET, VFS_SIZE = 0x1000, 0x200000, 0x200000


@pytest.fixture
def images(tmp_path):
    fw = os.urandom(200 * 1024)  # random: does not compress, so progress and writes are real
    img = os.urandom(16 * 4096)
    (tmp_path / "firmware.bin").write_bytes(fw)
    (tmp_path / "fs.img").write_bytes(img)
    return tmp_path, fw, img


def run_flash(capsys, ports, tmp, extra=()):
    rc = main(["flash", "--board", BOARD, "--firmware", str(tmp / "firmware.bin"), "--fs", str(tmp / "fs.img"),
               "--json", *extra] + [a for p in ports for a in ("--port", p)])
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return rc, json.loads(out)


def test_four_boards_flashed_at_once_each_verified(images, capsys):
    tmp, fw, img = images
    roms = [start_rom(tmp / f"flash{i}.bin", link=tmp / f"esp{i}", index=i) for i in range(4)]
    try:
        rc, out = run_flash(capsys, [r.port for r in roms], tmp)
    finally:
        for r in roms:
            r.stop()
    assert rc == 0 and out["ok"] and out["flashed"] == 4 and out["failed"] == 0
    assert [r["port"] for r in out["results"]] == [str(tmp / f"esp{i}") for i in range(4)]
    assert len({r["mac"] for r in out["results"]}) == 4
    for i, r in enumerate(out["results"]):
        assert r["ok"] and [x["image"] for x in r["images"]] == ["firmware", "fs"]
        assert all(x["verified"] for x in r["images"])
        flash = (tmp / f"flash{i}.bin").read_bytes()
        assert flash[FW_OFFSET:FW_OFFSET + len(fw)] == fw
        vfs = vfs_image_from_flash(tmp / f"flash{i}.bin", BOARD)
        assert len(vfs) == VFS_SIZE and vfs[:len(img)] == img and vfs[len(img):] == b"\xff" * (VFS_SIZE - len(img))


def test_each_failure_is_reported_per_board_and_the_good_board_still_flashes(images, capsys):
    tmp, fw, _img = images
    good = start_rom(tmp / "good.bin", link=tmp / "good", index=1)
    wrong = start_rom(tmp / "wrong.bin", link=tmp / "wrong", index=2, chip="esp32s2")
    unknown = start_rom(tmp / "unk.bin", link=tmp / "unknown", index=3, chip="unknown")
    dies = start_rom(tmp / "dies.bin", link=tmp / "dies", index=4, die_after_blocks=20)
    corrupt = start_rom(tmp / "bad.bin", link=tmp / "corrupt", index=5, corrupt_block=3)
    roms = [good, wrong, unknown, dies, corrupt]
    ports = [r.port for r in roms] + [str(tmp / "no-such-port")]
    try:
        rc, out = run_flash(capsys, ports, tmp, extra=("--block-timeout", "0.3"))
    finally:
        for r in roms:
            r.stop()
    assert rc == 1 and not out["ok"] and out["flashed"] == 1 and out["failed"] == 5
    by = {os.path.basename(r["port"]): r for r in out["results"]}
    assert by["good"]["ok"]
    assert (tmp / "good.bin").read_bytes()[FW_OFFSET:FW_OFFSET + len(fw)] == fw
    assert "wrong chip" in by["wrong"]["error"] and "ESP32-S2" in by["wrong"]["error"]
    assert "wrong chip" in by["unknown"]["error"]
    assert "stopped answering while writing the firmware image" in by["dies"]["error"]
    assert "verify mismatch in the firmware image" in by["corrupt"]["error"]
    assert "no such port" in by["no-such-port"]["error"]
    assert all(r["hint"] for r in out["results"] if not r["ok"])
    assert wrong.rom.blocks_written == 0  # the wrong chip was never written to
    assert dies.rom.blocks_written == 20


def test_image_too_large_is_refused_before_any_board_is_touched(tmp_path, capsys):
    (tmp_path / "firmware.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "fs.img").write_bytes(b"\x00" * (VFS_SIZE + 4096))
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        rc, out = run_flash(capsys, [link.port], tmp_path)
        assert link.rom.requests == 0
    assert rc == 2
    assert "vfs partition holds 2097152" in out["error"] and out["hint"]
    assert (tmp_path / "f.bin").read_bytes() == b"\xff" * (4 * 1024 * 1024)


def test_firmware_overlapping_the_vfs_partition_is_refused(tmp_path, capsys):
    (tmp_path / "firmware.bin").write_bytes(b"\x00" * (VFS_OFFSET - FW_OFFSET + 1))
    (tmp_path / "fs.img").write_bytes(b"\x00" * 4096)
    rc, out = run_flash(capsys, [str(tmp_path / "unused")], tmp_path)
    assert rc == 2 and "below the vfs partition" in out["error"]


def test_the_flashed_vfs_partition_mounts_as_the_built_image(tmp_path, capsys):
    from host_tools.build.builder import build
    from host_tools.build.image import read_image
    m = build(BOARD, tmp_path / "build", versions={})
    (tmp_path / "firmware.bin").write_bytes(os.urandom(4096))
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        rc = main(["flash", "--board", BOARD, "--port", link.port, "--firmware", str(tmp_path / "firmware.bin"),
                   "--fs", str(tmp_path / "build/fs.img"), "--json"])
    capsys.readouterr()
    assert rc == 0
    files = read_image(vfs_image_from_flash(tmp_path / "f.bin", BOARD), 4096)
    assert sorted(files) == sorted(m["files"])
