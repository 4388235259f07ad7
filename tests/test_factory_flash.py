"""`meterkit flash`: several simulated ESP32s flashed at once through esptool as a library, each
verified by MD5, with a valid ESP32 combined image built by esptool's own image classes. The file
system is laid where MicroPython will look for it on each board's real flash size (4, 8, 16 MiB).
Every bad firmware file (random bytes, an ESP32-S3 image, a truncated one, a bad checksum, an app too
big for its partition, a table laid for a larger module) is refused before any board is touched, and
every line failure (no port, wrong chip, a board dying mid-write, a verify mismatch) is reported per
board with a clear message and a non-zero exit."""
import json
import random

import pytest

from host_tools.build.builder import build
from host_tools.build.image import make_image, read_image
from host_tools.cli import main
from host_tools.flash import imagegen, parttable
from host_tools.flash.layout import vfs_image_from_flash, vfs_region_in_flash
from host_tools.flash.rom_link import start_rom

BOARD = "esp32_atm90e26"
FW_OFFSET = 0x1000
MB = 1 << 20
FS_FILES = {"/board.json": json.dumps({"name": BOARD}).encode(), "/main.py": b"import app\napp.main()\n",
            "/data.bin": bytes(range(256)) * 64}


@pytest.fixture
def images(tmp_path):
    fw = imagegen.combined(app_size=200 * 1024)
    (tmp_path / "firmware.bin").write_bytes(fw)
    (tmp_path / "fs.img").write_bytes(make_image(FS_FILES, 4096, 512))
    return tmp_path, fw


def run_flash(capsys, ports, tmp, extra=(), board=BOARD, fs="fs.img", firmware="firmware.bin"):
    rc = main(["flash", "--board", board, "--firmware", str(tmp / firmware), "--fs", str(tmp / fs),
               "--json", *extra] + [a for p in ports for a in ("--port", p)])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # exactly one JSON object on stdout
    return rc, json.loads(out)


def test_four_boards_flashed_at_once_each_verified(images, capsys):
    tmp, fw = images
    roms = [start_rom(tmp / f"flash{i}.bin", link=tmp / f"esp{i}", index=i) for i in range(4)]
    try:
        rc, out = run_flash(capsys, [r.port for r in roms], tmp)
    finally:
        for r in roms:
            r.stop()
    assert rc == 0 and out["ok"] and out["flashed"] == 4 and out["failed"] == 0, out
    assert [r["port"] for r in out["results"]] == [str(tmp / f"esp{i}") for i in range(4)]
    assert len({r["mac"] for r in out["results"]}) == 4
    for i, r in enumerate(out["results"]):
        assert r["ok"] and [x["image"] for x in r["images"]] == ["firmware", "fs"]
        assert all(x["verified"] for x in r["images"]) and r["flash_size"] == "4MB"
        flash = (tmp / f"flash{i}.bin").read_bytes()
        assert flash[FW_OFFSET:FW_OFFSET + len(fw)] == fw
        assert vfs_region_in_flash(tmp / f"flash{i}.bin") == (0x200000, 0x200000)
        assert read_image(vfs_image_from_flash(tmp / f"flash{i}.bin"), 4096) == FS_FILES


@pytest.mark.parametrize("size_mb, table, vfs", [(4, "generic", (0x200000, 2 * MB)),
                                                 (8, "generic", (0x200000, 6 * MB)),
                                                 (16, "generic", (0x200000, 14 * MB)),
                                                 (4, "ota", (0x310000, 0xF0000)),
                                                 (16, "ota-8mib", (0x4F0000, 16 * MB - 0x4F0000))])
def test_the_file_system_is_laid_to_the_end_of_each_boards_physical_flash(tmp_path, capsys, size_mb, table, vfs):
    (tmp_path / "firmware.bin").write_bytes(imagegen.combined(table=table))
    (tmp_path / "fs.img").write_bytes(make_image(FS_FILES, 4096, 512))
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp", flash_size=size_mb * MB) as link:
        rc, out = run_flash(capsys, [link.port], tmp_path)
    assert rc == 0, out
    r = out["results"][0]
    assert r["flash_size"] == f"{size_mb}MB" and r["vfs_offset"] == vfs[0]
    assert vfs_region_in_flash(tmp_path / "f.bin") == vfs
    image = vfs_image_from_flash(tmp_path / "f.bin")
    assert len(image) == vfs[1]
    assert read_image(image, 4096) == FS_FILES  # littlefs built for exactly that block count


