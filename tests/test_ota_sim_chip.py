"""The simulated ESP32's OTA side (host_tools/flash/otadata.py, host_tools/sim/esp32/otachip.py): otadata entries
as ESP-IDF lays them, the bootloader's choice of slot (blank -> ota_0, NEW -> pending verify, still pending
at the next boot -> aborted and the other slot), a slot with an invalid image falling back, none valid a
bricked meter; a flashed chip (`meterkit flash`) boots the slot otadata selects; and simulated app images
carry their frozen application."""
import pytest

from host_tools.errors import SimulationError
from host_tools.flash import boot as flashboot
from host_tools.flash import imagegen, otadata, parttable
from host_tools.ota import simimage
from host_tools.sim.esp32 import otachip

SLOT = {"ota_0": 0x10000, "ota_1": 0x190000}


def chip(tmp_path, old, new=None, entries=()):
    p = tmp_path / "chip.img"
    otachip.create(p, old)
    with open(p, "r+b") as f:
        if new is not None:
            f.seek(SLOT["ota_1"])
            f.write(new)
        for sector, raw in entries:
            f.seek(0xD000 + sector * otadata.SECTOR)
            f.write(raw)
    return p


OLD = imagegen.app(32 * 1024, version="0.1.0", seed=3)
NEW = imagegen.app(32 * 1024, version="0.2.0", seed=4)


def test_blank_otadata_boots_the_first_slot_and_a_valid_entry_keeps_its_slot(tmp_path):
    p = chip(tmp_path, OLD, NEW)
    b = otachip.boot(p)
    assert b.label == "ota_0" and b.image == OLD and "blank" in b.note
    p = chip(tmp_path, OLD, NEW, [(0, otadata.entry(2, otadata.VALID))])
    assert otachip.boot(p).label == "ota_1" and otachip.boot(p).label == "ota_1"


def test_a_new_image_runs_once_pending_and_is_rolled_back_at_the_next_reset(tmp_path):
    p = chip(tmp_path, OLD, NEW, [(0, otadata.entry(1, otadata.VALID)), (1, otadata.entry(2, otadata.NEW))])
    assert otachip.boot(p).label == "ota_1"
    assert otachip.read_state(p)["otadata"][1] == (2, "pending_verify")
    b = otachip.boot(p)
    assert b.label == "ota_0" and "rollback" in b.note
    assert otachip.read_state(p)["otadata"] == [(1, "valid"), (2, "aborted")]
    assert otachip.boot(p).label == "ota_0", "an aborted image must never run again"


def test_set_boot_takes_the_next_sequence_for_the_slot_in_the_other_sector(tmp_path):
    raw = bytearray(b"\xff" * 2 * otadata.SECTOR)
    raw[:32] = otadata.entry(3, otadata.VALID)            # slot (3-1)%2 = 0 runs
    [(sector, ent)] = otadata.set_boot(bytes(raw), 1, 2)
    assert sector == 1 and otadata.parse_entry(ent) == (4, otadata.NEW)
    raw[otadata.SECTOR:otadata.SECTOR + 32] = ent
    assert otadata.select(bytes(raw), 2)[0] == 1
    bad = bytearray(ent)
    bad[-1] ^= 1                                           # CRC broken: the entry does not count
    raw[otadata.SECTOR:otadata.SECTOR + 32] = bad
    assert otadata.select(bytes(raw), 2)[0] == 0


def test_a_slot_with_an_invalid_image_falls_back_and_none_valid_is_bricked(tmp_path):
    broken = bytearray(NEW)
    broken[0x2000] ^= 0x40
    p = chip(tmp_path, OLD, bytes(broken), [(0, otadata.entry(2, otadata.NEW))])
    b = otachip.boot(p)
    assert b.label == "ota_0" and "fell back" in b.note
    p = chip(tmp_path, b"\x00" * 1024, bytes(broken), [(0, otadata.entry(2, otadata.NEW))])
    with pytest.raises(SimulationError, match="bricked"):
        otachip.boot(p)


def test_a_flashed_chip_boots_the_slot_otadata_selects(tmp_path):
    from host_tools.build.image import make_image
    fw = imagegen.combined(table="ota", app_image=OLD)
    data = bytearray(b"\xff" * (4 << 20))
    data[0x1000:0x1000 + len(fw)] = fw
    data[SLOT["ota_1"]:SLOT["ota_1"] + len(NEW)] = NEW
    data[0xD000:0xD000 + 32] = otadata.entry(2, otadata.VALID)
    fs = make_image({"/main.py": b"import app\n", "/board.json": b"{}"}, 4096, 240)
    data[0x310000:0x310000 + len(fs)] = fs
    (tmp_path / "f.bin").write_bytes(bytes(data))
    r = flashboot.boot(tmp_path / "f.bin")
    assert r.app_partition.name == "ota_1" and r.app_version.endswith("0.2.0"), r.as_dict()
    data[0xD000:0xD000 + 32] = b"\xff" * 32
    (tmp_path / "f.bin").write_bytes(bytes(data))
    assert flashboot.boot(tmp_path / "f.bin").app_partition.name == "ota_0"


def test_a_simulated_image_carries_the_frozen_app_of_its_version():
    img = simimage.build("0.3.1")
    files = simimage.frozen_from_image(img)
    assert "app/composition.mpy" in files and "ota/updater.mpy" in files and "comms/link.mpy" in files
    assert b"0.3.1" in files["fwversion.mpy"] and "main.py" not in files
    assert len(img) < parttable.OTA_4MIB[3][4], "the simulated image must fit an OTA slot"
    d = simimage.frozen_dir(img)
    assert (d / "fwversion.mpy").read_bytes() == files["fwversion.mpy"]
