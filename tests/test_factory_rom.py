"""The simulated ESP32 ROM: esptool (as a library, in-process, and as `meterkit sim esp32` in its own
process) connects, detects, reads the flash id, writes plain and compressed, verifies, reads back
and erases regions; erase-flash is refused like the real ROM."""
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys

import random

import esptool
import pytest

from host_tools.flash import imagegen, slip
from host_tools.flash.rom import RomSimulator, checksum, mac_for
from host_tools.flash.rom_link import start_rom


def esptool_run(port, *args):
    """esptool.main in-process, as the project uses it."""
    esptool.main(["--chip", "esp32", "--port", port, "--before", "no-reset", "--after", "no-reset",
                  "--no-stub", *args])


@pytest.fixture
def board(tmp_path):
    link = start_rom(tmp_path / "flash.bin", link=tmp_path / "esp", index=7)
    yield link, tmp_path
    link.stop()


def flash_bytes(tmp_path, addr, n):
    with open(tmp_path / "flash.bin", "rb") as f:
        f.seek(addr)
        return f.read(n)


def test_new_flash_file_is_4mb_erased(board):
    _link, tmp = board
    data = (tmp / "flash.bin").read_bytes()
    assert len(data) == 4 * 1024 * 1024 and data == b"\xff" * len(data)


def test_esptool_detects_esp32_and_reads_flash_id_and_mac(board, capsys):
    link, _ = board
    esptool.main(["--chip", "auto", "--port", link.port, "--before", "no-reset", "--after", "no-reset",
                  "--no-stub", "flash-id"])
    out = capsys.readouterr().out
    assert "Detecting chip type... ESP32" in out
    assert "24:0a:c4:00:00:07" in out
    assert "Detected flash size: 4MB" in out


def test_plain_and_compressed_writes_land_where_asked_and_verify(board, capsys):
    link, tmp = board
    plain = imagegen.bootloader()  # a real ESP image, as the line writes at 0x1000
    packed = bytes(range(256)) * 200  # compresses well, so -z really sends a deflate stream
    (tmp / "a.bin").write_bytes(plain)
    (tmp / "b.bin").write_bytes(packed)
    esptool_run(link.port, "write-flash", "--no-compress", "0x1000", str(tmp / "a.bin"))
    esptool_run(link.port, "write-flash", "-z", "0x20000", str(tmp / "b.bin"))
    out = capsys.readouterr().out
    assert "compressed" in out  # esptool reports "Wrote N bytes (M compressed)"
    assert flash_bytes(tmp, 0x1000, len(plain)) == plain
    assert flash_bytes(tmp, 0x20000, len(packed)) == packed
    esptool_run(link.port, "verify-flash", "0x1000", str(tmp / "a.bin"), "0x20000", str(tmp / "b.bin"))
    assert "digest matched" in capsys.readouterr().out


def test_read_flash_returns_what_was_written(board):
    link, tmp = board
    data = random.Random(3).randbytes(300)  # data, not firmware: read back byte for byte
    (tmp / "a.bin").write_bytes(data)
    esptool_run(link.port, "write-flash", "0x3000", str(tmp / "a.bin"))
    esptool_run(link.port, "read-flash", "0x3000", "300", str(tmp / "back.bin"))
    assert (tmp / "back.bin").read_bytes() == data


def test_erase_region_erases_only_that_region(board):
    link, tmp = board
    (tmp / "a.bin").write_bytes(b"\x00" * 0x3000)
    esptool_run(link.port, "write-flash", "0x10000", str(tmp / "a.bin"))
    esptool_run(link.port, "erase-region", "0x11000", "0x1000")
    assert flash_bytes(tmp, 0x10000, 0x1000) == b"\x00" * 0x1000
    assert flash_bytes(tmp, 0x11000, 0x1000) == b"\xff" * 0x1000
    assert flash_bytes(tmp, 0x12000, 0x1000) == b"\x00" * 0x1000


def test_erase_flash_is_refused_like_the_real_rom(board):
    link, _ = board
    with pytest.raises(esptool.FatalError, match="ROM does not support function erase_flash"):
        esptool_run(link.port, "erase-flash")


