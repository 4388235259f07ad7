"""Secure boot v2 on the factory line and in the simulated ESP32 (host_tools/flash/secureboot.py): espsecure
signs the bootloader and the app, the chip verifies each signature block against the key digest burnt
in BLOCK2; a board older than silicon v3 is refused before anything is written; the record holds the
key's digest and never the key; the simulated OTA bootloader refuses an unsigned or foreign-signed slot
and falls back to the running one."""
import json

import pytest

from host_tools.build.builder import build
from host_tools.cli import main
from host_tools.errors import UsageError
from host_tools.flash import espimage, imagegen, otadata, parttable, secureboot
from host_tools.flash.boot import BootFailure, boot
from host_tools.flash.efuse import ChipEfuses
from host_tools.flash.flasher import flash_many
from host_tools.flash.rom_link import start_rom
from host_tools.paths import board_dir
from host_tools.provision.records import RecordDB
from host_tools.provision.simline import sim_board_on_esp32
from host_tools.sim.esp32 import otachip

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("sbkeys")
    secureboot.generate_signing_key(d / "line.pem")
    secureboot.generate_signing_key(d / "other.pem")
    return {"dir": d, "line": d / "line.pem", "other": d / "other.pem",
            "pem": secureboot.read_signing_key(d / "line.pem"),
            "other_pem": secureboot.read_signing_key(d / "other.pem")}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The board's own table, a bootloader small enough to take its signature sector before 0x8000,
    and the sim board's frozen-layout file system."""
    tmp = tmp_path_factory.mktemp("sbimg")
    build("sim", tmp / "build", versions={}, frozen=True)
    table = parttable.from_csv((board_dir("esp32_atm90e26") / "partitions.csv").read_text())
    fw = imagegen.combined(entries=table, boot=imagegen.bootloader(size=20 * 1024))
    (tmp / "fw.bin").write_bytes(fw)
    return {"tmp": tmp, "fw": tmp / "fw.bin", "fs": tmp / "build" / "fs.img", "table": table}


def test_a_signed_image_verifies_against_its_key_digest_and_nothing_else(keys):
    app = imagegen.app(40 * 1024, seed=7)
    _img, n = espimage._load(app, "app", "esp32")
    signed = secureboot.sign(app, keys["pem"])
    start, end = secureboot.signed_length(n)
    assert len(signed) == end and signed[:n] == app and start % 4096 == 0, (len(signed), n)
    digest = secureboot.key_digest(keys["pem"])
    secureboot.verify(signed, n, digest, "app")              # no exception: it boots
    with pytest.raises(secureboot.SignatureError, match="an unsigned image"):
        secureboot.verify(app + b"\xff" * 8192, n, digest, "app")
    with pytest.raises(secureboot.SignatureError, match="digest is not the one burnt in BLOCK2"):
        secureboot.verify(secureboot.sign(app, keys["other_pem"]), n, digest, "app")
    tampered = bytearray(signed)
    tampered[0x300] ^= 0x01
    with pytest.raises(secureboot.SignatureError, match="changed after it was signed"):
        secureboot.verify(bytes(tampered), n, digest, "app")


def test_signing_a_combined_image_signs_bootloader_and_app_and_refuses_a_bootloader_that_would_not_fit(keys, images):
    fw = images["fw"].read_bytes()
    checked = espimage.check_firmware(fw)
    signed = secureboot.sign_firmware(checked, keys["pem"])
    again = espimage.check_firmware(signed)                 # still a valid combined image
    digest = secureboot.key_digest(keys["pem"])
    _b, boot_len = espimage._load(signed, "bootloader", "esp32")
    secureboot.verify(signed[:0x7000], boot_len, digest, "bootloader")
    app_at = espimage.APP_OFFSET - espimage.BOOTLOADER_OFFSET
    secureboot.verify(signed[app_at:], again.app_size, digest, "app")
    assert signed[0x7000:0x7000 + 64] == fw[0x7000:0x7000 + 64], "the partition table must not move"
    assert secureboot.sign_firmware(again, keys["pem"]) == signed, "an image signed by this key is kept as it is"
    with pytest.raises(UsageError, match="already signed"):
        secureboot.sign_firmware(espimage.check_firmware(secureboot.sign_firmware(checked, keys["other_pem"])),
                                 keys["pem"])
    big = espimage.check_firmware(imagegen.combined(entries=images["table"]))   # a 24 KB bootloader
    with pytest.raises(UsageError, match="would run into the partition table at 0x8000"):
        secureboot.sign_firmware(big, keys["pem"])


