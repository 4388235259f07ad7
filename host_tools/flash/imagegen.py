"""Build valid ESP32 firmware files with esptool's image classes, for tests and benchmarks: a
second-stage-bootloader-format image, a binary partition table with its MD5, and an app image with
an esp_app_desc_t, correct segment checksum and appended SHA-256, combined as MicroPython publishes
them (one file written at 0x1000). The code inside does not run; everything a bootloader checks is
real. `bad_*` helpers make the faulty files a line must refuse."""
import random
import struct

from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

from host_tools.flash import parttable
from host_tools.flash.espimage import APP_OFFSET, BOOTLOADER_OFFSET

_FLASH_SIZE_CODE = {1: 0x00, 2: 0x10, 4: 0x20, 8: 0x30, 16: 0x40}   # header byte 3, high nibble
_DRAM, _IRAM = 0x3FFB0000, 0x40080000
_DROM, _IROM = 0x3F400020, 0x400D0020


def _filler(n, seed):
    """Code-like bytes: compresses about as well as a real xtensa image (half repetitive, half not)."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += rnd.randbytes(512) + bytes(range(0, 256, 2)) * 4
    return bytes(out[:n])


def app_desc(version="v1.28.0", project="micropython"):
    """An esp_app_desc_t (256 bytes): magic, secure_version, version, project name, time, date, IDF."""
    d = struct.pack("<II8x", 0xABCD5432, 0)
    d += version.encode().ljust(32, b"\0") + project.encode().ljust(32, b"\0")
    d += b"00:00:00".ljust(16, b"\0") + b"Jan  1 2026".ljust(16, b"\0") + b"v5.4.1".ljust(32, b"\0")
    return d.ljust(256, b"\0")


def _image(cls, segments, flash_mb=4):
    img = cls()
    img.flash_mode = 2  # DIO, what MicroPython's ESP32 boards use
    img.flash_size_freq = _FLASH_SIZE_CODE[flash_mb] | 0x0F  # 80 MHz
    img.entrypoint = segments[0][0] + 4 if segments else 0
    img.segments = [ELFSection(b".seg%d" % i, addr, data, 0) for i, (addr, data) in enumerate(segments)]
    return img.save(None)


def bootloader(flash_mb=4, cls=ESP32FirmwareImage, size=24 * 1024, seed=1):
    """A second-stage bootloader image: IRAM and DRAM segments, as ESP-IDF's."""
    return _image(cls, [(_IRAM + 0x8000, _filler(size - 4096, seed)), (_DRAM + 0x40000, _filler(4096, seed + 1))],
                  flash_mb)


def app(size=128 * 1024, version="v1.28.0", cls=ESP32FirmwareImage, seed=2):
    """An app image of about `size` bytes: a DROM segment starting with the app descriptor, an IROM
    segment with the code, and small IRAM/DRAM segments."""
    code = max(size - 48 * 1024, 4096)
    rodata = app_desc(version) + _filler(16 * 1024, seed)
    return _image(cls, [(_DROM, rodata), (_IROM, _filler(code, seed + 1)), (_IRAM, _filler(8 * 1024, seed + 2)),
                        (_DRAM, _filler(4 * 1024, seed + 3))])


def combined(app_size=128 * 1024, table="generic", version="v1.28.0", flash_mb=4, app_image=None, entries=None,
             boot=None):
    """A combined firmware file (bootloader, table, app) as MicroPython publishes for an ESP32."""
    boot = boot if boot is not None else bootloader(flash_mb)
    tab = parttable.build(entries if entries is not None else parttable.TABLES[table])
    body = app_image if app_image is not None else app(app_size, version)
    out = bytearray(b"\xff" * (APP_OFFSET - BOOTLOADER_OFFSET))
    out[:len(boot)] = boot
    at = parttable.TABLE_OFFSET - BOOTLOADER_OFFSET
    out[at:at + len(tab)] = tab
    return bytes(out) + body


def esp32s3_combined(app_size=64 * 1024):
    """The same layout built for an ESP32-S3 (chip id 9): a board of the wrong family."""
    return combined(app_image=app(app_size, cls=ESP32S3FirmwareImage),
                    boot=bootloader(cls=ESP32S3FirmwareImage))


def with_bad_checksum(data):
    """Flip one byte inside the app's code segment (segment checksum and SHA-256 no longer match)."""
    out = bytearray(data)
    out[APP_OFFSET - BOOTLOADER_OFFSET + 0x2000] ^= 0x40
    return bytes(out)
