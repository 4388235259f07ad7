"""A fake `esp32` module: `Partition` over RAM with the block-device protocol and NOR-flash rules.

Writes can only clear bits (as on the real SPI flash), so code that writes without erasing shows up
as corrupt data. The RAM is sparse (a dict of 256-byte pages, erased = 0xFF), so the board's real
2 MB `vfs` partition fits a MicroPython test heap of 96 KB: only pages written since an erase cost RAM.
Every read, write and erase is appended to `machine.log`. Runs under CPython and MicroPython.
"""
import machine

_PAGE = 256

_table = []  # partitions that find() can see


def reset_table():
    del _table[:]


def add_partition(label, size, type=1, subtype=0x82, addr=0x200000, block_size=4096):
    """Test side: put a partition in the table and return it."""
    p = Partition(label, block_size, _new=(type, subtype, addr, size))
    _table.append(p)
    return p


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096, _new=None):
        if _new is None:
            for p in _table:
                if p.label == id:
                    _new = (p.type, p.subtype, p.addr, p.size)
                    self.pages = p.pages  # same storage: two handles on one partition
                    break
            else:
                raise ValueError("partition not found")
        else:
            self.pages = {}
        self.type, self.subtype, self.addr, self.size = _new
        self.label = id
        self.block_size = block_size

    @staticmethod
    def find(type=0, subtype=0xFF, label=None):
        out = []
        for p in _table:
            if p.type == type and (subtype == 0xFF or p.subtype == subtype) and (label is None or p.label == label):
                out.append(p)
        return out

    def info(self):
        return (self.type, self.subtype, self.addr, self.size, self.label, False)

    def _check(self, pos, n):
        if pos < 0 or pos + n > self.size:
            raise OSError(22)  # EINVAL, like esp_partition_read/write out of range

    def _pieces(self, pos, n):
        # yields (page, offset-in-page, count, offset-in-request) pieces of a byte range
        done = 0
        while done < n:
            pg = (pos + done) // _PAGE
            o = (pos + done) % _PAGE
            k = min(_PAGE - o, n - done)
            yield pg, o, k, done
            done += k

    def readblocks(self, block_num, buf, offset=0):
        pos = block_num * self.block_size + offset
        n = len(buf)
        self._check(pos, n)
        machine.record(("flash_read", block_num, offset, n))
        for pg, o, k, d in self._pieces(pos, n):
            page = self.pages.get(pg)
            for i in range(k):
                buf[d + i] = 0xFF if page is None else page[o + i]

    def writeblocks(self, block_num, buf, offset=None):
        bs = self.block_size
        if offset is None:
            # the real driver erases whole blocks first when no offset is given
            for i in range((len(buf) + bs - 1) // bs):
                self.ioctl(6, block_num + i)
            offset = 0
        pos = block_num * bs + offset
        n = len(buf)
        self._check(pos, n)
        machine.record(("flash_write", block_num, offset, n))
        for pg, o, k, d in self._pieces(pos, n):
            page = self.pages.get(pg)
            if page is None:
                page = self.pages[pg] = bytearray(b"\xff" * _PAGE)
            for i in range(k):
                page[o + i] &= buf[d + i]  # NOR flash: programming only clears bits

    def ioctl(self, op, arg):
        if op == 4:
            return self.size // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            self._check(arg * self.block_size, self.block_size)
            machine.record(("flash_erase", arg))
            first = arg * self.block_size // _PAGE
            for pg in range(first, first + self.block_size // _PAGE):
                if pg in self.pages:
                    del self.pages[pg]
            return 0
        if op in (1, 2, 3):
            return 0  # init, deinit, sync: nothing to do in RAM
        return None