def test_a_board_before_silicon_v3_is_refused_untouched_unless_the_line_skips_secure_boot(keys, images):
    tmp = images["tmp"]
    with start_rom(tmp / "rev1.bin", link=tmp / "rev1", index=41, chip_rev=1) as link:
        r = flash_many([link.port], sim_board_on_esp32(), images["fw"], images["fs"], show_progress=False,
                       seal=True, keep_download_mode=True, secure_boot_key=str(keys["line"]))[0]
        blocks = link.rom.blocks_written
        summary = link.rom.efuses.summary()
    assert not r["ok"] and "silicon revision v1.0 has no secure boot v2" in r["error"], r
    assert "--skip-secure-boot-on-old-silicon" in r["hint"]
    assert blocks == 0 and (tmp / "rev1.bin").read_bytes() == b"\xff" * (4 << 20), "the board was written to"
    assert not summary["flash_encryption"] and not summary["secure_boot_v2"] and summary["chip_revision"] == 100
    with start_rom(tmp / "rev1.bin", link=tmp / "rev1", index=41) as link:
        r = flash_many([link.port], sim_board_on_esp32(), images["fw"], images["fs"], show_progress=False,
                       seal=True, keep_download_mode=True, secure_boot_key=str(keys["line"]),
                       skip_secure_boot_on_old_silicon=True)[0]
    assert r["ok"] and r["sealed"] and r["secure_boot"] is False and r["efuses"]["ABS_DONE_1"] is False, r
    b = boot(tmp / "rev1.bin")                               # flash encryption only; the signed image boots
    assert b.efuses.flash_encryption and not b.efuses.secure_boot_v2


def test_the_cli_seals_with_secure_boot_and_records_the_digest_never_the_key(keys, images, capsys):
    tmp = images["tmp"]
    build("esp32_atm90e26", tmp / "esp-build", versions={}, frozen=True)
    with start_rom(tmp / "cli.bin", link=tmp / "cli", index=42) as link:
        rc = main(["flash", "--board", "esp32_atm90e26", "--port", link.port, "--firmware", str(images["fw"]),
                   "--fs", str(tmp / "esp-build" / "fs.img"), "--seal", "--keep-download-mode",
                   "--secure-boot-key", str(keys["line"]), "--db", str(tmp / "cli.sqlite"), "--operator", "op9",
                   "--json"])
        burnt = link.rom.efuses.secure_boot_digest()
        enabled = link.rom.efuses.secure_boot_v2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    res = out["results"][0]
    assert rc == 0 and res["secure_boot"] is True and res["chip_revision"] == 300, out
    assert enabled and res["efuses"]["ABS_DONE_1"] is True and res["efuses"]["RD_DIS_write_protected"] is True
    digest = secureboot.key_digest(keys["pem"])
    assert burnt == digest and res["secure_boot_key_digest"] == digest.hex(), (burnt, res)
    db = RecordDB(tmp / "cli.sqlite")
    rec = db.seal_record(res["mac"])
    db.close()
    assert rec["secure_boot"] == 1 and rec["secure_boot_key_digest"] == digest.hex() and rec["chip_revision"] == 300
    assert rec["firmware_sha256"] == res["firmware_sha256"] != __import__("hashlib").sha256(images["fw"].read_bytes()).hexdigest()
    from cryptography.hazmat.primitives import serialization
    priv = serialization.load_pem_private_key(keys["pem"], password=None).private_numbers()
    secrets = [keys["pem"], b"PRIVATE KEY", keys["pem"].splitlines()[1], format(priv.d, "x")[:64].encode(),
               format(priv.p, "x")[:64].encode()]
    raw = (tmp / "cli.sqlite").read_bytes()
    said = (captured.out + captured.err).encode()
    leaked = [s[:20] for s in secrets if s in raw or s in said]
    assert not leaked, f"signing key material in the record or the output: {leaked}"
    assert boot(tmp / "cli.bin").efuses.secure_boot_v2