BAD_FIRMWARE = {
    "random bytes": (lambda: random.Random(7).randbytes(64 * 1024), "no ESP image magic 0xE9"),
    "an ESP32-S3 image": (imagegen.esp32s3_combined, "built for ESP32-S3, not ESP32"),
    "a truncated image": (lambda: imagegen.combined()[:-3000], "truncated"),
    "a bootloader alone": (lambda: imagegen.bootloader(), "before the partition table"),
    "a bad checksum": (lambda: imagegen.with_bad_checksum(imagegen.combined()), "checksum"),
    "an app too big for its partition": (lambda: imagegen.combined(table="ota", app_size=0x190000),
                                         "its partition 'ota_0' holds 1572864"),
    "a partition table with a bad MD5": (
        lambda: imagegen.combined(entries=parttable.GENERIC_4MIB[:2]
                                  + (("factory", 0, 0, 0x10000, 0x1F0000),)).replace(b"factory", b"factorY"),
        "MD5"),
    "no partition table": (lambda: imagegen.combined()[:0x7000] + b"\xff" * 0x8000 + imagegen.app(),
                           "no partition table at 0x8000"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIRMWARE))
def test_a_bad_firmware_file_is_refused_before_any_board_is_touched(tmp_path, capsys, case):
    make, expect = BAD_FIRMWARE[case]
    (tmp_path / "firmware.bin").write_bytes(make())
    (tmp_path / "fs.img").write_bytes(make_image(FS_FILES, 4096, 512))
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        rc, out = run_flash(capsys, [link.port], tmp_path)
        assert link.rom.requests == 0, f"{case}: the board was contacted"
    assert rc == 2, out
    assert out["error"].startswith("firmware refused: ") and expect in out["error"], (case, out["error"])
    assert "\n" not in out["error"] and out["hint"]
    assert (tmp_path / "f.bin").read_bytes() == b"\xff" * (4 * MB)


def test_a_module_smaller_than_the_image_is_refused_and_left_untouched(tmp_path, capsys):
    (tmp_path / "firmware.bin").write_bytes(imagegen.combined(table="ota-8mib"))
    (tmp_path / "fs.img").write_bytes(make_image(FS_FILES, 4096, 512))
    small = start_rom(tmp_path / "small.bin", link=tmp_path / "small", flash_size=4 * MB)
    big = start_rom(tmp_path / "big.bin", link=tmp_path / "big", index=1, flash_size=8 * MB)
    try:
        rc, out = run_flash(capsys, [small.port, big.port], tmp_path)
        assert small.rom.blocks_written == 0
    finally:
        small.stop()
        big.stop()
    assert rc == 1 and out["flashed"] == 1
    bad, good = out["results"]
    assert not bad["ok"] and "nothing written" in bad["error"] and "only 4096 KB" in bad["error"], bad
    assert good["ok"] and good["flash_size"] == "8MB"
    assert (tmp_path / "small.bin").read_bytes() == b"\xff" * (4 * MB)


def test_a_file_system_built_for_another_board_is_refused(tmp_path, capsys):
    build(BOARD, tmp_path / "build", versions={})
    (tmp_path / "firmware.bin").write_bytes(imagegen.combined())
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        rc, out = run_flash(capsys, [link.port], tmp_path, board="esp32_bl0942", fs="build/fs.img")
        assert link.rom.requests == 0
    assert rc == 2 and "built for board 'esp32_atm90e26', not 'esp32_bl0942'" in out["error"], out


@pytest.mark.parametrize("as_json", [True, False])
def test_a_board_that_is_not_an_esp_chip_is_refused_before_any_port_is_opened(images, capsys, as_json):
    """`--board sim` is the simulator's board (the unix port): refused in the planning step, before the
    (simulated ESP32) chip on the port hears a single request, and pointing at what to do instead."""
    tmp, _ = images
    with start_rom(tmp / "f.bin", link=tmp / "esp") as link:
        argv = ["flash", "--board", "sim", "-p", link.port, "--firmware", str(tmp / "firmware.bin")]
        rc = main(argv + (["--json"] if as_json else []))
        assert link.rom.requests == 0, "the port was opened"
    cap = capsys.readouterr()
    assert rc == 2, cap
    text = json.loads(cap.out)["error"] + " " + json.loads(cap.out)["hint"] if as_json else cap.err
    assert "board sim is not an ESP chip (its MCU is unix)" in text, text
    assert "meterkit sim start" in text and "--board esp32_atm90e26" in text, text
    assert "wrong chip" not in text and "Traceback" not in cap.err
    assert (tmp / "f.bin").read_bytes() == b"\xff" * (4 * MB)


