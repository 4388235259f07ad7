"""OpenPAYGO Token decoder (EnAccess): 9-digit standard and 12-digit extended tokens.

Compatible with the reference implementation (PyPI `openpaygo` 0.6.3): ADD on even counts, SET,
disable (998) and counter sync (999) on odd counts, a 64-count look-ahead (100 for sync) and a
16-count used bitmap below the highest count.

Cost: the OpenPAYGO chain is seeded with the token's own value digits (its last three), so each of
the 1000 standard values has its own chain. The kept chain state is therefore a table of all 1000
chain values at the bottom of the used window (4 KB, `table_bytes()`), moved on after each accepted
token (1000 hashes per count, `catch_up`). With the table current, any 9-digit token, good or bad,
costs at most 16 + 100 hashes however high the count. Extended (12-digit) tokens have a million
values: for them, and while the table lags, each of the `_CACHE` most recently accepted values keeps
its own chain state (at the last count and the window bottom); an unseen extended value walks its
chain from count 0 like the reference decoder (see docs/tokens.md).
"""
from micropython import const

from array import array

from tokens.siphash import SipHash24

ADD = const(1)
SET = const(2)
DISABLE = const(3)
SYNC = const(4)
TYPE_NAMES = {1: "add", 2: "set", 3: "disable", 4: "counter_sync"}

_JUMP = const(64)
_JUMP_SYNC = const(100)
_WINDOW = const(16)
_DISABLE_VALUE = const(998)
_SYNC_VALUE = const(999)
_CACHE = const(8)
_M = const(0xFFFFFFFF)
_STATE_VERSION = const(2)
_ENTRY = const(24)  # bytes per cache entry in the saved state
_AUTO_CATCH_UP = const(4)  # counts of table catch-up a commit does at most (4000 hashes); idle does the rest
_TABLE_VERSION = const(1)


def _best(points, limit):
    # The known chain point with the highest count not above `limit`.
    best = None
    for p in points:
        if p[0] <= limit and (best is None or p[0] > best[0]):
            best = p
    return best


def _bswap32(x):
    return ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | (x >> 24)


class Decoded:
    """Outcome of `OpenPaygo.decode`: status 'accepted', 'used' or 'invalid', with value/type/count."""

    def __init__(self, status, value=None, token_type=None, count=None, base=None, extended=False):
        self.status = status
        self.value = value
        self.token_type = token_type
        self.count = count
        self.base = base
        self.extended = extended
        self.points = []  # known (count, chain value) pairs found while decoding

    def type_name(self):
        return TYPE_NAMES.get(self.token_type)


