"""What a real ESP32 does at power-up with what is in its flash, for the simulated chip: the ROM loads
the second-stage bootloader at 0x1000 (through the flash encryption engine when FLASH_CRYPT_CNT is
odd), the bootloader checks the partition table at 0x8000 and the app (with secure boot v2 on, ABS_DONE_1 on
revision 3 silicon, the ROM verifies the bootloader's signature block and the bootloader the app's,
against the key digest in BLOCK2), and MicroPython mounts its
file system where the port looks for it (a `vfs` partition, else the end of the last partition to the
end of physical flash). Each failure is reported as what the board would do: loop in the ROM, stop in
the bootloader, or loop in `inisetup`'s `fs_corrupted()`."""
import os

from host_tools.build import image as fsimage
from host_tools.errors import SimulationError
from host_tools.flash import espimage, parttable, secureboot
from host_tools.flash.crypt import FlashCipher
from host_tools.flash.efuse import ChipEfuses
from host_tools.flash.rom import efuse_path_for

BLOCK = 4096


class BootFailure(SimulationError):
    """The simulated chip does not start the application; the message says where it stops and how."""


class BootResult:
    def __init__(self, flash_size, partitions, app_partition, app_version, vfs_offset, vfs_size, cipher,
                 vfs_encrypted, efuses):
        self.flash_size = flash_size
        self.partitions = partitions
        self.app_partition = app_partition
        self.app_version = app_version
        self.vfs_offset = vfs_offset
        self.vfs_size = vfs_size
        self.cipher = cipher                  # the chip's flash encryption engine, or None
        self.vfs_encrypted = vfs_encrypted
        self.efuses = efuses

    @property
    def vfs_cipher(self):
        return self.cipher if self.vfs_encrypted else None

    def as_dict(self):
        return {"flash_size": self.flash_size, "app_partition": self.app_partition.name,
                "app_version": self.app_version, "vfs_offset": self.vfs_offset, "vfs_size": self.vfs_size,
                "vfs_blocks": self.vfs_size // BLOCK, "vfs_encrypted": self.vfs_encrypted,
                "efuses": self.efuses.summary()}


def _read(f, addr, n, cipher):
    f.seek(addr)
    data = f.read(n)
    if cipher is not None:
        data = cipher.decrypt(addr, data + b"\xff" * (-len(data) % 32))[:n]
    return data


def _selected_app(f, parts, cipher):
    """The app partition the bootloader starts: with OTA slots and `otadata`, the slot its newest valid
    entry selects (host_tools/flash/otadata.py; blank otadata: the first slot, at 0x10000 as flashed);
    else the app at 0x10000. The state changes a boot makes to otadata are applied by the simulated
    chip that runs OTA (host_tools/sim/esp32/otachip.py), not here."""
    from host_tools.flash import otadata
    slots = sorted([p for p in parts if p.type == parttable.TYPE_APP and 0x10 <= p.subtype < 0x20],
                   key=lambda p: p.subtype)
    od = next((p for p in parts if p.type == parttable.TYPE_DATA and p.subtype == parttable.SUBTYPE_OTADATA), None)
    if slots and od is not None:
        idx, _writes, _note = otadata.select(_read(f, od.offset, 2 * otadata.SECTOR, cipher), len(slots))
        return slots[idx]
    return next((p for p in parts if p.type == parttable.TYPE_APP and p.offset == espimage.APP_OFFSET), None)


def _secure_boot_check(efuses, area, image_len, who, then):
    """Secure boot v2 as the ESP32 v3 ROM and bootloader apply it; nothing to check when it is off."""
    if not efuses.secure_boot_v2:
        return
    digest = efuses.secure_boot_digest()
    if digest is None:
        raise BootFailure(f"{who}: ABS_DONE_1 is burnt but BLOCK2 holds no key digest; {then}",
                          hint="the board cannot boot anything: set it aside")
    try:
        secureboot.verify(area, image_len, digest, "secure boot v2")
    except secureboot.SignatureError as e:
        raise BootFailure(f"{who}: {e}; {then}", hint="flash the image signed with the line's secure boot key "
                          "(`meterkit flash --seal --secure-boot-key`)") from None


