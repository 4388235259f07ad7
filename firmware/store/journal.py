"""The redo journal that makes `Store.commit_many` all-or-nothing across several records.

Protocol: write every new (name, kind, generation, payload) into one journal file, close it and read it
back (the commit point); then write each record's slot; then remove the journal. At the next boot a
valid journal is replayed (idempotent: records already at that generation are skipped), a torn one is
removed, since no slot is touched before the journal reads back whole.

File, little-endian: b"MTxn", format u8 (1), count u8, reserved u16; per entry: name length u8,
kind u8, reserved u16, generation u32, payload length u32, name, payload; then the CRC-32 of all the
bytes before it (u32) and b"MEnd". Size is bounded by count * (12 + 24 + MAX_PAYLOAD).

The Store's side of the protocol (`commit`, `recover`) is here too, so that none of it is resident:
records.py loads this module only for a commit_many of 2+ records or when a journal is found at boot.
"""
import struct
from binascii import crc32

from micropython import const

from store.records import StoreCorrupt, StoreError, StoreMissing, check_name, encode, header

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


def commit(store, records):
    """Store.commit_many for 2..16 records: journal, commit point, slots, remove the journal."""
    entries = []
    for name in sorted(records):
        name_b = check_name(name)
        kind, payload = encode(records[name])
        slot, gen = store._next(name, name_b)
        entries.append((name, kind, gen, payload))
    jpath = store._jpath()
    write(jpath, entries, store._hdr)
    if check(jpath, store._chunk) != len(entries):
        store._remove(jpath)
        raise StoreError("journal did not read back; nothing was committed")
    # The journal is the commit point: from here a cut is finished by recover() at the next boot.
    for name, kind, gen, payload in entries:
        _apply(store, name, kind, gen, payload)
    store._remove(jpath)


def _apply(store, name, kind, gen, payload):
    """Make generation `gen` with `payload` the newest version of `name` (idempotent, for replay)."""
    name_b = check_name(name)
    try:
        slot, newest, nkind, _ = store._scan(name, name_b)
    except (StoreMissing, StoreCorrupt):
        store._write_slot(name, name_b, 0, gen, kind, payload)
        return
    if newest > gen:
        return  # the record moved on after this journal: a journal brought back by a rollback is stale
    if newest == gen and nkind == kind:
        # The stored CRC of that slot (its header was already checked by _probe) against this payload's.
        hdr = store._hdr
        f = open(store._path(name, slot), "rb")
        try:
            f.readinto(hdr)
        finally:
            f.close()
        if struct.unpack_from("<I", hdr, 16)[0] == header(hdr, name_b, kind, gen, payload):
            return  # already applied before the cut
    store._write_slot(name, name_b, 1 - slot, max(gen, newest + 1), kind, payload)


def recover(store):
    """Finish (or discard, when torn) a commit_many that a power cut interrupted."""
    jpath = store._jpath()
    n = check(jpath, store._chunk)
    if n == ABSENT:
        return
    if n == BAD:
        # Torn while it was being written: nothing had been applied yet, so all stay old.
        store._fault("journal_discarded", "")
        store._remove(jpath)
        return
    for name, kind, gen, payload in entries(jpath):
        _apply(store, name, kind, gen, payload)
    store._fault("journal_replayed", str(n))
    store._remove(jpath)
