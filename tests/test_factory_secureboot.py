"""The factory line with secure boot v2 end to end: a simulated silicon-v3 ESP32 is flashed and sealed
with `--secure-boot-key` (bootloader and app signed, then encrypted; flash encryption eFuses, then the key
digest and ABS_DONE_1), boots as a meter, is provisioned and passes its self-test. Images put on it
afterwards do not boot: a plain image written over esptool (what download mode allows), and, with the
flash encryption key in hand (the worst case: encryption no longer protects), an unsigned image or one
re-signed with another key."""
import json
import shutil

import esptool
import pytest

from host_tools.build.builder import build
from host_tools.flash import espimage, imagegen, parttable, secureboot
from host_tools.flash.boot import BootFailure, boot
from host_tools.flash.crypt import FlashCipher
from host_tools.flash.flasher import flash_many
from host_tools.flash.rom_link import start_rom
from host_tools.paths import board_dir
from host_tools.provision.line import provision
from host_tools.provision.simline import SimMeterProcess, heap_env, sim_board_on_esp32

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secboot-line")
    build("sim", tmp / "build", versions={}, frozen=True)
    table = parttable.from_csv((board_dir("esp32_atm90e26") / "partitions.csv").read_text())
    fw = imagegen.combined(entries=table, boot=imagegen.bootloader(size=20 * 1024))
    (tmp / "fw.bin").write_bytes(fw)
    secureboot.generate_signing_key(tmp / "line.pem")
    secureboot.generate_signing_key(tmp / "other.pem")
    ks = tmp / "keystore.json"
    ks.write_text(json.dumps({"iin": "600727", "base_date": "14", "broker": {"host": "127.0.0.1", "port": 1883}}))
    with start_rom(tmp / "board.bin", link=tmp / "esp", index=50) as link:
        flashed = flash_many([link.port], sim_board_on_esp32(), tmp / "fw.bin", tmp / "build" / "fs.img",
                             show_progress=False, seal=True, keep_download_mode=True,
                             secure_boot_key=str(tmp / "line.pem"))[0]
    meter = SimMeterProcess(tmp / "board.bin", tmp / "meter", env=heap_env(tmp, None))
    try:
        provisioned = provision(meter.port, str(ks), sgc="123457", ti=1, operator="secboot-test",
                                db=str(tmp / "records.sqlite"))
    finally:
        meter.stop()
    return {"tmp": tmp, "fw": fw, "flashed": flashed, "provisioned": provisioned}


def _copy_chip(tmp, name):
    """A copy of the sealed board (flash and eFuses, with the key the silicon keeps)."""
    for ext in ("", ".efuse", ".efuse.silicon"):
        shutil.copy(str(tmp / "board.bin") + ext, str(tmp / f"{name}.bin") + ext)
    return tmp / f"{name}.bin"


def test_a_v3_board_sealed_with_secure_boot_boots_is_provisioned_and_passes_its_self_test(line):
    r = line["flashed"]
    assert r["ok"] and r["sealed"] and r["secure_boot"] and r["efuses"]["ABS_DONE_1"] is True, r
    b = boot(line["tmp"] / "board.bin")
    assert b.efuses.secure_boot_v2 and b.efuses.flash_encryption and b.vfs_encrypted
    assert b.efuses.secure_boot_digest().hex() == r["secure_boot_key_digest"]
    p = line["provisioned"]
    items = {i["item"]: i for i in p["selftest"]}
    assert p["pan"] and items["flash"]["pass"] and items["metering_chip"]["pass"], items


def test_a_plain_image_written_over_esptool_afterwards_does_not_boot(line):
    tmp = line["tmp"]
    chip = _copy_chip(tmp, "reflashed")
    with start_rom(chip, link=tmp / "reflash", index=50) as link:
        esptool.main(["--chip", "esp32", "--port", link.port, "--before", "no-reset", "--after", "no-reset",
                      "--no-stub", "--connect-attempts", "1", "write-flash", "--force", "0x1000",
                      str(tmp / "fw.bin")])  # --force: esptool itself warns against plaintext on an encrypted chip
    with pytest.raises(BootFailure, match="the ROM does not start the bootloader"):
        boot(chip)


def _encrypted_over(tmp, name, firmware):
    """The board with `firmware` written encrypted under its own flash encryption key."""
    chip = _copy_chip(tmp, name)
    key = open(str(chip) + ".efuse.silicon", "rb").read()
    data = bytearray(chip.read_bytes())
    enc = FlashCipher(key).encrypt_padded(0x1000, firmware)
    data[0x1000:0x1000 + len(enc)] = enc
    chip.write_bytes(bytes(data))
    return chip


def test_with_the_flash_key_in_hand_unsigned_or_foreign_signed_images_are_still_refused(line):
    tmp, fw = line["tmp"], line["fw"]
    checked = espimage.check_firmware(fw)
    other = secureboot.read_signing_key(tmp / "other.pem")
    cases = [("unsigned", fw, r"the ROM does not start the bootloader: secure boot v2: no secure boot v2 signature "
                              r"block after the image: an unsigned image; it prints 'secure boot check fail'"),
             ("resigned", secureboot.sign_firmware(checked, other),
              "the ROM does not start the bootloader: secure boot v2: signed with a key whose digest is not the one "
              "burnt in BLOCK2")]
    good = secureboot.sign_firmware(checked, secureboot.read_signing_key(tmp / "line.pem"))
    app_at = espimage.APP_OFFSET - espimage.BOOTLOADER_OFFSET
    cases.append(("app-resigned", good[:app_at] + secureboot.sign(fw[app_at:app_at + checked.app_size], other),
                  "the bootloader refuses the app: secure boot v2: signed with a key whose digest is not"))
    for name, firmware, expect in cases:
        with pytest.raises(BootFailure, match=expect):
            boot(_encrypted_over(tmp, name, firmware))
    # the control: the line's own signed image, encrypted the same way, boots
    assert boot(_encrypted_over(tmp, "control", good)).efuses.secure_boot_v2