def boot(flash_path, efuse_path=None):
    """Boot the chip whose flash is `flash_path` (whole chip: its size is the flash size). Returns a
    BootResult; raises BootFailure naming where and how the real board would stop."""
    flash_path = str(flash_path)
    if not os.path.exists(flash_path):
        raise BootFailure(f"no flash file {flash_path}", hint="flash the board with `meterkit flash` first")
    flash_size = os.path.getsize(flash_path)
    efuses = ChipEfuses(efuse_path or efuse_path_for(flash_path))
    cipher = None
    if efuses.flash_encryption:
        key = efuses.flash_key()
        if key is None:
            raise BootFailure("FLASH_CRYPT_CNT is odd but no key is burnt in BLOCK1: the chip decrypts with an "
                              "all-zero key and finds no valid bootloader", hint="burn the key before the count")
        cipher = FlashCipher(key, efuses.flash_crypt_config())
    with open(flash_path, "rb") as f:
        boot_area = _read(f, espimage.BOOTLOADER_OFFSET, parttable.TABLE_OFFSET - espimage.BOOTLOADER_OFFSET, cipher)
        try:
            _boot, boot_len = espimage._load(boot_area, "bootloader at 0x1000", "esp32")
        except espimage.ImageError as e:
            raise BootFailure(f"the ROM does not start the bootloader: {e}; it prints 'invalid header' and "
                              "resets, over and over", hint="reflash the firmware (and encrypt it if flash "
                              "encryption is on)") from None
        _secure_boot_check(efuses, boot_area, boot_len, "the ROM does not start the bootloader",
                           "it prints 'secure boot check fail' and resets, over and over")
        try:
            parts = parttable.parse(_read(f, parttable.TABLE_OFFSET, parttable.TABLE_MAX, cipher))
        except parttable.PartitionTableError as e:
            raise BootFailure(f"the bootloader stops: {e}", hint="reflash the firmware") from None
        app_part = _selected_app(f, parts, cipher)
        if app_part is None or app_part.end > flash_size:
            raise BootFailure("the bootloader finds no bootable app partition at 0x10000 inside the flash",
                              hint="flash a firmware laid for this module")
        app_area = _read(f, app_part.offset, app_part.size, cipher)
        try:
            app, app_len = espimage._load(app_area, f"app in {app_part.name!r}", "esp32")
        except espimage.ImageError as e:
            raise BootFailure(f"the bootloader refuses the app: {e}", hint="reflash the firmware") from None
        _secure_boot_check(efuses, app_area, app_len, "the bootloader refuses the app",
                           "it stops with 'secure boot verification failed': no app runs")
        vfs_off, vfs_size = parttable.vfs_region(parts, flash_size)
        if vfs_size < 2 * BLOCK:
            raise BootFailure(f"no room for a file system past {vfs_off:#x}", hint="use a larger module")
        table_vfs = next((p for p in parts if p.type == parttable.TYPE_DATA and p.name in ("vfs", "ffat")), None)
        # Only a partition in the table carries the encrypted flag; the one MicroPython registers at
        # boot past the last partition is plain even with flash encryption on.
        vfs_encrypted = cipher is not None and table_vfs is not None and table_vfs.encrypted
        image = _read(f, vfs_off, vfs_size, cipher if vfs_encrypted else None)
    raw_head = image[:BLOCK] if not vfs_encrypted else None
    if raw_head is not None and raw_head == b"\xff" * BLOCK:
        raise BootFailure(f"the file system at {vfs_off:#x} is blank: MicroPython formats a fresh one and, with "
                          "no main.py, serves the REPL on UART0 (no meter)", hint="flash the image from `meterkit build`")
    try:
        files = fsimage.read_image(image, BLOCK)
    except Exception:  # noqa: BLE001 - littlefs reports any unmountable image with its own errors
        raise BootFailure(f"MicroPython cannot mount the file system at {vfs_off:#x} ({vfs_size // BLOCK} blocks of "
                          f"{BLOCK}): _boot.py calls inisetup.setup(), finds block 0 in use and loops in "
                          "fs_corrupted() ('The filesystem appears to be corrupted...') forever",
                          hint="flash the file system laid for this module's flash size (`meterkit flash` does)") from None
    if "/main.py" not in files:
        raise BootFailure("the file system has no main.py: MicroPython serves the REPL on UART0 (no meter)",
                          hint="flash the image from `meterkit build`")
    return BootResult(flash_size, parts, app_part, espimage._app_version(app), vfs_off, vfs_size, cipher,
                      vfs_encrypted, efuses)
