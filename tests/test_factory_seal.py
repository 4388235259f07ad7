"""Sealing on the factory line: `meterkit flash --seal` encrypts the firmware and the file system on the
host with a fresh key per board (espsecure), burns the key and the sealing eFuses through the
simulated ROM (espefuse), the simulated chip boots the encrypted image with the key it keeps in
silicon, and the meter is provisioned on top. Afterwards `esptool read-flash` finds no key material,
the eFuse key block reads as zeros, and a board whose download mode was disabled does not answer at all.
An unsealed control board shows the same search finds the keys when they are in clear."""
import json

import esptool
import pytest

from host_tools.build.builder import build
from host_tools.cli import main
from host_tools.flash import imagegen, parttable
from host_tools.flash.boot import BootFailure, boot
from host_tools.flash.rom_link import start_rom
from host_tools.flash.seal import key_fingerprint
from host_tools.paths import board_dir
from host_tools.provision.line import provision
from host_tools.provision.records import RecordDB
from host_tools.provision.simline import SimMeterProcess, heap_env, sim_board_on_esp32
from tokens import dkga04 as fw_dkga04  # noqa: E402  (firmware/ is on the path)

# The vending key in the session's SoftHSM token (conftest); the firmware's software DKGA04 over it is the
# reference the key the module derived for each meter must equal.
VENDING_KEY = "abababababababab949494949494949401234567"
BLOCK1_WORDS = [0x3FF5A038 + 4 * i for i in range(8)]  # EFUSE_BLK1_RDATA0..7

pytestmark = pytest.mark.timeout(300)


def esptool_run(port, *args):
    esptool.main(["--chip", "esp32", "--port", port, "--before", "no-reset", "--after", "no-reset",
                  "--no-stub", "--connect-attempts", "1", *args])


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seal")
    build("sim", tmp / "build", versions={}, frozen=True)
    table = parttable.from_csv((board_dir("esp32_atm90e26") / "partitions.csv").read_text())
    (tmp / "fw.bin").write_bytes(imagegen.combined(entries=table))
    ks = tmp / "keystore.json"
    ks.write_text(json.dumps({"iin": "600727", "base_date": "14",
                              "broker": {"host": "127.0.0.1", "port": 1883}}))
    out = {"tmp": tmp, "db": str(tmp / "records.sqlite"), "ks": str(ks)}
    from host_tools.flash.flasher import flash_many
    boards = {"readable": dict(seal=True, keep_download_mode=True), "sealed": dict(seal=True), "clear": {}}
    for i, (name, opts) in enumerate(boards.items()):
        with start_rom(tmp / f"{name}.bin", link=tmp / name, index=10 + i) as link:
            out[name + "_flash"] = flash_many([link.port], sim_board_on_esp32(), tmp / "fw.bin",
                                              tmp / "build" / "fs.img", show_progress=False, **opts)[0]
    env = heap_env(tmp, None)
    for name in ("readable", "clear"):
        m = SimMeterProcess(tmp / f"{name}.bin", tmp / f"meter-{name}", env=env)
        try:
            out[name] = provision(m.port, str(ks), sgc="123457", ti=1, operator="seal-test", db=out["db"])
        finally:
            m.stop()
    return out


def key_material(line, result):
    """Every key of a provisioned meter, raw and as the hex the records hold."""
    db = RecordDB(line["db"])
    rec = db.by_meter_id(result["meter_id"])
    db.close()
    sts = fw_dkga04.decoder_key(bytes.fromhex(VENDING_KEY), "123457", 1, 1, 2, result["pan"], "14")
    keys = [bytes.fromhex(rec["message_key_hex"]), bytes.fromhex(rec["service_key_hex"]), sts]
    return keys + [k.hex().encode() for k in keys] + [rec["broker_password"].encode()]


def read_file_system(tmp, name, index):
    """`esptool read-flash` of the whole file system partition (0x310000, 960 KB), where the meter keeps
    its records (the ROM reads 64 bytes a request, so the whole chip would take minutes)."""
    with start_rom(tmp / f"{name}.bin", link=tmp / f"{name}-rd", index=index) as link:
        esptool_run(link.port, "read-flash", "0x310000", "0xF0000", str(tmp / f"{name}-dump.bin"))
    return (tmp / f"{name}-dump.bin").read_bytes()


def test_sealed_boards_are_flashed_encrypted_and_recorded(line):
    for name in ("readable", "sealed"):
        r = line[name + "_flash"]
        assert r["ok"] and r["sealed"], r
        assert r["efuses"]["FLASH_CRYPT_CNT"] == 1 and r["efuses"]["JTAG_DISABLE"] is True
    assert line["sealed_flash"]["efuses"]["UART_DOWNLOAD_DIS"] is True
    assert line["readable_flash"]["efuses"]["UART_DOWNLOAD_DIS"] is False
    assert not line["clear_flash"].get("sealed")
    fw = (line["tmp"] / "fw.bin").read_bytes()
    assert (line["tmp"] / "sealed.bin").read_bytes()[0x1000:0x1000 + 64] != fw[:64]  # ciphertext in flash


def test_a_sealed_meter_boots_from_encrypted_flash_and_is_provisioned(line):
    b = boot(line["tmp"] / "readable.bin")
    assert b.vfs_encrypted and b.efuses.flash_encryption and b.vfs_offset == 0x310000
    r = line["readable"]
    items = {i["item"]: i for i in r["selftest"]}
    assert items["flash"]["pass"] and items["metering_chip"]["pass"], items