class OpenPaygo:
    """Decoder state for one device: key, starting code, last count, used bitmap, chain cache.

    `decode(digits)` does not change state; `commit(decoded)` records an accepted token."""

    def __init__(self, key, starting_code, last_count=0, restricted_digits=False, table=True,
                 auto_catch_up=True):
        self._sip = SipHash24(key)
        self.starting_code = starting_code
        self.last_count = last_count
        # bit i set: count last_count - i already used (i in 0..15); the last count itself is
        # used by definition (the reference seeds its used list with it).
        self.used = 1
        self.auto_catch_up = auto_catch_up
        # The all-values table: chain value of every standard token base at _table_count. At
        # count 0 it is just the starting code with each base, so it costs no hashing to start.
        self._table = None
        self._table_count = 0
        if table:
            self._table = array("I", bytes(4000))
            hi = starting_code - starting_code % 1000
            for b in range(1000):
                self._table[b] = hi + b
        self.restricted = restricted_digits
        # Per recently seen value: [extended, base, window-bottom count, code, last count, code],
        # most recent first.
        self._cache = []
        self._ring = [0] * 16  # chain values of the last 16 counts walked
        self.hashes = 0  # hashes spent by the last decode (for benchmarks and tests)

    # -- the hash chain ---------------------------------------------------------------------
    def _next(self, code):
        # Standard step: the code written big-endian twice -> SipHash -> xor halves -> bits 2..31.
        w = _bswap32(code)
        h, l = self._sip.hash8(w, w)
        t = ((h ^ l) >> 2) & 0x3FFFFFFF
        if t > 999999999:
            t -= 73741825
        return t

    def _next_ext(self, code):
        # Extended step: the 64-bit code big-endian -> SipHash -> top 40 bits.
        h, l = self._sip.hash8(_bswap32(code & _M), _bswap32(code >> 32))
        t = (h << 8) | (l >> 24)
        if t > 999999999999:
            t -= 99511627777
        return t

    def code_at(self, base, count, extended=False):
        """The chain value for token base `base` at `count` (the encoder's side of the chain)."""
        mod = 1000000 if extended else 1000
        sc = self.starting_code
        code = sc - sc % mod + base
        step = self._next_ext if extended else self._next
        for _ in range(count):
            code = step(code)
        return code - code % mod + base

    # -- decoding ---------------------------------------------------------------------------
    def _parse(self, digits):
        n = len(digits)
        for ch in digits:
            if ch < "0" or ch > "9":
                return None, False
        if self.restricted:
            if n == 15 or n == 20:
                v = 0
                for ch in digits:
                    d = ord(ch) - 49
                    if d < 0 or d > 3:
                        return None, False
                    v = (v << 2) | d
                return v, n == 20
            return None, False
        if n == 9:
            return int(digits), False
        if n == 12:
            return int(digits), True
        return None, False

    def _entry(self, ext, base):
        for e in self._cache:
            if e[0] == ext and e[1] == base:
                return e
        return None

    def _seed(self, ext, base):
        mod = 1000000 if ext else 1000
        sc = self.starting_code
        return sc - sc % mod + base

    def _points(self, ext, base):
        # Every known (count, chain value) for this value's chain: count 0, the all-values table
        # (standard tokens) and this value's cache entry.
        pts = [(0, self._seed(ext, base))]
        if not ext and self._table is not None:
            pts.append((self._table_count, self._table[base]))
        e = self._entry(ext, base)
        if e is not None:
            pts.append((e[2], e[3]))
            pts.append((e[4], e[5]))
        return pts

    def decode(self, digits):
        """Find the token's count without changing state. Returns a Decoded."""
        token, ext = self._parse(digits)
        self.hashes = 0
        if token is None:
            return Decoded("format")
        ext = 1 if ext else 0
        mod = 1000000 if ext else 1000
        base = token % mod
        value = (base - self.starting_code % mod) % mod
        last = self.last_count
        sync = (not ext) and value == _SYNC_VALUE
        top = last + (_JUMP_SYNC if sync else _JUMP)
        lo = last - _WINDOW + 1
        if lo < 0:
            lo = 0
        pts = self._points(ext, base)
        # Walk up from the best point at or below the last count (new tokens, the usual case);
        # only if that finds nothing and it started inside the window, walk the window below it.
        p1 = _best(pts, last)
        spans = [(p1[0], p1[1], top)]
        if p1[0] > lo:
            p2 = _best(pts, lo)
            spans.append((p2[0], p2[1], p1[0] - 1))
        step = self._next_ext if ext else self._next
        ring = self._ring
        seen_used = False
        for count, code, stop in spans:
            start = count
            while True:
                ring[count & 15] = code
                if count >= lo and code - code % mod + base == token:
                    if not count & 1:
                        ttype = ADD
                    elif ext:
                        ttype = SET
                    elif value == _DISABLE_VALUE:
                        ttype = DISABLE
                    elif sync:
                        ttype = SYNC
                    else:
                        ttype = SET
                    if count > last or (ttype == ADD and not (self.used >> (last - count)) & 1):
                        d = Decoded("accepted", value, ttype, count, base, ext)
                        d.points = [(count, code)]
                        b = count - _WINDOW + 1
                        if b >= start:
                            d.points.append((b, ring[b & 15]))
                        return d
                    seen_used = True
                if count >= stop:
                    break
                code = step(code)
                self.hashes += 1
                count += 1
        return Decoded("used" if seen_used else "invalid")

    def _walk_to(self, ext, target, points):
        # Chain value at `target` from the highest known point at or below it.
        count, code = _best(points, target)
        step = self._next_ext if ext else self._next
        while count < target:
            code = step(code)
            count += 1
        return code

    def commit(self, d):
        """Record an accepted token: advance the count, mark the window, move this value's two
        chain points up, then bring the all-values table up to the new window bottom."""
        if d.status != "accepted":
            raise ValueError("only an accepted token can be committed")
        last = self.last_count
        if d.count <= last and (d.token_type != ADD or (self.used >> (last - d.count)) & 1):
            raise ValueError("token already committed")
        if d.count > last:
            shift = d.count - last
            self.used = (self.used << shift) & 0xFFFF if shift < _WINDOW else 0
            last = self.last_count = d.count
        if d.token_type == ADD:
            self.used |= 1 << (last - d.count)
        else:
            # Non-ADD tokens mark the whole window used (as the reference does).
            self.used = 0xFFFF
        lo = last - _WINDOW + 1
        if lo < 0:
            lo = 0
        ext = 1 if d.extended else 0
        points = self._points(ext, d.base) + d.points
        hi_code = self._walk_to(ext, last, points)
        points.append((last, hi_code))
        self._remember([ext, d.base, lo, self._walk_to(ext, lo, points), last, hi_code])
        if self.auto_catch_up:
            self.catch_up(_AUTO_CATCH_UP)

    def table_behind(self):
        """Counts the all-values table lags behind the window bottom (0 = every decode bounded)."""
        if self._table is None:
            return 0
        lo = self.last_count - _WINDOW + 1
        return lo - self._table_count if lo > self._table_count else 0

    def catch_up(self, max_counts=None):
        """Advance the all-values table towards the window bottom, one count (1000 hashes) at a
        time, at most `max_counts` counts. Returns the counts still to go. Safe to call from an
        idle job; decoding stays correct (only slower) while the table lags."""
        t = self._table
        if t is None:
            return 0
        todo = self.table_behind()
        n = todo if max_counts is None or max_counts > todo else max_counts
        step = self._next
        for _ in range(n):
            for b in range(1000):
                t[b] = step(t[b])
            self._table_count += 1
        return todo - n

    def _remember(self, entry):
        c = self._cache
        for i in range(len(c)):
            if c[i][0] == entry[0] and c[i][1] == entry[1]:
                c.pop(i)
                break
        c.insert(0, entry)
        if len(c) > _CACHE:
            c.pop()

    # -- persistence ------------------------------------------------------------------------
    def state_bytes(self):
        """Last count, used bitmap and the chain cache, as bytes for the caller's atomic write."""
        out = bytearray()
        out.append(_STATE_VERSION)
        out.extend(self.last_count.to_bytes(4, "big"))
        out.extend(self.used.to_bytes(2, "big"))
        out.append(len(self._cache))
        for e in self._cache:
            out.append(e[0])
            out.extend(e[1].to_bytes(3, "big"))
            out.extend(e[2].to_bytes(4, "big"))
            out.extend(e[3].to_bytes(6, "big"))
            out.extend(e[4].to_bytes(4, "big"))
            out.extend(e[5].to_bytes(6, "big"))
        return bytes(out)

    def load_state(self, data):
        """Restore from `state_bytes()`; raises ValueError on anything malformed."""
        if len(data) < 8 or data[0] != _STATE_VERSION or len(data) != 8 + _ENTRY * data[7]:
            raise ValueError("corrupt OpenPAYGO state")
        self.last_count = int.from_bytes(data[1:5], "big")
        self.used = int.from_bytes(data[5:7], "big")
        cache = []
        p = 8
        for _ in range(data[7]):
            cache.append([data[p], int.from_bytes(data[p + 1:p + 4], "big"),
                          int.from_bytes(data[p + 4:p + 8], "big"),
                          int.from_bytes(data[p + 8:p + 14], "big"),
                          int.from_bytes(data[p + 14:p + 18], "big"),
                          int.from_bytes(data[p + 18:p + 24], "big")])
            p += _ENTRY
        self._cache = cache[:_CACHE]

    def table_bytes(self):
        """The all-values table (4 KB): a derived cache, persisted apart from the atomic state."""
        if self._table is None:
            return b""
        return bytes((_TABLE_VERSION,)) + self._table_count.to_bytes(4, "big") + bytes(self._table)

    def load_table(self, data):
        """Restore `table_bytes()`. A table that does not fit is refused (ValueError); a lagging one
        is fine (catch_up moves it on)."""
        if self._table is None:
            return
        if len(data) != 4005 or data[0] != _TABLE_VERSION:
            raise ValueError("corrupt OpenPAYGO table")
        t = array("I", bytes(data[5:]))
        hi = self.starting_code - self.starting_code % 1000
        if int.from_bytes(data[1:5], "big") == 0 and any(t[b] != hi + b for b in range(1000)):
            raise ValueError("OpenPAYGO table is for another device")
        self._table = t
        self._table_count = int.from_bytes(data[1:5], "big")
