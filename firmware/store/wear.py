"""Flash wear accounting: a block-device wrapper that counts programs and erases, and the lifetime sums.

Wrap the board's block device before mounting (`os.VfsLfs2(WearCounter(board.flash))`). NOR flash
wears by erase cycles, so erases are what the budget counts; programs are reported for context.

Lifetime assumption, stated: littlefs levels wear dynamically - its block allocator walks the whole
device and metadata pairs move after `block_cycles` erases - so erases spread evenly over the blocks
that are not pinned by data that never changes. `lifetime_days` therefore divides
(blocks - static_blocks) * endurance by erases per day; endurance defaults to 100,000 cycles per block
(the usual NOR datasheet figure). Measure `max_block_erases` against the mean to check the spread.

Only the counter is resident; the sums (`report`, `per_day`, `lifetime_days`, `lifetime_years`,
`ENDURANCE`) live in `store.wearsum` and are loaded when asked for.
"""
from micropython import const

_OP_ERASE = const(6)
_OP_COUNT = const(4)
_OP_SIZE = const(5)


class WearCounter:
    """Forwards the block protocol to `dev`, counting writes, bytes programmed and erases (per block too)."""

    def __init__(self, dev, per_block=True):
        self.dev = dev
        self.writes = 0
        self.bytes_written = 0
        self.erases = 0
        self.block_count = dev.ioctl(_OP_COUNT, 0)
        self.block_size = dev.ioctl(_OP_SIZE, 0)
        # 2 bytes a block (1 KB for a 2 MB partition); counts saturate rather than wrap.
        self.block_erases = bytearray(2 * self.block_count) if per_block else None

    def readblocks(self, n, buf, off=0):
        return self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=None):
        self.writes += 1
        self.bytes_written += len(buf)
        if off is None:
            # Simple protocol: the device erases every block it writes.
            for i in range(len(buf) // self.block_size):
                self._erased(n + i)
            return self.dev.writeblocks(n, buf)
        return self.dev.writeblocks(n, buf, off)

    def ioctl(self, op, arg):
        if op == _OP_ERASE:
            self._erased(arg)
        return self.dev.ioctl(op, arg)

    def _erased(self, block):
        self.erases += 1
        e = self.block_erases
        if e is not None and 0 <= block < self.block_count:
            v = e[2 * block] | (e[2 * block + 1] << 8)
            if v < 0xFFFF:
                v += 1
                e[2 * block] = v & 0xFF
                e[2 * block + 1] = v >> 8

    def erases_of(self, block):
        e = self.block_erases
        return e[2 * block] | (e[2 * block + 1] << 8)

    def max_block_erases(self):
        return max(self.erases_of(b) for b in range(self.block_count)) if self.block_erases else 0

    def reset(self):
        self.writes = self.bytes_written = self.erases = 0
        if self.block_erases is not None:
            for i in range(len(self.block_erases)):
                self.block_erases[i] = 0

    def report(self, seconds, endurance=None, static_blocks=0):
        """The budget for `seconds` of running: counts, per day and projected lifetime (flat dict)."""
        from store import wearsum
        if endurance is None:
            endurance = wearsum.ENDURANCE
        return wearsum.report(self, seconds, endurance, static_blocks)


def __getattr__(name):
    # per_day, lifetime_days, lifetime_years and ENDURANCE, from the on-demand sums module.
    if name in ("per_day", "lifetime_days", "lifetime_years", "ENDURANCE"):
        from store import wearsum
        return getattr(wearsum, name)
    raise AttributeError(name)