def test_bad_secure_boot_options_are_one_line_errors_and_touch_no_board(keys, images, capsys, tmp_path):
    (tmp_path / "junk.pem").write_text("not a key\n")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa2048.pem").write_bytes(small.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                                                 serialization.NoEncryption()))
    cases = [(["--seal", "--secure-boot-key", str(tmp_path / "junk.pem")], "is not an unencrypted PEM private key"),
             (["--seal", "--secure-boot-key", str(tmp_path / "rsa2048.pem")], "RSA-2048 key; secure boot v2 on the ESP32 needs RSA-3072"),
             (["--seal", "--secure-boot-key", str(tmp_path / "missing.pem")], "cannot read the secure boot signing key"),
             (["--secure-boot-key", str(keys["line"])], "--secure-boot-key needs --seal")]
    with start_rom(tmp_path / "b.bin", link=tmp_path / "esp", index=43) as link:
        for extra, expect in cases:
            rc = main(["flash", "--board", "esp32_atm90e26", "--port", link.port, "--firmware", str(images["fw"]),
                       "--db", str(tmp_path / "r.sqlite"), "--json", *extra])
            out = capsys.readouterr()
            assert rc == 2 and expect in out.out + out.err, (extra, rc, out)
            assert "Traceback" not in out.err and "not a key" not in out.out + out.err
        assert link.rom.requests == 0, "a board was touched"


def test_chip_revision_is_what_esptool_reads_through_the_port(tmp_path):
    import esptool
    for rev, text in ((3, "revision v3.0"), (1, "revision v1.0"), (0, "revision v0.0")):
        with start_rom(tmp_path / f"r{rev}.bin", link=tmp_path / f"r{rev}", chip_rev=rev) as link:
            esp = esptool.cmds.detect_chip(link.port, connect_mode="no-reset", connect_attempts=1)
            try:
                assert text in esp.get_chip_description() and esp.get_chip_revision() == rev * 100
            finally:
                esp._port.close()
    with pytest.raises(UsageError, match="is silicon v0, not v3"):
        start_rom(tmp_path / "r0.bin", link=tmp_path / "again", chip_rev=3)


# ---- OTA: the simulated bootloader of a secure-boot chip

def _ota_chip(tmp_path, keys, new_image):
    old = secureboot.sign(imagegen.app(32 * 1024, version="0.1.0", seed=3), keys["pem"])
    p = tmp_path / "chip.img"
    otachip.create(p, old, secure_boot_pem=keys["pem"])
    with open(p, "r+b") as f:
        f.seek(0x190000)
        f.write(new_image)
        f.seek(0xD000)
        f.write(otadata.entry(2, otadata.NEW))
    return p, old


def test_an_unsigned_or_foreign_signed_ota_slot_is_refused_and_the_running_slot_boots(tmp_path, keys):
    new = imagegen.app(32 * 1024, version="0.2.0", seed=4)
    for image, why in ((new, "an unsigned image"),
                       (secureboot.sign(new, keys["other_pem"]), "digest is not the one burnt in BLOCK2")):
        d = tmp_path / why.split()[0]
        d.mkdir()
        p, old = _ota_chip(d, keys, image)
        b = otachip.boot(p)
        assert b.label == "ota_0" and why in b.note and "fell back to ota_0" in b.note, b.note
        assert b.image == old[:len(b.image)]
    d = tmp_path / "signed"
    d.mkdir()
    p, _old = _ota_chip(d, keys, secureboot.sign(new, keys["pem"]))
    b = otachip.boot(p)
    assert b.label == "ota_1" and "fell back" not in b.note, b.note
    assert ChipEfuses(str(p) + ".efuse").secure_boot_v2


