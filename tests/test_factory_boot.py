"""The simulated ESP32 boots honestly: a valid combined image flashed by `meterkit flash` onto 4, 8 and
16 MiB chips boots the meter in the frozen layout, which is provisioned, self-tested and accepts a token
vended for it; a flash holding no valid bootloader or app, a file system laid for another flash size, or
a blank file system is refused with the loop the real board would be stuck in."""
import json
import random
import subprocess
import sys

import pytest

from host_tools.build.builder import build
from host_tools.build.image import make_image
from host_tools.device.client import ServiceClient
from host_tools.flash import imagegen
from host_tools.flash.boot import BootFailure, boot
from host_tools.provision.line import provision
from host_tools.provision.simline import SimMeterProcess, flash_boards, heap_env
from host_tools.vend import sts_encode
from tokens import dkga04 as fw_dkga04  # noqa: E402  (firmware/ is on the path)

# The vending key in the session's SoftHSM token (conftest); the firmware's software DKGA04 over it is the
# reference the key the module derived for each meter must equal.
VENDING_KEY = "abababababababab949494949494949401234567"
MB = 1 << 20

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("boot")
    m = build("sim", tmp / "build", versions={}, frozen=True)
    (tmp / "fw.bin").write_bytes(imagegen.combined())
    ks = tmp / "keystore.json"
    ks.write_text(json.dumps({"iin": "600727", "base_date": "14",
                              "broker": {"host": "127.0.0.1", "port": 1883}}))
    return tmp, m, ks


@pytest.mark.parametrize("size_mb", [4, 8, 16])
def test_a_frozen_image_boots_provisions_self_tests_and_takes_a_token_on_each_flash_size(built, size_mb):
    tmp, manifest, ks = built
    assert manifest["mode"] == "frozen" and sorted(manifest["files"]) == ["/board.json", "/main.py"]
    work = tmp / f"{size_mb}mb"
    work.mkdir()
    flash = flash_boards(work, 1, tmp / "fw.bin", tmp / "build" / "fs.img", flash_size=size_mb * MB)[0]
    b = boot(flash)
    assert b.flash_size == size_mb * MB and b.vfs_offset == 0x200000 and b.vfs_size == (size_mb - 2) * MB
    meter = SimMeterProcess(flash, work / "meter", env=heap_env(work, None))
    try:
        r = provision(meter.port, str(ks), sgc="123457", ti=1, operator="boot-test", db=str(work / "rec.sqlite"))
        items = {i["item"]: i for i in r["selftest"]}
        assert items["flash"]["pass"] and items["clock"]["pass"] and items["metering_chip"]["pass"], items
        key = fw_dkga04.decoder_key(bytes.fromhex(VENDING_KEY), "123457", 1, 1, 2, r["pan"], "14")
        tid = sts_encode.tid_from_time("2026-01-01T00:00", "14")
        token = sts_encode.build(key, 0, 4, 3, tid, sts_encode.encode_amount(sts_encode.currency_units("10")))["token"]
        with ServiceClient(meter.port, timeout=10) as c:
            assert c.call("token", digits=token)["result"] == "accepted"
    finally:
        meter.stop()


def write_chip(path, size, fw, fs_at=None, fs=None):
    data = bytearray(b"\xff" * size)
    data[0x1000:0x1000 + len(fw)] = fw
    if fs is not None:
        data[fs_at:fs_at + len(fs)] = fs
    path.write_bytes(bytes(data))


FS = make_image({"/main.py": b"import app\napp.main()\n", "/board.json": b"{}"}, 4096, 512)


@pytest.mark.parametrize("case, fw, expect", [
    ("random bytes", random.Random(5).randbytes(200 * 1024), "the ROM does not start the bootloader"),
    ("an ESP32-S3 image", imagegen.esp32s3_combined(), "built for ESP32-S3"),
    ("a bad checksum", imagegen.with_bad_checksum(imagegen.combined()), "the bootloader refuses the app"),
    ("a truncated app", imagegen.combined()[:-20000], "the bootloader refuses the app"),
])
def test_a_chip_without_a_valid_image_does_not_start(tmp_path, case, fw, expect):
    write_chip(tmp_path / "f.bin", 4 * MB, fw, 0x200000, FS)
    with pytest.raises(BootFailure, match=expect):
        boot(tmp_path / "f.bin")


def test_a_file_system_laid_for_4mib_on_an_8mib_module_loops_in_fs_corrupted(tmp_path):
    write_chip(tmp_path / "f.bin", 8 * MB, imagegen.combined(), 0x200000, FS)
    with pytest.raises(BootFailure, match=r"cannot mount the file system at 0x200000 \(1536 blocks.*fs_corrupted"):
        boot(tmp_path / "f.bin")
    write_chip(tmp_path / "ok.bin", 4 * MB, imagegen.combined(), 0x200000, FS)
    assert boot(tmp_path / "ok.bin").vfs_size == 2 * MB  # the same bytes on the module they were laid for


def test_a_blank_file_system_boots_to_a_repl_not_a_meter(tmp_path):
    write_chip(tmp_path / "f.bin", 4 * MB, imagegen.combined())
    with pytest.raises(BootFailure, match="blank"):
        boot(tmp_path / "f.bin")


@pytest.mark.parametrize("verb", [["sim", "start"], ["sim", "esp32", "--boot"]])
def test_sim_start_refuses_an_unbootable_flash_with_one_json_error(tmp_path, verb):
    write_chip(tmp_path / "f.bin", 8 * MB, imagegen.combined(), 0x200000, FS)
    proc = subprocess.run([sys.executable, "-m", "host_tools.cli", *verb, "--json", "--flash",
                           str(tmp_path / "f.bin"), "--link", str(tmp_path / "uart0")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "fs_corrupted" in json.loads(lines[0])["error"], proc.stdout
    assert "Traceback" not in proc.stderr
