"""Where things go in a board's flash. The firmware file is checked as a bootloader would (see
espimage.py) before any board is touched; the file system goes where MicroPython's ESP32 port will
look for it on *that* board: from the end of the image's last partition to the end of the board's
physical flash, re-laid as a littlefs image of exactly that many blocks."""
import json
import threading
from pathlib import Path

from host_tools import paths
from host_tools.build import image as fsimage
from host_tools.errors import UsageError
from host_tools.flash import espimage, parttable

FLASH_SIZES = {"1MB": 1 << 20, "2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20,
               "32MB": 32 << 20, "64MB": 64 << 20, "128MB": 128 << 20}


def parse_flash_size(text):
    """'4MB' / '8MB' / '16MB' (esptool's spelling, also '4MiB' or a byte count) -> bytes."""
    t = str(text).strip().upper().replace("MIB", "MB")
    if t in FLASH_SIZES:
        return FLASH_SIZES[t]
    try:
        return int(t, 0)
    except ValueError:
        raise UsageError(f"unknown flash size {text!r}", hint="use 4MB, 8MB or 16MB") from None


def board_info(board):
    """`board` is a name under boards/ or an already-parsed board.json dict."""
    if isinstance(board, dict):
        return board
    try:
        d = paths.board_dir(board)
    except FileNotFoundError as e:
        raise UsageError(str(e), hint="pass --board with one of the names listed") from None
    return json.loads((d / "board.json").read_text())


def _read(src):
    if isinstance(src, (bytes, bytearray)):
        return bytes(src)
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (src, e.strerror or e),
                         hint="give the path of the firmware (combined .bin) or file-system image") from None