def test_corrupt_block_fault_makes_esptool_verify_fail(tmp_path):
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp", corrupt_block=2) as link:
        (tmp_path / "a.bin").write_bytes(imagegen.bootloader()[:8192])
        with pytest.raises(esptool.FatalError, match="MD5 of file does not match"):
            esptool_run(link.port, "write-flash", "--no-compress", "0x1000", str(tmp_path / "a.bin"))


def test_wrong_chip_fault_is_detected_as_another_chip(tmp_path, capsys):
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp", chip="esp32s2") as link:
        esptool.main(["--port", link.port, "--before", "no-reset", "--after", "no-reset", "--no-stub", "chip-id"])
    assert "ESP32-S2" in capsys.readouterr().out


def test_tcp_port_works_for_esptool(tmp_path):
    with start_rom(tmp_path / "flash.bin", tcp_port=0) as link:
        assert link.port.startswith("socket://127.0.0.1:")
        (tmp_path / "a.bin").write_bytes(b"meter" * 1000)
        esptool_run(link.port, "write-flash", "0x8000", str(tmp_path / "a.bin"))
        assert flash_bytes(tmp_path, 0x8000, 5000) == b"meter" * 1000


def test_each_board_has_its_own_mac():
    assert len({mac_for(i) for i in range(100)}) == 100


def test_protocol_rejects_bad_checksum_and_unknown_commands(tmp_path):
    rom = RomSimulator(tmp_path / "f.bin")
    begin = struct.pack("<IIII", 0x1000, 1, 0x400, 0x1000)
    rom.handle(struct.pack("<BBHI", 0, 0x02, len(begin), 0) + begin)
    payload = b"\x11" * 0x400
    body = struct.pack("<IIII", len(payload), 0, 0, 0) + payload
    bad = rom.handle(struct.pack("<BBHI", 0, 0x03, len(body), checksum(payload) ^ 1) + body)
    assert bad[0][-4:-2] == bytes([1, 0x07])
    good = rom.handle(struct.pack("<BBHI", 0, 0x03, len(body), checksum(payload)) + body)
    assert good[0][-4:-2] == bytes([0, 0])
    assert rom.flash.read(0x1000, 0x400) == payload
    unknown = rom.handle(struct.pack("<BBHI", 0, 0x66, 0, 0))
    assert unknown[0][-4:-2] == bytes([1, 0x05])
    rom.close()


def test_slip_round_trips_escape_bytes():
    frame = bytes([0xC0, 0xDB, 1, 0xC0, 0xDC, 0xDD])
    dec = slip.Decoder()
    got = dec.feed(b"noise" + slip.encode(frame)[:3]) + dec.feed(slip.encode(frame)[3:] + slip.encode(b"x"))
    assert got == [frame, b"x"]


def test_sim_esp32_cli_runs_until_sigterm_and_cleans_up(tmp_path):
    link = tmp_path / "esp"
    proc = subprocess.Popen([sys.executable, "-m", "host_tools.cli", "sim", "esp32", "--link", str(link),
                             "--flash", str(tmp_path / "f.bin"), "--index", "2", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["port"] == str(link) and ready["flash"] == str(tmp_path / "f.bin")
        assert os.path.islink(link)
        data = imagegen.bootloader()[:4096]
        (tmp_path / "a.bin").write_bytes(data)
        esptool_run(str(link), "write-flash", "0x1000", str(tmp_path / "a.bin"))
        with open(tmp_path / "f.bin", "rb") as f:
            f.seek(0x1000)
            assert hashlib.md5(f.read(4096)).digest() == hashlib.md5(data).digest()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    assert rc == 0
    assert not os.path.lexists(link)


@pytest.mark.parametrize("mb", [4, 8, 16])
def test_esptool_reads_the_modules_flash_size(tmp_path, capsys, mb):
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp", flash_size=mb << 20) as link:
        esptool_run(link.port, "flash-id")
    assert f"Detected flash size: {mb}MB" in capsys.readouterr().out
    assert os.path.getsize(tmp_path / "f.bin") == mb << 20


def test_a_flash_file_of_another_size_is_refused(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"\xff" * (4 << 20))
    from host_tools.errors import UsageError
    with pytest.raises(UsageError, match="expected 8388608"):
        RomSimulator(tmp_path / "f.bin", flash_size=8 << 20)
