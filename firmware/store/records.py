"""Named records (a JSON value or bytes) that survive a power cut at any instant: two slot files per record.

Why two slots and not write-temp-then-rename: littlefs would make either atomic, but two slots also keep
the previous generation on flash, so a newest copy that later rots (bad CRC) still leaves a valid older
one, and the scheme stays safe on a file system that tears files (FAT): a slot is written in full,
closed, and read back; the newest slot is never touched, so a cut leaves the old version intact.

Slot file `<root>/<name>.a` or `.b` = 20-byte header + payload. Header, little-endian:
magic b"MRec", format u8 (1), kind u8 (0 JSON, 1 bytes), reserved u16 (0), generation u32, payload
length u32, CRC-32 of (header bytes 0..15, payload, record name). Load picks the valid slot with the
highest generation; commit writes generation+1 into the other slot. The name is in the CRC, so a slot
copied or renamed onto another record is refused.

`commit_many` makes several records change together through a journal (see `store.journal`): a cut
leaves all of them old or all new. Recovery runs in `Store()` before anything can be loaded. The
journal code is loaded only while it is needed (RAM: it is not resident).

A slot that fails its CRC is first corrected when one bit flipped (a worn NOR cell losing its charge):
CRC-32 has Hamming distance 4 at these lengths, so the syndrome (stored ^ computed CRC) names the one
bit, with no extra bytes on flash. The fix is only taken when it turns a 1 back into a 0 (charge loss
only raises bits), and the header still reads sane; the corrected value is written as the next
generation into the other slot, then over the rotten one (scrubbed), and reported once as
`slot_corrected`.

Mirror (`Store(root, mirror)`, what the meter uses): every slot is written again, after the primary,
into a second directory with its own littlefs metadata pair. Littlefs drops every commit after one
whose metadata fails its CRC (a worn block losing a bit while the meter is off), so one directory can
roll back to an older state, all its files together; the other still holds the newest generation.
The first time a record is read after boot, each slot's two copies are made to agree on the better
one (valid, newer): both directories are prefixes of one history, so the newer copy of each slot is
the longer prefix's, and the records stay consistent with each other. The primary losing its newest generation is reported
once (`slot_restored`); a mirror behind (a cut between the two writes, a meter of the older layout)
is brought up silently. The cost is twice the flash writes of every commit.

Vault (`Store(root, mirror, vault, skip)`): two directories can lose bits in one power cycle and roll
back together (seen once in 80,000 simulated cuts: an acknowledged top-up lost with both copies). Every
commit of a record not named in `skip` is written a third time, into a third directory; `skip` names the
records that change at every poll or uplink (the energy commit), whose wear a third copy would raise by
half and whose loss costs the utility a few Wh, never a customer's credit. The vault takes part in the
same mend: the newest valid copy of each slot wins, and the primary restored from it is `slot_restored`.

`load` raises `StoreMissing` (never written) or `StoreCorrupt` (no valid slot): it never invents a
default. Anything the app should log as an event (a bad slot, a replayed or discarded journal) is
queued in `faults`; drain it with `take_faults()`. Beware when a newest slot rotted: loading the older
generation may undo a debit or a token's "used" mark, so the app should treat it as a fault.
"""
import json
import os
import struct
from binascii import crc32

from micropython import const

_MAGIC = b"MRec"
_FORMAT = const(1)
_HEADER = "<4sBBHIII"
_HEADER_LEN = const(20)
_CRC_AT = const(16)
_CHUNK = const(128)
_MAX_FAULTS = const(8)
_NAME_MAX = const(24)

KIND_JSON = const(0)
KIND_BYTES = const(1)
MAX_PAYLOAD = const(4096)

# Slot states returned by _probe.
_ABSENT = const(-1)
_BAD = const(-2)

JOURNAL = "_journal"


def _journal():
    # The journal code (commit_many with 2+ records, recovery at boot) is loaded for that one step
    # and forgotten again, so it does not stay resident between top-ups.
    from util import once
    return once("store.journal")


