"""ESP-IDF binary partition tables: parse and check one (32-byte entries, an optional MD5 entry, 0xFF
fill), and write one (for the images tests and benches build). The format is ESP-IDF's documented
layout; the tables MicroPython's ESP32 boards use are in ../shared/reference/esp32-micropython.md."""
import hashlib
import struct

TABLE_OFFSET = 0x8000          # where the ESP32 bootloader reads it
TABLE_MAX = 0xC00              # ESP-IDF's limit for the table (3 KB)
_ENTRY = struct.Struct("<2sBBII16sI")
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb"

TYPE_APP, TYPE_DATA = 0x00, 0x01
SUBTYPE_FACTORY, SUBTYPE_OTA_0 = 0x00, 0x10
SUBTYPE_OTADATA, SUBTYPE_PHY, SUBTYPE_NVS, SUBTYPE_FAT = 0x00, 0x01, 0x02, 0x81

# MicroPython's ESP32 tables (name, type, subtype, offset, size), as in the reference page
GENERIC_4MIB = (("nvs", TYPE_DATA, SUBTYPE_NVS, 0x9000, 0x6000),
                ("phy_init", TYPE_DATA, SUBTYPE_PHY, 0xF000, 0x1000),
                ("factory", TYPE_APP, SUBTYPE_FACTORY, 0x10000, 0x1F0000))
OTA_4MIB = (("nvs", TYPE_DATA, SUBTYPE_NVS, 0x9000, 0x4000),
            ("otadata", TYPE_DATA, SUBTYPE_OTADATA, 0xD000, 0x2000),
            ("phy_init", TYPE_DATA, SUBTYPE_PHY, 0xF000, 0x1000),
            ("ota_0", TYPE_APP, SUBTYPE_OTA_0, 0x10000, 0x180000),
            ("ota_1", TYPE_APP, SUBTYPE_OTA_0 + 1, 0x190000, 0x180000))
OTA_8MIB = (("nvs", TYPE_DATA, SUBTYPE_NVS, 0x9000, 0x4000),
            ("otadata", TYPE_DATA, SUBTYPE_OTADATA, 0xD000, 0x2000),
            ("phy_init", TYPE_DATA, SUBTYPE_PHY, 0xF000, 0x1000),
            ("ota_0", TYPE_APP, SUBTYPE_OTA_0, 0x10000, 0x270000),
            ("ota_1", TYPE_APP, SUBTYPE_OTA_0 + 1, 0x280000, 0x270000))
TABLES = {"generic": GENERIC_4MIB, "ota": OTA_4MIB, "ota-8mib": OTA_8MIB}


class PartitionTableError(ValueError):
    """The bytes are not a valid binary partition table; the message says which check failed."""


class Partition:
    __slots__ = ("name", "type", "subtype", "offset", "size", "flags")

    def __init__(self, name, type_, subtype, offset, size, flags=0):
        self.name, self.type, self.subtype = name, type_, subtype
        self.offset, self.size, self.flags = offset, size, flags

    @property
    def end(self):
        return self.offset + self.size

    @property
    def encrypted(self):
        return bool(self.flags & 1)

    def as_dict(self):
        return {"name": self.name, "type": self.type, "subtype": self.subtype, "offset": self.offset,
                "size": self.size}

    def __repr__(self):
        return f"Partition({self.name!r}, {self.offset:#x}+{self.size:#x})"


def build(entries, with_md5=True):
    """Bytes of a table holding `entries` ((name, type, subtype, offset, size[, flags]) tuples),
    MD5 entry appended, 0xFF-filled to TABLE_MAX."""
    out = bytearray()
    for e in entries:
        name, t, st, off, size = e[:5]
        flags = e[5] if len(e) > 5 else 0
        out += _ENTRY.pack(_MAGIC, t, st, off, size, name.encode().ljust(16, b"\0"), flags)
    if with_md5:
        out += _MD5_MAGIC + b"\xff" * 14 + hashlib.md5(bytes(out)).digest()
    return bytes(out.ljust(TABLE_MAX, b"\xff"))