def test_a_file_system_that_is_not_littlefs_is_refused(tmp_path, capsys):
    (tmp_path / "firmware.bin").write_bytes(imagegen.combined())
    (tmp_path / "fs.img").write_bytes(b"\x00" * 8 * 4096)
    rc, out = run_flash(capsys, [str(tmp_path / "unused")], tmp_path)
    assert rc == 2 and "not a littlefs image" in out["error"], out


def test_each_failure_is_reported_per_board_and_the_good_board_still_flashes(images, capsys):
    tmp, fw = images
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
    by = {r["port"].rsplit("/", 1)[-1]: r for r in out["results"]}
    assert by["good"]["ok"]
    assert (tmp / "good.bin").read_bytes()[FW_OFFSET:FW_OFFSET + len(fw)] == fw
    assert "wrong chip" in by["wrong"]["error"] and "ESP32-S2" in by["wrong"]["error"]
    assert "wrong chip" in by["unknown"]["error"]
    assert "stopped answering while writing the firmware image" in by["dies"]["error"]
    assert "verify mismatch in the firmware image" in by["corrupt"]["error"]
    assert "no such port" in by["no-such-port"]["error"]
    assert all(r["hint"] and "\n" not in r["error"] for r in out["results"] if not r["ok"])
    assert wrong.rom.blocks_written == 0  # the wrong chip was never written to
    assert dies.rom.blocks_written == 20


def test_the_flashed_vfs_partition_mounts_as_the_built_image(tmp_path, capsys):
    m = build(BOARD, tmp_path / "build", versions={})
    (tmp_path / "firmware.bin").write_bytes(imagegen.combined())
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        rc = main(["flash", "--board", BOARD, "--port", link.port, "--firmware", str(tmp_path / "firmware.bin"),
                   "--fs", str(tmp_path / "build/fs.img"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["results"][0]["mode"] == m["mode"]
    files = read_image(vfs_image_from_flash(tmp_path / "f.bin"), 4096)
    assert sorted(files) == sorted(m["files"])


def test_a_missing_firmware_file_is_one_clear_line_not_a_traceback(images, capsys):
    tmp, _ = images
    rc, out = run_flash(capsys, ["/dev/null-port"], tmp, firmware="missing.bin")
    assert rc == 2 and out["error"].startswith("cannot read ") and "missing.bin" in out["error"], out


def test_port_auto_flashes_the_one_meter_attached(images, capsys, monkeypatch):
    """`flash -p auto` resolves the port as every verb does (here a simulated board's link named like a
    meter's, no USB bridge on the machine) instead of opening a port called 'auto'."""
    tmp, fw = images
    from host_tools.device import ports
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [])
    monkeypatch.chdir(tmp)
    with start_rom(tmp / "f.bin", link=tmp / "board.meter") as link:
        rc, out = run_flash(capsys, ["auto"], tmp)
        assert link.rom.blocks_written > 0
    assert rc == 0 and out["flashed"] == 1, out
    assert out["results"][0]["port"].endswith("board.meter"), out
    assert (tmp / "f.bin").read_bytes()[FW_OFFSET:FW_OFFSET + len(fw)] == fw


def test_port_auto_with_no_meter_and_a_missing_port_are_said_once(images, capsys, monkeypatch):
    tmp, _ = images
    from host_tools.device import ports
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [])
    monkeypatch.chdir(tmp)
    rc = main(["flash", "--board", BOARD, "-p", "auto", "--firmware", str(tmp / "firmware.bin")])
    cap = capsys.readouterr()
    assert rc == 3 and "--port auto found no meter" in cap.err and "Traceback" not in cap.err, cap
    missing = str(tmp / "nope")
    rc = main(["flash", "--board", BOARD, "-p", missing, "--firmware", str(tmp / "firmware.bin")])
    out = capsys.readouterr().out
    assert rc == 1 and f"{missing}: FAILED  no such port" in out and out.count(missing) == 1, out