def test_a_combined_image_with_an_unsigned_app_does_not_boot_on_a_secure_boot_chip(tmp_path, keys, images):
    """The factory boot path (host_tools.flash.boot) on a chip with secure boot but a plain flash: an
    unsigned bootloader stops in the ROM; a signed bootloader with an app signed by another key stops in
    the bootloader; both signed by the line's key boot."""
    from host_tools.build.image import make_image
    fw = images["fw"].read_bytes()
    checked = espimage.check_firmware(fw)
    good = secureboot.sign_firmware(checked, keys["pem"])
    app_at = espimage.APP_OFFSET - espimage.BOOTLOADER_OFFSET
    foreign_app = good[:app_at] + secureboot.sign(fw[app_at:app_at + checked.app_size], keys["other_pem"])
    fs = make_image({"/main.py": b"import app\n", "/board.json": b"{}"}, 4096, 240)
    for name, firmware, expect in (("plain", fw, "the ROM does not start the bootloader: .*an unsigned image.*secure boot check fail"),
                                   ("foreign", foreign_app, "the bootloader refuses the app: .*digest is not the one burnt"),
                                   ("good", good, None)):
        data = bytearray(b"\xff" * (4 << 20))
        data[0x1000:0x1000 + len(firmware)] = firmware
        data[0x310000:0x310000 + len(fs)] = fs
        (tmp_path / f"{name}.bin").write_bytes(bytes(data))
        from host_tools.flash.seal import enable_secure_boot_on_chip
        enable_secure_boot_on_chip(ChipEfuses(tmp_path / f"{name}.bin.efuse"), keys["pem"])
        if expect is None:
            assert boot(tmp_path / f"{name}.bin").efuses.secure_boot_v2
        else:
            with pytest.raises(BootFailure, match=expect):
                boot(tmp_path / f"{name}.bin")


def test_the_meter_installs_an_ota_update_that_only_boots_when_signed_for_secure_boot(tmp_path, keys):
    """The meter's own updater (firmware/ota, MicroPython) over a secure-boot chip: an update whose image
    lacks the line's signature downloads and switches, but the bootloader refuses the slot and keeps the
    running image, which reports the update rolled back; `ota pack --secure-boot-key` makes one that boots."""
    from test_ota_meter import run

    from host_tools.ota import keys as otakeys
    from host_tools.ota import package
    otakeys.generate(tmp_path / "ota.pem")
    ota_key = otakeys.load_private(tmp_path / "ota.pem")
    old = secureboot.sign(imagegen.app(48 * 1024, version="0.1.0", seed=5), keys["pem"])
    new = imagegen.app(40 * 1024 + 333, version="0.2.0", seed=9)
    (tmp_path / "trust.json").write_text(json.dumps(otakeys.trust_entry_file([ota_key.public_key()])))
    outcomes = {}
    for name, image in (("unsigned", new), ("signed", package.sign_for_secure_boot(new, keys["line"]))):
        work = tmp_path / name
        work.mkdir()
        (work / "trust.json").write_bytes((tmp_path / "trust.json").read_bytes())
        otachip.create(work / "chip.img", old, secure_boot_pem=keys["pem"])
        pkg = package.parse(package.build(image, "sim", "0.2.0", ota_key, min_version="0.1.0"))
        (work / "offer.bin").write_bytes(pkg.offer)
        (work / "image.bin").write_bytes(pkg.image)
        r = run(work, 'u = make()\nu.offer(offer())\nserve(u)\nshow(switched=u.switch(True))')
        assert r["switched"] is True, r
        outcomes[name] = otachip.boot(work / "chip.img")
    assert outcomes["signed"].label == "ota_1", outcomes["signed"].note
    b = outcomes["unsigned"]
    assert b.label == "ota_0" and "an unsigned image" in b.note and "fell back to ota_0" in b.note, b.note
    r = run(tmp_path / "unsigned", 'u = make("0.1.0")\nshow(boot=u.boot(), status=u.status())')
    assert r["boot"] == "rolled_back" and r["status"]["last"]["result"] == "rolled_back", r
