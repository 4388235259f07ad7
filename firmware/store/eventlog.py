"""Bounded append-only event log in flash: a ring of fixed 32-byte entries spread over a few small files.

Entry, little-endian: seq u32, unix time u32, kind u8, data length u8, data (18 bytes, zero padded),
CRC-32 of the first 28 bytes (u32). Sequence numbers start at 1 and never repeat; entry `seq` always
lives at ring position seq % capacity, i.e. file (pos // per_file) at byte (pos % per_file) * 32. So an
append overwrites exactly the oldest entry and nothing else, and reading needs no index.

Why several files of at most one 4 KB block: littlefs copies a file's block on every change (and every
later block of the same file), so small files keep an append to one block copy. A cut during an append
leaves the old entry (littlefs commits the file on close) or, on a tearing file system, a bad CRC at
that one position: the entry is dropped, the next append rewrites the same position, and no earlier
entry is touched. The next sequence number is found at boot by scanning the ring once.
"""
import os
import struct
from binascii import crc32

from micropython import const

_ENTRY = "<IIBB"
_ENTRY_LEN = const(32)
_CRC_AT = const(28)
_DATA_AT = const(10)
DATA_MAX = const(18)


class EventLog:
    """Ring of `files` x `per_file` events under directory `root` (default 4 x 64 = 256 events)."""

    def __init__(self, root, files=4, per_file=64):
        if per_file * _ENTRY_LEN > 4096:
            raise ValueError("per_file over 128 would make a file span two blocks")
        self.root = root
        self.files = files
        self.per_file = per_file
        self.capacity = files * per_file
        self._buf = bytearray(_ENTRY_LEN)
        try:
            os.stat(root)
        except OSError:
            os.mkdir(root)
        self.next_seq = self._scan() + 1

    def _path(self, i):
        return "%s/ev%d" % (self.root, i)

    def _valid(self, pos):
        # The entry in _buf is whole and belongs at ring position pos: its seq, or 0.
        b = self._buf
        seq = struct.unpack_from("<I", b, 0)[0]
        if seq == 0 or seq % self.capacity != pos or b[_DATA_AT - 1] > DATA_MAX:
            return 0
        if crc32(memoryview(b)[:_CRC_AT]) != struct.unpack_from("<I", b, _CRC_AT)[0]:
            return 0
        return seq

    def _scan(self):
        newest = 0
        for i in range(self.files):
            try:
                f = open(self._path(i), "rb")
            except OSError:
                continue
            try:
                for k in range(self.per_file):
                    if f.readinto(self._buf) != _ENTRY_LEN:
                        break
                    seq = self._valid(i * self.per_file + k)
                    if seq > newest:
                        newest = seq
            finally:
                f.close()
        return newest

    def append(self, t, kind, data=b""):
        """Store one event (unix time `t`, `kind` 0-255, up to 18 bytes of `data`); returns its seq."""
        if len(data) > DATA_MAX or not 0 <= kind <= 255:
            raise ValueError("event kind 0-255 and at most %d data bytes" % DATA_MAX)
        seq = self.next_seq
        b = self._buf
        struct.pack_into(_ENTRY, b, 0, seq, t, kind, len(data))
        for i in range(DATA_MAX):
            b[_DATA_AT + i] = data[i] if i < len(data) else 0
        struct.pack_into("<I", b, _CRC_AT, crc32(memoryview(b)[:_CRC_AT]))
        pos = seq % self.capacity
        path = self._path(pos // self.per_file)
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "wb")
        try:
            f.seek((pos % self.per_file) * _ENTRY_LEN)
            f.write(b)
        finally:
            f.close()
        self.next_seq = seq + 1
        return seq

    def since(self, first, limit=16):
        """Up to `limit` events [(seq, t, kind, data)] with seq >= first, oldest first.

        Page through with first = last seq + 1. A position that fails its CRC (rot, or a torn
        entry on a tearing file system) is skipped, never returned.
        """
        out = []
        s = max(first, self.next_seq - self.capacity, 1)
        f = None
        cur = -1
        try:
            while s < self.next_seq and len(out) < limit:
                pos = s % self.capacity
                fi = pos // self.per_file
                if fi != cur:
                    if f:
                        f.close()
                    cur = fi
                    try:
                        f = open(self._path(fi), "rb")
                    except OSError:
                        f = None
                if f:
                    f.seek((pos % self.per_file) * _ENTRY_LEN)
                    if f.readinto(self._buf) == _ENTRY_LEN and self._valid(pos) == s:
                        b = self._buf
                        t, kind, n = struct.unpack_from("<IBB", b, 4)
                        out.append((s, t, kind, bytes(b[_DATA_AT:_DATA_AT + n])))
                s += 1
        finally:
            if f:
                f.close()
        return out
