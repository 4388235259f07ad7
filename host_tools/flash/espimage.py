"""Check an ESP32 firmware file before anything is written to a board, as the ROM and the second-stage
bootloader would: the combined image MicroPython publishes (bootloader at 0x1000, partition table at
0x8000, app at 0x10000, one file written at 0x1000), or a bare app image. esptool's own image parser
(`esptool.bin_image.LoadFirmwareImage`) reads the images; this module decides what is acceptable."""

from esptool.bin_image import LoadFirmwareImage
from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from host_tools.flash import parttable

BOOTLOADER_OFFSET = 0x1000
APP_OFFSET = 0x10000
_CHIP_NAMES = {cls.IMAGE_CHIP_ID: cls.CHIP_NAME for cls in CHIP_DEFS.values()
               if getattr(cls, "IMAGE_CHIP_ID", None) is not None}
_APP_DESC_MAGIC = 0xABCD5432


class ImageError(ValueError):
    """The firmware file is not something a board of this chip would boot. One line, names the problem."""


class CheckedImage:
    """What the checks found: where each part is, the partitions, the app and its partition."""

    def __init__(self, data, bootloader, app, app_size, parts, app_part, version):
        self.data = data
        self.bootloader = bootloader
        self.app = app
        self.app_size = app_size
        self.partitions = parts
        self.app_partition = app_part
        self.version = version

    @property
    def end(self):
        """The flash address just past the last byte of the file (written at 0x1000)."""
        return BOOTLOADER_OFFSET + len(self.data)

    @property
    def partitions_end(self):
        return max(p.end for p in self.partitions)

    def summary(self):
        return {"bytes": len(self.data), "app_bytes": self.app_size, "app_partition": self.app_partition.name,
                "app_partition_size": self.app_partition.size, "version": self.version,
                "partitions": [p.as_dict() for p in self.partitions], "partitions_end": self.partitions_end}


def _load(data, what, chip):
    """Parse one ESP image with esptool and check magic, chip, checksum and SHA-256. Returns
    (image, length in bytes including checksum and digest)."""
    if len(data) < 24:
        raise ImageError(f"{what}: only {len(data)} bytes, too short for an ESP image header")
    if data[0] != ESPLoader.ESP_IMAGE_MAGIC:
        raise ImageError(f"{what}: no ESP image magic 0xE9 (found {data[0]:#04x}): not an ESP32 firmware file")
    try:
        img = LoadFirmwareImage("esp32", data)
    except (FatalError, RuntimeError, ValueError, OSError, IndexError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{what}: truncated or malformed image ({first})") from None
    want = CHIP_DEFS[chip].IMAGE_CHIP_ID
    if img.chip_id != want:
        found = _CHIP_NAMES.get(img.chip_id, f"chip id {img.chip_id}")
        raise ImageError(f"{what}: built for {found}, not {CHIP_DEFS[chip].CHIP_NAME}")
    if img.checksum != img.calculate_checksum():
        raise ImageError(f"{what}: segment checksum {img.checksum:#04x} does not match the segments "
                         f"({img.calculate_checksum():#04x}): the file is corrupt")
    if img.append_digest:
        if len(img.stored_digest) < 32:
            raise ImageError(f"{what}: truncated before its SHA-256 digest")
        if img.stored_digest != img.calc_digest:
            raise ImageError(f"{what}: appended SHA-256 does not match the image: the file is corrupt")
        length = img.data_length + 32
    else:
        length = img.data_length
    return img, length


def _app_version(img):
    """The version string of the app's esp_app_desc_t (first flash data segment), if it has one."""
    for seg in img.segments:
        d = seg.data
        if len(d) >= 80 and int.from_bytes(d[:4], "little") == _APP_DESC_MAGIC:
            ver = d[16:48].split(b"\0", 1)[0].decode("ascii", "replace")
            proj = d[48:80].split(b"\0", 1)[0].decode("ascii", "replace")
            return f"{proj} {ver}".strip()
    return None


def check_firmware(data, chip="esp32"):
    """Check a combined firmware file (written at 0x1000). Returns a CheckedImage; raises ImageError
    naming the first problem."""
    data = bytes(data)
    if not data:
        raise ImageError("the firmware file is empty")
    boot, boot_len = _load(data, "bootloader at 0x1000", chip)
    table_at = parttable.TABLE_OFFSET - BOOTLOADER_OFFSET
    if boot_len > table_at:
        raise ImageError(f"bootloader at 0x1000 is {boot_len} bytes and runs into the partition table at 0x8000")
    if len(data) < table_at + 32:
        raise ImageError(f"the file ends at {BOOTLOADER_OFFSET + len(data):#x}, before the partition table at 0x8000: "
                         "truncated, or a bootloader alone")
    try:
        parts = parttable.parse(data[table_at:table_at + parttable.TABLE_MAX])
    except parttable.PartitionTableError as e:
        raise ImageError(str(e)) from None
    app_part = next((p for p in parts if p.type == parttable.TYPE_APP and p.offset == APP_OFFSET), None)
    if app_part is None:
        raise ImageError(f"the partition table has no app partition at {APP_OFFSET:#x}")
    app_at = APP_OFFSET - BOOTLOADER_OFFSET
    if len(data) <= app_at:
        raise ImageError(f"the file ends at {BOOTLOADER_OFFSET + len(data):#x}, before the app at {APP_OFFSET:#x}: truncated")
    app, app_len = _load(data[app_at:], f"app at {APP_OFFSET:#x}", chip)
    if app_len > app_part.size:
        raise ImageError(f"app at {APP_OFFSET:#x} is {app_len} bytes but its partition {app_part.name!r} "
                         f"holds {app_part.size}")
    if len(data) - app_at > app_part.size:
        raise ImageError(f"the file runs {len(data) - app_at - app_part.size} bytes past the app partition "
                         f"{app_part.name!r} (ends {app_part.end:#x})")
    return CheckedImage(data, boot, app, app_len, parts, app_part, _app_version(app))


def check_flash_fits(checked, flash_size, min_vfs_blocks=2, block_size=4096):
    """Refuse a chip too small for the image, and return the file system region (offset, size) that
    MicroPython will use on a chip of `flash_size` bytes."""
    if checked.end > flash_size:
        raise ImageError(f"the firmware ends at {checked.end:#x} but the board's flash is only "
                         f"{flash_size // 1024} KB")
    if checked.partitions_end > flash_size:
        raise ImageError(f"the partition table reaches {checked.partitions_end:#x} but the board's flash is only "
                         f"{flash_size // 1024} KB: the image is laid for a larger module")
    off, size = parttable.vfs_region(checked.partitions, flash_size)
    if size < min_vfs_blocks * block_size:
        raise ImageError(f"no room for a file system: the partitions end at {off:#x} and the flash at {flash_size:#x}")
    return off, size