def test_read_flash_after_provisioning_yields_no_key_material(line):
    dump = read_file_system(line["tmp"], "readable", 10)
    found = [k for k in key_material(line, line["readable"]) if k in dump]
    assert not found, f"key material readable from a sealed meter's flash: {found}"
    # the control: the same search on an unsealed meter finds its keys, so the search itself works
    clear = read_file_system(line["tmp"], "clear", 12)
    assert any(k in clear for k in key_material(line, line["clear"])), "control: keys not found in clear flash"


def test_the_efuse_key_block_reads_back_as_zeros(line, capsys):
    with start_rom(line["tmp"] / "readable.bin", link=line["tmp"] / "rd-efuse", index=10) as link:
        words = [link.rom.read_reg(a) for a in BLOCK1_WORDS]
        esptool_run(link.port, "read-mem", hex(BLOCK1_WORDS[0]))
        assert link.rom.efuses.key_read_protected and link.rom.efuses.flash_key() is not None
    assert words == [0] * 8, words
    assert "= 0x00000000" in capsys.readouterr().out


def test_a_board_with_download_mode_disabled_answers_nothing(line):
    with start_rom(line["tmp"] / "sealed.bin", link=line["tmp"] / "sealed-rd", index=11) as link:
        with pytest.raises(esptool.FatalError, match="Failed to connect"):
            esptool_run(link.port, "read-flash", "0", "4096", str(line["tmp"] / "never.bin"))
        assert link.rom.refused_syncs > 0


def test_the_cli_seals_and_records_the_seal_but_never_the_key(line, capsys):
    tmp = line["tmp"]
    build("esp32_atm90e26", tmp / "esp-build", versions={}, frozen=True)
    with start_rom(tmp / "cli.bin", link=tmp / "cli", index=20) as link:
        rc = main(["flash", "--board", "esp32_atm90e26", "--port", link.port, "--firmware", str(tmp / "fw.bin"),
                   "--fs", str(tmp / "esp-build" / "fs.img"), "--seal", "--db", str(tmp / "cli.sqlite"),
                   "--operator", "op7", "--json"])
        key = link.rom.efuses.flash_key()
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["results"][0]["sealed"], out
    db = RecordDB(tmp / "cli.sqlite")
    rec = db.seal_record(out["results"][0]["mac"])
    db.close()
    assert rec["operator"] == "op7" and rec["board"] == "esp32_atm90e26" and rec["flash_size"] == "4MB"
    assert rec["flash_key_sha256"] == key_fingerprint(key) and json.loads(rec["efuses"])["FLASH_CRYPT_CNT"] == 1
    raw = (tmp / "cli.sqlite").read_bytes()
    assert key not in raw and key.hex().encode() not in raw
    assert boot(tmp / "cli.bin").vfs_encrypted


def test_the_seal_goes_into_the_data_folders_record_db_where_provision_writes(line, capsys, tmp_path,
                                                                             monkeypatch):
    """No --db: the seal is recorded in factory-records.sqlite in the data folder (as `provision`
    keeps it), not in the working folder."""
    tmp = line["tmp"]
    if not (tmp / "esp-build" / "fs.img").exists():
        build("esp32_atm90e26", tmp / "esp-build", versions={}, frozen=True)
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    monkeypatch.setenv("METERKIT_DATA", str(data))
    monkeypatch.delenv("METERKIT_FACTORY_DB", raising=False)
    monkeypatch.chdir(work)
    with start_rom(tmp_path / "dd.bin", link=tmp_path / "dd", index=21) as link:
        rc = main(["flash", "--board", "esp32_atm90e26", "--port", link.port, "--firmware", str(tmp / "fw.bin"),
                   "--fs", str(tmp / "esp-build" / "fs.img"), "--seal", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["results"][0]["sealed"], out
    assert not (work / "factory-records.sqlite").exists()
    db = RecordDB(data / "factory-records.sqlite")
    try:
        assert db.seal_record(out["results"][0]["mac"])["board"] == "esp32_atm90e26"
    finally:
        db.close()


def test_sealing_an_image_without_an_encrypted_vfs_partition_is_refused_untouched(tmp_path, capsys):
    build("sim", tmp_path / "build", versions={}, frozen=True)
    (tmp_path / "fw.bin").write_bytes(imagegen.combined())  # MicroPython's stock table: vfs made at boot, plain
    from host_tools.errors import UsageError
    from host_tools.flash.flasher import flash_many
    with start_rom(tmp_path / "f.bin", link=tmp_path / "esp") as link:
        with pytest.raises(UsageError, match="no encrypted `vfs` partition"):
            flash_many([link.port], sim_board_on_esp32(), tmp_path / "fw.bin", tmp_path / "build/fs.img",
                       show_progress=False, seal=True)
        assert link.rom.requests == 0


def test_plain_firmware_written_over_a_sealed_board_does_not_boot(line):
    tmp = line["tmp"]
    data = bytearray((tmp / "readable.bin").read_bytes())
    fw = (tmp / "fw.bin").read_bytes()
    data[0x1000:0x1000 + len(fw)] = fw  # what an attacker with download mode could write
    (tmp / "tampered.bin").write_bytes(bytes(data))
    import shutil
    shutil.copy(str(tmp / "readable.bin") + ".efuse", str(tmp / "tampered.bin") + ".efuse")
    shutil.copy(str(tmp / "readable.bin") + ".efuse.silicon", str(tmp / "tampered.bin") + ".efuse.silicon")
    with pytest.raises(BootFailure, match="the ROM does not start the bootloader"):
        boot(tmp / "tampered.bin")