def parse(data):
    """Return the list of Partitions in `data` (the bytes at 0x8000). Raises PartitionTableError for a
    table the bootloader would reject: no entries, a bad magic, an MD5 entry that does not match,
    overlapping or unaligned partitions."""
    data = bytes(data[:TABLE_MAX])
    parts = []
    md5_seen = False
    for pos in range(0, len(data) - _ENTRY.size + 1, _ENTRY.size):
        raw = data[pos:pos + _ENTRY.size]
        if raw == b"\xff" * _ENTRY.size:
            break
        if raw[:2] == _MD5_MAGIC:
            if hashlib.md5(data[:pos]).digest() != raw[16:32]:
                raise PartitionTableError(f"partition table MD5 at {TABLE_OFFSET + pos:#x} does not match its entries")
            md5_seen = True
            continue
        magic, t, st, off, size, label, flags = _ENTRY.unpack(raw)
        if magic != _MAGIC or md5_seen:
            raise PartitionTableError(f"partition table entry {len(parts)} at {TABLE_OFFSET + pos:#x} has no "
                                      f"0xAA50 magic (found {raw[:2].hex()})")
        name = label.split(b"\0", 1)[0].decode("ascii", "replace")
        if off % 0x1000 or size == 0:
            raise PartitionTableError(f"partition {name!r} at {off:#x} is not 4 KB aligned or has no size")
        if t == TYPE_APP and off % 0x10000:
            raise PartitionTableError(f"app partition {name!r} at {off:#x} is not 64 KB aligned")
        parts.append(Partition(name, t, st, off, size, flags))
    if not parts:
        raise PartitionTableError(f"no partition table at {TABLE_OFFSET:#x} (found {data[:2].hex()} "
                                  "where the 0xAA50 magic belongs)")
    ordered = sorted(parts, key=lambda p: p.offset)
    for a, b in zip(ordered, ordered[1:]):
        if a.end > b.offset:
            raise PartitionTableError(f"partitions {a.name!r} and {b.name!r} overlap at {b.offset:#x}")
    if ordered[0].offset < TABLE_OFFSET + 0x1000:
        raise PartitionTableError(f"partition {ordered[0].name!r} at {ordered[0].offset:#x} overlaps the "
                                  "bootloader or the table")
    return parts


def vfs_region(parts, flash_size):
    """Where MicroPython's ESP32 port puts its file system on a chip of `flash_size` bytes: a `vfs`
    (or `ffat`) data partition if the table has one, else from the end of the last partition to
    the end of physical flash. Returns (offset, size); size <= 0 means there is no room."""
    for p in parts:
        if p.type == TYPE_DATA and p.name in ("vfs", "ffat"):
            return p.offset, p.size
    end = max(p.end for p in parts)
    return end, flash_size - end


_TYPES = {"app": TYPE_APP, "data": TYPE_DATA}
_SUBTYPES = {"factory": SUBTYPE_FACTORY, "ota": SUBTYPE_OTADATA, "phy": SUBTYPE_PHY, "nvs": SUBTYPE_NVS,
             "fat": SUBTYPE_FAT, "spiffs": 0x82, "littlefs": 0x83, "test": 0x20,
             **{f"ota_{i}": SUBTYPE_OTA_0 + i for i in range(16)}}


def from_csv(text):
    """Entries (name, type, subtype, offset, size, flags) from an ESP-IDF partition CSV whose offsets are
    all given (the form a board folder ships)."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")] + [""] * 6
        name, t, st, off, size, flags = cols[:6]
        try:
            entries.append((name, _TYPES.get(t, None) if t in _TYPES else int(t, 0),
                            _SUBTYPES[st] if st in _SUBTYPES else int(st, 0), int(off, 0),
                            _size(size), 1 if "encrypted" in flags else 0))
        except (KeyError, ValueError):
            raise PartitionTableError(f"partition CSV line {n}: cannot read {line!r}") from None
    return tuple(entries)


def _size(text):
    t = text.upper()
    for suffix, mult in (("K", 1024), ("M", 1024 * 1024)):
        if t.endswith(suffix):
            return int(t[:-1], 0) * mult
    return int(t, 0)
