"""Block devices for littlefs on the unix port and in tests (RAM and file backed), with a power-cut injector.

Both follow MicroPython's extended block protocol as `os.VfsLfs2` drives it: `readblocks(n, buf, off)`,
`writeblocks(n, buf, off)` (program only: littlefs erases first with ioctl 6) and `ioctl(op, arg)` for
op 1 init, 2 deinit, 3 sync, 4 block count, 5 block size, 6 erase. `writeblocks(n, buf)` without an
offset is the simple protocol (erase then program whole blocks), as FAT would use it.

Power cuts: `arm(after_bytes=K)` lets K more bytes land, then tears the write that crosses K;
`arm(after_writes=K)` lets K more writes (programs and, by default, erases) complete and tears the next
one at a random byte. A torn write lands its first bytes; the rest keep their old content, read as
erased 0xFF, or come out partly programmed (old & some new bits, as an interrupted NOR program leaves
them), chosen from the seed. Then `PowerCut` is raised and the device is dead: the meter has no power,
so every later read, write or erase through it fails with -EIO (a return code, not an exception:
the abandoned file system's finalisers call it with the heap locked) and nothing more reaches the flash.
Code running when the cut comes sees PowerCut, or an OSError from the file system it was inside.
`reboot()` gives the next power-on: a fresh device over the same storage, while the abandoned file
system (and any file finalisers it runs) keeps the dead one.
"""
from micropython import const

_OP_INIT = const(1)
_OP_DEINIT = const(2)
_OP_SYNC = const(3)
_OP_COUNT = const(4)
_OP_SIZE = const(5)
_OP_ERASE = const(6)

TEAR_OLD = const(0)
TEAR_ERASED = const(1)
TEAR_BITS = const(2)

_FILL = const(256)
_EIO = const(-5)  # what a dead device answers: an I/O error code, which allocates nothing


class PowerCut(Exception):
    """The simulated supply died in the middle of a flash write."""


class _XorShift:
    # Our own tiny generator so a seed tears identically under CPython and MicroPython.
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n if n > 0 else 0


