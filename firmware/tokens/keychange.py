"""STS decoder key change: four key-section tokens (class 2 subclasses 3, 4, 8, 9) that together carry
a new 128-bit key with its KRN, KT, TI, KEN and rollover (RO) bit.

Sections may come in any order; a set not completed within the window (10 minutes from its first
section) is forgotten. Layout (*interpretation*, see docs/tokens.md):
  1st (3) and 3rd (8): KENHO(4) | KRN(4) | RO(1) | res(1) | KT(2) | 32 key bits
  2nd (4) and 4th (9): KENLO(4) | TI(8) | 32 key bits
in the RND | TID | field positions of the ordinary block. Pending sections are part of the decoder's
saved state (`to_bytes`/`load_bytes`): the meter builds a decoder for each token, and a set may
span a reboot. The window counts from the first section's Unix time (`clock.time()`); a clock that
went backwards forgets the set (it is entered again; nothing is applied until all four agree).
"""
from micropython import const

SECTION_OF_SUBCLASS = {3: 0, 4: 1, 8: 2, 9: 3}  # subclass -> section index (key bits, high first)
_WINDOW_MS = const(600000)


class Section:
    """One decoded key-section token."""

    def __init__(self, token):
        if token is None:
            return                      # filled in by KeyChange.load_bytes
        s = SECTION_OF_SUBCLASS[token.subclass]
        self.index = s
        hi = token.tid >> 16
        if s == 0 or s == 2:
            # KENHO | KRN | RO | res | KT
            self.header = (token.rnd, hi >> 4, (hi >> 3) & 1, hi & 3)
        else:
            # KENLO | TI
            self.header = (token.rnd, hi)
        lo = token.tid & 0xFFFF
        self.key4 = bytes((lo >> 8, lo & 0xFF, token.field >> 8, token.field & 0xFF))


class NewKey:
    """A complete key change: the key and its identifiers."""

    def __init__(self, key, ken, krn, kt, ti, rollover):
        self.key = key
        self.ken = ken
        self.krn = krn
        self.kt = kt
        self.ti = ti
        self.rollover = rollover


class KeyChange:
    def __init__(self, clock, window_ms=_WINDOW_MS):
        self._clock = clock
        self.window_ms = window_ms
        self._pending = [None, None, None, None]
        self._started = None

    def _expire(self):
        if self._started is not None:
            d = self._clock.time() - self._started
            if d < 0 or d * 1000 >= self.window_ms:
                self.forget()

    def forget(self):
        self._pending = [None, None, None, None]
        self._started = None

    def pending(self):
        """Section numbers (1..4) held, waiting for their partners."""
        self._expire()
        return [i + 1 for i in range(4) if self._pending[i] is not None]

    def _with(self, sec):
        # The pending set as it would be after this section (a conflicting section restarts it).
        p = list(self._pending)
        for i in range(4):
            o = p[i]
            if o is None or i == sec.index:
                continue
            if (i & 1) == (sec.index & 1) and o.header != sec.header:
                return None
        p[sec.index] = sec
        return p

    def preview(self, sec):
        """(complete, NewKey or None, sections held after this one); changes nothing."""
        self._expire()
        p = self._with(sec)
        if p is None:
            p = [None, None, None, None]
            p[sec.index] = sec
        held = [i + 1 for i in range(4) if p[i] is not None]
        if len(held) < 4:
            return False, None, held
        h13 = p[0].header
        h24 = p[1].header
        key = p[0].key4 + p[1].key4 + p[2].key4 + p[3].key4
        return True, NewKey(key, (h13[0] << 4) | h24[0], h13[1], h13[3], h24[1], h13[2] == 1), held

    def commit(self, sec):
        """Hold this section; returns the NewKey when the set is complete (and clears the set)."""
        complete, newkey, held = self.preview(sec)
        if complete:
            self.forget()
            return newkey
        p = self._with(sec)
        if p is None or self._started is None:
            p = [None, None, None, None] if p is None else p
            p[sec.index] = sec
            self._started = self._clock.time()
        self._pending = p
        return None

    # -- persistence (inside the decoder's state) -----------------------------------------------
    def to_bytes(self):
        """b"" when nothing is pending, else the start time and the four slots."""
        if self._started is None:
            return b""
        out = bytearray((self._started & 0xFFFFFFFF).to_bytes(4, "big"))
        for sec in self._pending:
            if sec is None:
                out.append(0)
            else:
                out.append(len(sec.header))
                out.extend(bytes(sec.header))
                out.extend(sec.key4)
        return bytes(out)

    def load_bytes(self, data):
        """Restore `to_bytes()`; malformed data raises ValueError and leaves nothing pending."""
        self.forget()
        if not data:
            return
        if len(data) < 8:
            raise ValueError("truncated key change state")
        pending = [None, None, None, None]
        p = 4
        for i in range(4):
            if p >= len(data):
                raise ValueError("truncated key change state")
            n = data[p]
            p += 1
            if n == 0:
                continue
            if n != (4 if i in (0, 2) else 2) or p + n + 4 > len(data):
                raise ValueError("bad key change section")
            sec = Section(None)
            sec.index = i
            sec.header = tuple(data[p:p + n])
            sec.key4 = bytes(data[p + n:p + n + 4])
            pending[i] = sec
            p += n + 4
        self._pending = pending
        self._started = int.from_bytes(data[0:4], "big")