class StoreError(Exception):
    """A record could not be read or written as asked."""


class StoreMissing(StoreError):
    """The record was never written (or both slots are gone)."""


class StoreCorrupt(StoreError):
    """The record's slots exist but none passes its CRC."""


def encode(obj):
    """(kind, payload bytes) for a value: bytes stay bytes, anything else becomes JSON."""
    if isinstance(obj, (bytes, bytearray)):
        payload = bytes(obj)
        kind = KIND_BYTES
    else:
        payload = json.dumps(obj).encode()
        kind = KIND_JSON
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("record payload of %d bytes is over %d" % (len(payload), MAX_PAYLOAD))
    return kind, payload


def decode(kind, payload):
    return bytes(payload) if kind == KIND_BYTES else json.loads(payload)


def check_name(name):
    """Record names are short [a-z0-9_] words not starting with '_' (reserved for the store's files)."""
    ok = 0 < len(name) <= _NAME_MAX and name[0] != "_"
    for c in name:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "_"):
            ok = False
    if not ok:
        raise ValueError("bad record name %r: use up to 24 of a-z 0-9 _, not starting with _" % (name,))
    return name.encode()


def header(buf, name_b, kind, gen, payload):
    """Fill the 20-byte `buf` with the header for this payload (CRC included)."""
    struct.pack_into(_HEADER, buf, 0, _MAGIC, _FORMAT, kind, 0, gen, len(payload), 0)
    c = crc32(name_b, crc32(payload, crc32(memoryview(buf)[:_CRC_AT])))
    struct.pack_into("<I", buf, _CRC_AT, c)
    return c


def parse(name, data):
    """Decode a whole slot file's bytes (host tools, tests): (generation, value); StoreCorrupt if bad."""
    name_b = check_name(name)
    if len(data) < _HEADER_LEN:
        raise StoreCorrupt("%s: %d bytes is shorter than a header" % (name, len(data)))
    magic, fmt, kind, _, gen, length, crc = struct.unpack_from(_HEADER, data)
    payload = data[_HEADER_LEN:]
    if magic != _MAGIC or fmt != _FORMAT or length != len(payload):
        raise StoreCorrupt("%s: bad header" % name)
    if crc32(name_b, crc32(payload, crc32(data[:_CRC_AT]))) != crc:
        raise StoreCorrupt("%s: CRC mismatch" % name)
    return gen, decode(kind, payload)


_POLY = 0xEDB88320


def _bit_at(syndrome, n):
    """The bit (byte index, bit 0-7) whose flip in an n-byte message changes its CRC-32 by `syndrome`,
    or None. A flip at byte j, bit b moves the register by one bit shifted through 8(n-j)-b zero-input
    steps (CRC is linear; the init and final XOR cancel), so walk those steps once from 1."""
    t = 1
    for k in range(1, 8 * n + 1):
        t = (t >> 1) ^ (_POLY if t & 1 else 0)
        if t == syndrome:
            nj = (k + 7) >> 3
            return n - nj, 8 * nj - k
    return None


