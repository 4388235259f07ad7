"""The redo journal that makes `Store.commit_many` all-or-nothing across several records.

Protocol: write every new (name, kind, generation, payload) into one journal file, close it and read it
back (the commit point); then write each record's slot; then remove the journal. At the next boot a
valid journal is replayed (idempotent: records already at that generation are skipped), a torn one is
removed, since no slot is touched before the journal reads back whole.

File, little-endian: b"MTxn", format u8 (1), count u8, reserved u16; per entry: name length u8,
kind u8, reserved u16, generation u32, payload length u32, name, payload; then the CRC-32 of all the
bytes before it (u32) and b"MEnd". Size is bounded by count * (12 + 24 + MAX_PAYLOAD).
"""
import struct
from binascii import crc32

from micropython import const

_MAGIC = b"MTxn"
_END = b"MEnd"
_FORMAT = const(1)
_HEAD = "<4sBBH"
_HEAD_LEN = const(8)
_ENTRY = "<BBHII"
_ENTRY_LEN = const(12)
_MAX_ENTRIES = const(16)
_MAX_ITEM = const(4096 + 24)

ABSENT = const(-1)
BAD = const(-2)


def write(path, entries, scratch):
    """Write the journal for `entries` [(name, kind, gen, payload)]; `scratch` is >= 12 bytes."""
    if not 1 < len(entries) <= _MAX_ENTRIES:
        raise ValueError("a journal holds 2 to %d records" % _MAX_ENTRIES)
    f = open(path, "wb")
    try:
        mv = memoryview(scratch)
        struct.pack_into(_HEAD, scratch, 0, _MAGIC, _FORMAT, len(entries), 0)
        f.write(mv[:_HEAD_LEN])
        c = crc32(mv[:_HEAD_LEN])
        for name, kind, gen, payload in entries:
            name_b = name.encode()
            struct.pack_into(_ENTRY, scratch, 0, len(name_b), kind, 0, gen, len(payload))
            f.write(mv[:_ENTRY_LEN])
            f.write(name_b)
            f.write(payload)
            c = crc32(payload, crc32(name_b, crc32(mv[:_ENTRY_LEN], c)))
        struct.pack_into("<I4s", scratch, 0, c, _END)
        f.write(mv[:8])
    finally:
        f.close()


def _read_into(f, mv, n, c):
    # Stream n bytes through the CRC with the chunk buffer; None if the file ends early.
    while n:
        k = f.readinto(mv[:min(n, len(mv))])
        if not k:
            return None
        c = crc32(mv[:k], c)
        n -= k
    return c


def check(path, chunk):
    """Number of entries in a whole, valid journal; ABSENT if there is none, BAD if torn or rotten."""
    try:
        f = open(path, "rb")
    except OSError:
        return ABSENT
    mv = memoryview(chunk)
    try:
        if f.readinto(mv[:_HEAD_LEN]) != _HEAD_LEN:
            return BAD
        magic, fmt, count, _ = struct.unpack_from(_HEAD, chunk)
        if magic != _MAGIC or fmt != _FORMAT or not 1 < count <= _MAX_ENTRIES:
            return BAD
        c = crc32(mv[:_HEAD_LEN])
        for _ in range(count):
            if f.readinto(mv[:_ENTRY_LEN]) != _ENTRY_LEN:
                return BAD
            nlen, kind, _, gen, length = struct.unpack_from(_ENTRY, chunk)
            if nlen + length > _MAX_ITEM:
                return BAD
            c = _read_into(f, mv[_ENTRY_LEN:], nlen + length, crc32(mv[:_ENTRY_LEN], c))
            if c is None:
                return BAD
        if f.readinto(mv[:8]) != 8:
            return BAD
        crc, end = struct.unpack_from("<I4s", chunk)
        if crc != c or end != _END or f.readinto(mv[:1]):
            return BAD
        return count
    finally:
        f.close()


def entries(path):
    """Yield (name, kind, gen, payload) from a journal that `check` accepted."""
    f = open(path, "rb")
    try:
        head = f.read(_HEAD_LEN)
        count = head[5]
        for _ in range(count):
            nlen, kind, _, gen, length = struct.unpack(_ENTRY, f.read(_ENTRY_LEN))
            name = f.read(nlen).decode()
            yield name, kind, gen, f.read(length)
    finally:
        f.close()