class FlashPlan:
    """What `meterkit flash` writes, checked before any board is touched. The file system is laid per
    board (`writes_for(flash_size)`) once its flash size is known."""

    def __init__(self, info, firmware, files, fs_meta):
        self.info = info
        self.firmware = firmware      # CheckedImage
        self.files = files            # {"/path": bytes} for the file system, or None
        self.fs_meta = fs_meta        # the build manifest beside the fs image (or {})
        self.block_size = info["flash"]["block_size"]
        self.signed = False           # secure boot v2: bootloader and app carry signature sectors
        self._images = {}
        self._lock = threading.Lock()

    @property
    def mode(self):
        return (self.fs_meta or {}).get("mode")

    def sign_firmware(self, pem):
        """Secure boot v2: replace the firmware by the same combined image with its bootloader and app
        signed (host_tools.flash.secureboot), checked again as a bootloader would."""
        from host_tools.flash import secureboot
        signed = secureboot.sign_firmware(self.firmware, pem)
        try:
            self.firmware = espimage.check_firmware(signed)
        except espimage.ImageError as e:
            raise UsageError(f"the signed firmware is refused: {e}", hint="build the firmware for size") from None
        self.signed = True

    def vfs_region(self, flash_size):
        """(offset, size) of the file system on a board with `flash_size` bytes; raises ImageError
        when the image does not fit that board."""
        return espimage.check_flash_fits(self.firmware, flash_size, block_size=self.block_size)

    def fs_image(self, flash_size):
        """The littlefs image for a board of `flash_size` bytes (made once per size)."""
        off, size = self.vfs_region(flash_size)
        with self._lock:
            if flash_size not in self._images:
                try:
                    self._images[flash_size] = fsimage.make_image(self.files, self.block_size, size // self.block_size)
                except UsageError as e:
                    raise espimage.ImageError(f"the file system does not fit the {size // 1024} KB left at "
                                              f"{off:#x} on a {flash_size >> 20} MB board: {e.message}") from None
            return off, self._images[flash_size]

    def writes_for(self, flash_size):
        """[(offset, bytes, label)] for a board of `flash_size` bytes."""
        writes = [(self.info["flash"]["firmware_offset"], self.firmware.data, "firmware")]
        if self.files is not None:
            off, img = self.fs_image(flash_size)
            writes.append((off, img, "fs"))
        else:
            self.vfs_region(flash_size)  # still refuse a board too small for the firmware
        return writes


def _fs_files(info, fs_image):
    """Read the built image's files and the manifest beside it; refuse an image for another board."""
    name = info.get("name")
    data = _read(fs_image)
    bs = info["flash"]["block_size"]
    if not data or len(data) % bs:
        raise UsageError(f"file system image is {len(data)} bytes, not a whole number of {bs}-byte blocks",
                         hint="use the fs.img that `meterkit build` wrote")
    try:
        files = fsimage.read_image(data, bs)
    except Exception as e:  # littlefs raises its own error types for anything that is not an image
        raise UsageError(f"file system image is not a littlefs image with {bs}-byte blocks ({type(e).__name__})",
                         hint="use the fs.img that `meterkit build` wrote") from None
    meta = {}
    if not isinstance(fs_image, (bytes, bytearray)):
        m = Path(fs_image).with_name("manifest.json")
        if m.exists():
            meta = json.loads(m.read_text())
    built_for = meta.get("board")
    if built_for is None and "/board.json" in files:
        try:
            built_for = json.loads(files["/board.json"]).get("name")
        except ValueError:
            built_for = None
    if built_for is not None and name is not None and built_for != name:
        raise UsageError(f"the file system image was built for board {built_for!r}, not {name!r}",
                         hint=f"run `meterkit build --board {name}` and flash that image")
    return files, meta


def plan_flash(board, firmware, fs_image=None):
    """Check everything that can be checked without a board: the firmware file (ESP image magic, chip,
    checksums, SHA-256, partition table, app in its partition) and the file system image (littlefs,
    built for this board). Raises UsageError naming the problem; returns a FlashPlan."""
    info = board_info(board)
    mcu = str(info.get("mcu", "esp32")).lower().replace("-", "")
    if not mcu.startswith("esp"):
        raise UsageError(f"board {info.get('name', board)} is not an ESP chip (its MCU is {info.get('mcu')}): "
                         "there is nothing to flash", hint="run a simulated meter with `meterkit sim start`; to flash "
                         "an ESP32 board give its own board, e.g. --board esp32_atm90e26")
    data = _read(firmware)
    try:
        checked = espimage.check_firmware(data, chip=mcu)
    except espimage.ImageError as e:
        raise UsageError(f"firmware refused: {e}", hint="flash the combined image MicroPython publishes for an "
                         "ESP32 (bootloader, partition table and app; written at 0x1000)") from None
    if info["flash"]["firmware_offset"] != espimage.BOOTLOADER_OFFSET:
        raise UsageError(f"board {info.get('name')} writes firmware at {info['flash']['firmware_offset']:#x}; "
                         f"an ESP32 combined image goes at {espimage.BOOTLOADER_OFFSET:#x}", hint="fix board.json")
    files, meta = _fs_files(info, fs_image) if fs_image is not None else (None, {})
    return FlashPlan(info, checked, files, meta)


def vfs_region_in_flash(flash_file):
    """(offset, size) of the file system in a whole-chip flash file, found as MicroPython finds it:
    the partition table at 0x8000, the chip's size = the file's size."""
    with open(flash_file, "rb") as f:
        f.seek(parttable.TABLE_OFFSET)
        table = f.read(parttable.TABLE_MAX)
        f.seek(0, 2)
        size = f.tell()
    try:
        parts = parttable.parse(table)
    except parttable.PartitionTableError as e:
        raise UsageError(f"{flash_file}: {e}", hint="flash a firmware with `meterkit flash` first") from None
    return parttable.vfs_region(parts, size)


def vfs_image_from_flash(flash_file, board=None):
    """The file system's bytes out of a flash file (what `meterkit flash` wrote to a simulated ESP32),
    so the simulator can boot a meter from exactly what was flashed."""
    off, size = vfs_region_in_flash(flash_file)
    with open(flash_file, "rb") as f:
        f.seek(off)
        data = f.read(size)
    if len(data) != size:
        raise UsageError(f"{flash_file} ends before the file system does", hint="give the whole flash file")
    return data
