"""The STS TID replay store: the most recent token identifiers, so no token is applied twice.

A TID already stored is *used*; one below the oldest stored is *old* (IEC 62055-41 practice: no
clock window, only the store). TIDs are 24-bit minute counts, kept sorted in a preallocated array.
"""
from array import array

from micropython import const

OK = const(0)
USED = const(1)
OLD = const(2)

_VERSION = const(1)


class TidStore:
    """Up to `capacity` (default 50) most recent TIDs, oldest first."""

    def __init__(self, capacity=50):
        self.capacity = capacity
        self._tids = array("I", bytes(4 * capacity))
        self._n = 0

    def __len__(self):
        return self._n

    def tids(self):
        return [self._tids[i] for i in range(self._n)]

    def check(self, tid):
        """OK, USED or OLD for this TID; changes nothing."""
        t = self._tids
        n = self._n
        if n and tid < t[0]:
            return OLD
        for i in range(n):
            if t[i] == tid:
                return USED
        return OK

    def record(self, tid):
        """Remember a TID that was just applied; the oldest falls out when the store is full."""
        if self.check(tid) != OK:
            raise ValueError("TID is old or already used")
        t = self._tids
        n = self._n
        if n == self.capacity:
            for i in range(n - 1):
                t[i] = t[i + 1]
            n -= 1
        i = n
        while i > 0 and t[i - 1] > tid:
            t[i] = t[i - 1]
            i -= 1
        t[i] = tid
        self._n = n + 1

    def clear(self):
        """Forget every TID (key rollover with a new base date)."""
        self._n = 0

    def to_bytes(self):
        out = bytearray(2 + 3 * self._n)
        out[0] = _VERSION
        out[1] = self._n
        for i in range(self._n):
            v = self._tids[i]
            out[2 + 3 * i] = v >> 16
            out[3 + 3 * i] = (v >> 8) & 0xFF
            out[4 + 3 * i] = v & 0xFF
        return bytes(out)

    def load_bytes(self, data):
        """Restore from `to_bytes()` output; raises ValueError on anything malformed."""
        if len(data) < 2 or data[0] != _VERSION or len(data) != 2 + 3 * data[1]:
            raise ValueError("corrupt TID store")
        n = data[1]
        vals = []
        for i in range(n):
            p = 2 + 3 * i
            vals.append((data[p] << 16) | (data[p + 1] << 8) | data[p + 2])
        vals.sort()
        self._n = 0
        # Keep the newest when the stored set is larger than this store's capacity.
        for v in vals[-self.capacity:]:
            self._tids[self._n] = v
            self._n += 1
