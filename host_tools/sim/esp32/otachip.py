"""The application side of a simulated ESP32's flash for over-the-air updates: a whole-chip file with the
bootloader at 0x1000, the board's OTA partition table at 0x8000, `otadata` and the two app slots. At every
boot the simulator applies the bootloader's rule (host_tools/flash/otadata.py): the selected slot runs if
its image is valid, an image not marked valid before a reset is rolled back, and the app that runs is the
one carried by the selected slot's image (host_tools/ota/simimage.py). The firmware reaches this file
through the `esp32` module the simulator provides (host_tools/sim/esp32/mpy/esp32.py).

The meter's file system stays in its own flash file, as for every simulated meter."""
from pathlib import Path

from host_tools.errors import SimulationError
from host_tools.flash import espimage, imagegen, otadata, parttable
from host_tools.paths import board_dir

SHIM_DIR = Path(__file__).resolve().parent / "mpy"
CHIP_SIZE = 4 << 20


def _entries(board="sim"):
    return [e for e in parttable.from_csv((board_dir(board) / "partitions.csv").read_text())
            if not (e[1] == parttable.TYPE_DATA and e[0] in ("vfs", "ffat"))]


def create(path, image, board="sim", secure_boot_pem=None):
    """A chip file with `image` (an app image) in ota_0 and blank otadata (the factory state). With
    secure_boot_pem, the chip (silicon v3) gets secure boot v2 with that key's digest in its eFuses
    (`FILE.efuse`), so only apps signed by it boot (sign `image` first)."""
    entries = _entries(board)
    data = bytearray(b"\xff" * CHIP_SIZE)
    boot = imagegen.bootloader()
    data[espimage.BOOTLOADER_OFFSET:espimage.BOOTLOADER_OFFSET + len(boot)] = boot
    tab = parttable.build(entries)
    data[parttable.TABLE_OFFSET:parttable.TABLE_OFFSET + len(tab)] = tab
    slot0 = next(e for e in entries if e[1] == parttable.TYPE_APP and e[2] == parttable.SUBTYPE_OTA_0)
    if len(image) > slot0[4]:
        raise SimulationError(f"the app image ({len(image)} bytes) does not fit ota_0 ({slot0[4]})")
    data[slot0[3]:slot0[3] + len(image)] = image
    Path(path).write_bytes(bytes(data))
    if secure_boot_pem is not None:
        from host_tools.flash.efuse import ChipEfuses
        from host_tools.flash.rom import efuse_path_for
        from host_tools.flash.seal import enable_secure_boot_on_chip
        enable_secure_boot_on_chip(ChipEfuses(efuse_path_for(path)), secure_boot_pem)


class ChipBoot:
    """What the bootloader chose: the slot's label, its image bytes, and the note for logs."""

    def __init__(self, label, image, note):
        self.label, self.image, self.note = label, image, note


def _slots(parts):
    return sorted([p for p in parts if p.type == parttable.TYPE_APP and 0x10 <= p.subtype < 0x20],
                  key=lambda p: p.subtype)


def read_state(path):
    """{"otadata": [(seq, state name) | None, ...], "slots": [labels]} for tests and reports."""
    with open(path, "rb") as f:
        f.seek(parttable.TABLE_OFFSET)
        parts = parttable.parse(f.read(parttable.TABLE_MAX))
        od = next(p for p in parts if p.type == parttable.TYPE_DATA and p.subtype == parttable.SUBTYPE_OTADATA)
        f.seek(od.offset)
        raw = f.read(2 * otadata.SECTOR)
    ents = []
    for i in (0, 1):
        e = otadata.parse_entry(raw[i * otadata.SECTOR:])
        ents.append(None if e is None else (e[0], otadata.STATE_NAMES.get(e[1], e[1])))
    return {"otadata": ents, "slots": [p.name for p in _slots(parts)]}


def read_slot(path, label, n):
    """The first `n` bytes of app slot `label` as the chip holds them (what a meter wrote there)."""
    with open(path, "rb") as f:
        f.seek(parttable.TABLE_OFFSET)
        p = next(p for p in _slots(parttable.parse(f.read(parttable.TABLE_MAX))) if p.name == label)
        f.seek(p.offset)
        return f.read(min(n, p.size))


def _secure_boot_digest(path):
    """The BLOCK2 key digest when the chip (its eFuses beside the chip file, if any) has secure boot v2
    on, else None: then the bootloader starts only an app whose signature block verifies against it."""
    import os

    from host_tools.flash.efuse import ChipEfuses
    from host_tools.flash.rom import efuse_path_for
    ep = efuse_path_for(path)
    if not os.path.exists(ep):
        return None
    ef = ChipEfuses(ep)
    return (ef.secure_boot_digest() or b"\0" * 32) if ef.secure_boot_v2 else None


def boot(path):
    """Run the bootloader over the chip file: update otadata as ESP-IDF's would and return a ChipBoot.
    With secure boot v2 on (host_tools/flash/secureboot.py) an app whose signature does not verify is
    as invalid as a corrupt one: the next slot is tried. Raises SimulationError when no slot holds a
    valid app (a bricked meter)."""
    from host_tools.flash import secureboot
    digest = _secure_boot_digest(path)
    with open(path, "r+b") as f:
        f.seek(parttable.TABLE_OFFSET)
        parts = parttable.parse(f.read(parttable.TABLE_MAX))
        slots = _slots(parts)
        od = next(p for p in parts if p.type == parttable.TYPE_DATA and p.subtype == parttable.SUBTYPE_OTADATA)
        f.seek(od.offset)
        raw = f.read(2 * otadata.SECTOR)
        idx, writes, note = otadata.select(raw, len(slots))
        for sector, ent in writes:
            f.seek(od.offset + sector * otadata.SECTOR)
            f.write(b"\xff" * otadata.SECTOR)
            f.seek(od.offset + sector * otadata.SECTOR)
            f.write(ent)
        order = [idx] + [i for i in range(len(slots)) if i != idx]
        for i in order:
            p = slots[i]
            f.seek(p.offset)
            data = f.read(p.size)
            try:
                _img, n = espimage._load(data, f"app in {p.name!r}", "esp32")
                if digest is not None:
                    secureboot.verify(data, n, digest, f"app in {p.name!r}: secure boot v2")
            except (espimage.ImageError, secureboot.SignatureError) as e:
                note += f"; {p.name}: {e}"
                continue
            return ChipBoot(p.name, data[:n], note if i == idx else note + f"; fell back to {p.name}")
    raise SimulationError(f"no OTA slot holds a valid app: the bootloader stops ({note})",
                          hint="the meter is bricked: reflash it by cable")
