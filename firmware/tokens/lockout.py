"""Failed-entry lockout: after 3 consecutive bad tokens entries lock for `first_s` (10 s), doubling with
each further failure up to a cap; a good token resets it. Guessing tokens therefore costs real time.
A meter that takes OpenPAYGO tokens follows the OpenPAYGO security audit's schedule instead:
`OPAYGO_FIRST_S` (1 minute) doubling, capped at `OPAYGO_CAP_S` (512 minutes).

One lockout per source (see `tokens.apply`): the keypad's is persisted with the token state; SMS
senders and unauthenticated network deliveries each get one in RAM; tokens inside an authenticated
head-end envelope never count. So junk from one channel never locks another out.

Timing uses the board clock's ticks (monotonic, wraps at 2**30 ms). The state saved for flash holds
the failure count, the lock time still remaining, and (when the board's wall clock is trusted) the
absolute unlock time. On restore, a trusted clock gives the exact remaining time (power-off time
counts); without one the saved remaining time is served again in full, so a reboot never shortens
a lock.
"""
from micropython import const

_FREE_FAILS = const(3)
_FIRST_LOCK_S = const(10)
OPAYGO_FIRST_S = const(60)
OPAYGO_CAP_S = const(30720)  # 512 minutes
_MAX_CAP_S = const(86400)  # ticks_diff is only meaningful below 2**29 ms
_VERSION = const(1)


class Lockout:
    def __init__(self, clock, cap_s=3600, first_s=_FIRST_LOCK_S):
        if cap_s < 10 or cap_s > _MAX_CAP_S:
            raise ValueError("lockout cap must be 10..86400 s")
        if first_s < 1 or first_s > cap_s:
            raise ValueError("first lock must be 1 s .. the cap")
        self._clock = clock
        self.cap_ms = cap_s * 1000
        self.first_ms = first_s * 1000
        self.fails = 0
        self._until = None  # ticks_ms at which the lock ends, or None

    def remaining_ms(self):
        """Milliseconds until entries are allowed again (0 when not locked)."""
        if self._until is None:
            return 0
        left = self._clock.ticks_diff(self._until, self._clock.ticks_ms())
        if left <= 0:
            self._until = None
            return 0
        return left

    def locked(self):
        return self.remaining_ms() > 0

    def lock_ms_for(self, fails):
        """Lock length after `fails` consecutive failures (0 below the threshold)."""
        if fails < _FREE_FAILS:
            return 0
        ms = self.first_ms
        for _ in range(fails - _FREE_FAILS):
            ms *= 2
            if ms >= self.cap_ms:
                return self.cap_ms
        return ms if ms < self.cap_ms else self.cap_ms

    def failure(self):
        """Count a bad entry; starts (or lengthens) the lock. Returns the lock length in ms."""
        if self.fails < 255:
            self.fails += 1
        ms = self.lock_ms_for(self.fails)
        if ms:
            self._until = self._clock.ticks_add(self._clock.ticks_ms(), ms)
        return ms

    def success(self):
        self.fails = 0
        self._until = None

    # -- persistence ------------------------------------------------------------------------
    def to_bytes(self):
        rem = self.remaining_ms()
        until_s = 0
        c = self._clock
        if rem and getattr(c, "time_valid", False):
            until_s = c.time() + (rem + 999) // 1000
        out = bytearray(10)
        out[0] = _VERSION
        out[1] = self.fails
        out[2:6] = rem.to_bytes(4, "big")
        out[6:10] = until_s.to_bytes(4, "big")
        return bytes(out)

    def load_bytes(self, data):
        if len(data) != 10 or data[0] != _VERSION:
            raise ValueError("corrupt lockout state")
        self.fails = data[1]
        rem = int.from_bytes(data[2:6], "big")
        until_s = int.from_bytes(data[6:10], "big")
        c = self._clock
        if until_s and getattr(c, "time_valid", False):
            # Trusted wall clock: what is left of the absolute lock, never more than was left
            # at save time (a clock set backwards must not lengthen it past the cap either).
            left = (until_s - c.time()) * 1000
            rem = left if left < rem else rem
        if rem > self.cap_ms:
            rem = self.cap_ms
        self._until = c.ticks_add(c.ticks_ms(), rem) if rem > 0 else None