def _fix(store, name, name_b, slot, other):
    """Correct a one-bit flip in `slot` and write the value as the next generation into the other
    slot; (slot, gen, kind, length) as _scan returns, or None when it cannot be corrected."""
    try:
        f = open(store._path(name, slot), "rb")
    except OSError:
        return None
    try:
        data = bytearray(f.read(_HEADER_LEN + MAX_PAYLOAD + 1))
    except OSError:
        return None             # littlefs cannot read it (a corrupt file): nothing to correct
    finally:
        f.close()
    size = len(data)
    if not _HEADER_LEN <= size <= _HEADER_LEN + MAX_PAYLOAD:
        return None
    body = memoryview(data)
    crc = struct.unpack_from("<I", data, _CRC_AT)[0]
    syn = crc ^ crc32(name_b, crc32(body[_HEADER_LEN:], crc32(body[:_CRC_AT])))
    if syn & (syn - 1) == 0:
        if not crc & syn:
            return None
        # One bit of the stored CRC itself flipped: the data is whole.
    else:
        hit = _bit_at(syn, size - 4 + len(name_b))
        if hit is None or hit[0] >= size - 4:
            return None  # no single bit explains it, or it points into the name (not stored)
        i = hit[0] + (4 if hit[0] >= _CRC_AT else 0)
        if not data[i] >> hit[1] & 1:
            return None  # charge loss only turns 0 into 1: a 0 to set back is not a lost bit
        data[i] ^= 1 << hit[1]
    magic, fmt, kind, _, gen, length, _c = struct.unpack_from(_HEADER, data)
    if magic != _MAGIC or fmt != _FORMAT or kind > KIND_BYTES or length != size - _HEADER_LEN:
        return None
    payload = bytes(body[_HEADER_LEN:])
    if kind == KIND_JSON:
        try:
            json.loads(payload)
        except ValueError:
            return None
    if other[0] > gen:
        return None  # the other slot is valid and newer: nothing to recover here
    store._fault("slot_corrected", name)
    # The value goes whole into the other slot first (the rotten one still holds it, correctably,
    # should this write be cut), then over the rotten one, so no bad slot is left to report again.
    gen = max(gen, other[1]) + 1
    store._write_slot(name, name_b, 1 - slot, gen, kind, payload)
    store._write_slot(name, name_b, slot, gen + 1, kind, payload)
    return slot, gen + 1, kind, length