class BlockDev:
    """Shared protocol, accounting and power-cut logic; subclasses store bytes (`_get`, `_put`)."""

    def __init__(self, block_count, block_size=4096):
        self.block_count = block_count
        self.block_size = block_size
        self.dead = False
        self.last_cut = None  # (address, bytes landed, tear mode) of the torn write
        self.writes = 0  # completed program and erase operations since power-on
        self.bytes_written = 0
        self._bytes_left = -1
        self._writes_left = -1
        self._cut_erases = True
        self._rng = _XorShift(1)

    def arm(self, after_bytes=None, after_writes=None, seed=1, erases=True):
        """Schedule a power cut; `erases` says whether erases count as writes and can be torn."""
        self._bytes_left = -1 if after_bytes is None else after_bytes
        self._writes_left = -1 if after_writes is None else after_writes
        self._cut_erases = erases
        self._rng = _XorShift(seed)

    def disarm(self):
        self._bytes_left = -1
        self._writes_left = -1

    def readblocks(self, n, buf, off=0):
        if self.dead:
            return _EIO
        self._get(n * self.block_size + off, buf)

    def writeblocks(self, n, buf, off=None):
        if self.dead:
            return _EIO
        if off is None:
            bs = self.block_size
            for i in range(len(buf) // bs):
                self._erase(n + i)
            off = 0
        self._program(n * self.block_size + off, buf, False)

    def ioctl(self, op, arg):
        if op == _OP_COUNT:
            return self.block_count
        if op == _OP_SIZE:
            return self.block_size
        if op == _OP_ERASE:
            if self.dead:
                return _EIO
            self._erase(arg)
            return 0
        if op == _OP_SYNC:
            self._sync()
        # _OP_INIT and _OP_DEINIT need nothing: the storage exists from construction to reboot().
        return 0

    def _erase(self, block):
        bs = self.block_size
        ff = b"\xff" * _FILL
        addr = block * bs
        if not self._cut_erases:
            for a in range(addr, addr + bs, _FILL):
                self._put(a, ff)
            return
        self._program(addr, None, True)

    def _program(self, addr, data, erase):
        n = self.block_size if erase else len(data)
        cut = -1
        if self._bytes_left >= 0:
            if self._bytes_left < n:
                cut = self._bytes_left
            else:
                self._bytes_left -= n
        if self._writes_left >= 0:
            if self._writes_left == 0:
                cut = self._rng.below(n)
            else:
                self._writes_left -= 1
        if cut >= 0:
            self._tear(addr, data, n, cut, erase)
            self.dead = True
            raise PowerCut("power cut after %d of %d bytes at 0x%x" % (cut, n, addr))
        if erase:
            ff = b"\xff" * _FILL
            for a in range(addr, addr + n, _FILL):
                self._put(a, ff)
        else:
            self._put(addr, data)
        self.writes += 1
        self.bytes_written += n

    def _tear(self, addr, data, n, cut, erase):
        mode = self._rng.below(3)
        if erase:
            # An interrupted erase: the start reads erased, the rest old or half-erased.
            if cut:
                self._put(addr, b"\xff" * cut)
            mode = TEAR_OLD if mode == TEAR_ERASED else mode
            if mode == TEAR_BITS and cut < n:
                tail = bytearray(n - cut)
                self._get(addr + cut, tail)
                for i in range(len(tail)):
                    tail[i] |= self._rng.next() & 0xFF
                self._put(addr + cut, tail)
        else:
            if cut:
                self._put(addr, data[:cut])
            if mode == TEAR_ERASED and cut < n:
                self._put(addr + cut, b"\xff" * (n - cut))
            elif mode == TEAR_BITS and cut < n:
                tail = bytearray(n - cut)
                self._get(addr + cut, tail)
                for i in range(len(tail)):
                    # NOR programming only clears bits; an interrupted one cleared some of them.
                    tail[i] &= data[cut + i] | (self._rng.next() & 0xFF)
                self._put(addr + cut, tail)
        self.last_cut = (addr, cut, mode)

    def _sync(self):
        pass


class RAMBlockDev(BlockDev):
    """Flash in a bytearray (`data`); pass `data` to share storage with a previous power-on."""

    def __init__(self, block_count, block_size=4096, data=None):
        super().__init__(block_count, block_size)
        if data is None:
            data = bytearray(block_count * block_size)
            ff = b"\xff" * _FILL
            mv = memoryview(data)
            for a in range(0, len(data), _FILL):
                mv[a:a + _FILL] = ff
        self.data = data
        self._mv = memoryview(data)

    def _get(self, addr, buf):
        buf[:] = self._mv[addr:addr + len(buf)]

    def _put(self, addr, data):
        self._mv[addr:addr + len(data)] = data

    def reboot(self):
        """The next power-on: a live device over the same bytes (this one stays dead)."""
        self.dead = True
        return RAMBlockDev(self.block_count, self.block_size, self.data)


class FileBlockDev(BlockDev):
    """Flash in a file (a littlefs image, optionally at `offset` inside a whole-flash image)."""

    def __init__(self, path, block_count, block_size=4096, offset=0):
        super().__init__(block_count, block_size)
        self.path = path
        self.offset = offset
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        end = offset + block_count * block_size
        f.seek(0, 2)
        size = f.tell()
        if size < end:
            # A new image reads erased, like new flash.
            ff = b"\xff" * _FILL
            while size < end:
                k = min(_FILL, end - size)
                f.write(ff[:k])
                size += k
            f.flush()
        self._f = f

    def _get(self, addr, buf):
        self._f.seek(self.offset + addr)
        self._f.readinto(buf)

    def _put(self, addr, data):
        self._f.seek(self.offset + addr)
        self._f.write(data)
        # Flushed at once, so another process (the simulator) sees exactly what landed before a cut.
        self._f.flush()

    def close(self):
        self.dead = True
        self._f.close()

    def reboot(self):
        """The next power-on: a live device over the same file (this one is closed and stays dead)."""
        self.close()
        return FileBlockDev(self.path, self.block_count, self.block_size, self.offset)