class Store:
    """Records under `root` (a directory on a mounted littlefs); recovers an interrupted commit_many."""

    def __init__(self, root, mirror=None, vault=None, skip=()):
        self.root = root
        self.mirror = mirror  # a second directory (its own littlefs metadata pair) holding every slot again
        self.vault = vault    # a third, for every record but those in `skip` (see the module docstring)
        self.skip = skip
        self._dirs = (root, mirror, vault)   # by copy number (_path): made once, not per path
        self.faults = []
        self._told = []
        self._hdr = bytearray(_HEADER_LEN)
        self._chunk = bytearray(_CHUNK)
        self._newest = {}  # name -> (slot, generation) of the newest valid slot, once known
        for d in (root, mirror, vault):
            if d is None:
                continue
            try:
                os.stat(d)
            except OSError:
                os.mkdir(d)
        try:
            os.stat(self._jpath())
        except OSError:
            return  # no journal: the usual boot, without loading the journal code
        _journal().recover(self)

    # ---- public API

    def load(self, name):
        """The newest valid value of `name`; StoreMissing or StoreCorrupt when there is none."""
        name_b = check_name(name)
        slot, gen, kind, length = self._scan(name, name_b)
        hdr = self._hdr
        f = open(self._path(name, slot), "rb")
        try:
            f.readinto(hdr)
            payload = f.read(length)
        finally:
            f.close()
        # Re-check the bytes we actually parse, not just what the scan saw.
        c = crc32(name_b, crc32(payload, crc32(memoryview(hdr)[:_CRC_AT])))
        if len(payload) != length or c != struct.unpack_from("<I", hdr, _CRC_AT)[0]:
            self._newest.pop(name, None)
            raise StoreCorrupt("%s: slot changed while loading" % name)
        return decode(kind, payload)

    def generation(self, name):
        """Generation of the newest valid version (0 if missing or corrupt)."""
        try:
            return self._scan(name, check_name(name))[1]
        except StoreError:
            return 0

    def commit(self, name, obj):
        """Write `obj` as the next generation of `name`; on return it is durable (read back and checked)."""
        name_b = check_name(name)
        kind, payload = encode(obj)
        slot, gen = self._next(name, name_b)
        self._write_slot(name, name_b, slot, gen, kind, payload)
        return gen

    def commit_many(self, records):
        """Commit a dict {name: value} (up to 16) as one step: after any power cut, all old or all new."""
        if not records:
            return
        if len(records) == 1:
            for name in records:
                self.commit(name, records[name])  # one file is atomic by itself
            return
        _journal().commit(self, records)

    def journal_pending(self):
        """True while a commit_many's journal is on flash (its records may be partly applied)."""
        try:
            os.stat(self._jpath())
        except OSError:
            return False
        return True

    def take_faults(self):
        """Return and clear the queued (code, detail) faults for the event log."""
        f = self.faults
        self.faults = []
        return f

    # ---- slots

    def _path(self, name, slot, copy=0):
        return "%s/%s.%s" % (self._dirs[copy], name, "ab"[slot])

    def _copies(self, name):
        """The directories holding `name`'s slots, as copy numbers for _path: primary first."""
        if self.mirror is None:
            return (0,)
        if self.vault is None or name in self.skip:
            return (0, 1)
        return (0, 1, 2)

    def _jpath(self):
        return self.root + "/" + JOURNAL

    def _fault(self, code, detail):
        # Bounded, and once per fault while running: every load of a record with a bad slot (an
        # energy commit's generation check, every poll) would repeat it after take_faults().
        f = (code, detail)
        if len(self._told) < 2 * _MAX_FAULTS and f not in self._told:
            self._told.append(f)
            if len(self.faults) < _MAX_FAULTS:
                self.faults.append(f)

    def _probe(self, name, name_b, slot, copy=0):
        """(state, gen, kind, length): state is the generation when valid, _ABSENT (no file, or an
        empty one) or _BAD.

        Streams the payload through the CRC in small chunks so checking a slot allocates nothing big.
        """
        try:
            f = open(self._path(name, slot, copy), "rb")
        except OSError:
            return _ABSENT, 0, 0, 0
        hdr = self._hdr
        try:
            n = f.readinto(hdr)
            if not n:
                # littlefs creates a new file when it is opened: a cut before the close leaves it empty.
                return _ABSENT, 0, 0, 0
            if n != _HEADER_LEN:
                return _BAD, 0, 0, 0
            magic, fmt, kind, _, gen, length, crc = struct.unpack_from(_HEADER, hdr)
            if magic != _MAGIC or fmt != _FORMAT or kind > KIND_BYTES or length > MAX_PAYLOAD:
                return _BAD, 0, 0, 0
            c = crc32(memoryview(hdr)[:_CRC_AT])
            mv = memoryview(self._chunk)
            left = length
            while left:
                k = f.readinto(mv[:min(left, _CHUNK)])
                if not k:
                    return _BAD, gen, 0, 0
                c = crc32(mv[:k], c)
                left -= k
            if f.readinto(mv[:1]):
                return _BAD, gen, 0, 0  # longer than its header says
            if crc32(name_b, c) != crc:
                return _BAD, gen, 0, 0
            return gen, gen, kind, length
        except OSError:
            return _BAD, 0, 0, 0        # littlefs cannot read it back (a corrupt file): a bad slot
        finally:
            f.close()

    def _mend(self, name, name_b):
        """With a mirror (and a vault): make each slot's copies agree on the best one (valid, then
        newer), copying it over the others. Littlefs drops every commit after one whose metadata fails
        its CRC (a worn block losing a bit), so a directory can roll back; another still holds the
        newest generation, and since all are prefixes of one history, the newer copy of each slot is the
        longest prefix's. The primary losing its newest generation is reported once (`slot_restored`);
        a copy behind the primary (a cut between the writes, an older layout) is only brought up."""
        copies = self._copies(name)
        got = [(self._probe(name, name_b, 0, c), self._probe(name, name_b, 1, c)) for c in copies]
        top = [max(g[0][0], g[1][0]) for g in got]
        if top[0] < max(top):
            self._fault("slot_restored", name)
        for slot in (0, 1):
            states = [g[slot][0] for g in got]
            best = max(states)
            if best < 0:
                continue
            src = copies[states.index(best)]
            for i in range(len(copies)):
                if states[i] < best:
                    try:
                        self._copy(self._path(name, slot, src), self._path(name, slot, copies[i]))
                    except OSError:
                        # A directory that no longer takes writes (its metadata lost to worn blocks)
                        # must not stop the meter from starting: the slots are read as they are, and
                        # the fault is told.
                        self._fault("mirror_failed", name)

    def _copy(self, src, dst):
        c = self._chunk
        f = open(src, "rb")
        try:
            g = open(dst, "wb")
            try:
                while True:
                    k = f.readinto(c)
                    if not k:
                        break
                    g.write(memoryview(c)[:k])
            finally:
                g.close()
        finally:
            f.close()

    def _scan(self, name, name_b):
        """Probe both slots: (slot, gen, kind, length) of the newest valid, or raise; notes bad slots."""
        if self.mirror is not None and name not in self._newest:
            # Once per record and boot (and again after a bad read): a directory rolls back only
            # across a power cycle, and from here on every write goes to both copies (a generation
            # check per top-up stays 2 probes).
            self._mend(name, name_b)
        a = self._probe(name, name_b, 0)
        b = self._probe(name, name_b, 1)
        if a[0] == _BAD or b[0] == _BAD:
            # The fault path: a bit lost in a worn block is corrected and scrubbed into the other slot
            # (the bad slot claiming the newer generation first, when both are bad).
            for slot in ((0, 1) if a[1] >= b[1] else (1, 0)):
                if (a, b)[slot][0] == _BAD:
                    fixed = _fix(self, name, name_b, slot, (b, a)[slot])
                    if fixed is not None:
                        self._newest[name] = (fixed[0], fixed[1])
                        return fixed
        if a[0] < 0 and b[0] < 0:
            if a[0] == _ABSENT and b[0] == _ABSENT:
                raise StoreMissing("record %s was never written" % name)
            self._fault("record_corrupt", name)
            raise StoreCorrupt("record %s: no slot passes its CRC" % name)
        slot, best, other = (0, a, b) if a[0] > b[0] else (1, b, a)
        if other[0] == _BAD:
            # A torn write on a tearing file system, or rot; if it claimed a newer generation, that is lost.
            self._fault("slot_newer_lost" if other[1] > best[1] else "slot_corrupt", name)
        self._newest[name] = (slot, best[1])
        return slot, best[1], best[2], best[3]

    def _next(self, name, name_b):
        """(slot to write, generation to write) for the next commit of `name`."""
        known = self._newest.get(name)
        if known is None:
            try:
                self._scan(name, name_b)
                known = self._newest[name]
            except StoreMissing:
                return 0, 1
            except StoreCorrupt:
                # Overwrite slot a; keep b (maybe readable by a person) - both are bad anyway.
                return 0, max(self._probe(name, name_b, 0)[1], self._probe(name, name_b, 1)[1]) + 1
        return 1 - known[0], known[1] + 1

    def _write_slot(self, name, name_b, slot, gen, kind, payload):
        header(self._hdr, name_b, kind, gen, payload)
        self._newest.pop(name, None)
        for copy in self._copies(name):
            path = self._path(name, slot, copy)
            try:
                f = open(path, "wb")
                try:
                    f.write(self._hdr)
                    f.write(payload)
                finally:
                    f.close()
                if self._probe(name, name_b, slot, copy)[0] != gen:
                    raise StoreError("record %s: slot %s did not read back after writing" % (name, path))
            except (OSError, StoreError):
                if not copy:
                    raise
                # The mirror's directory no longer takes writes (its metadata lost to worn blocks):
                # the primary holds the commit; the meter goes on without the second copy, and says so.
                self._fault("mirror_failed", name)
        self._newest[name] = (slot, gen)

    def _remove(self, path):
        # A journal that could not be removed is replayed at the next boot, which changes nothing.
        try:
            os.remove(path)
        except OSError:
            pass
