"""The one fake board clock of the tests, the same class on CPython and under MicroPython (this folder
is on both search paths): ticks in ms that wrap at 2**30 as MicroPython's do, Unix time, moved by hand
(`advance`, or `ms` set directly) or by the scheduler's sleeps, with input arriving at given instants."""
_MASK = (1 << 30) - 1
_HALF = 1 << 29


class FakeClock:
    def __init__(self, ms=0, epoch=1767571200, time_valid=True):
        self.ms = ms              # ms since the fake started (not wrapped: ticks_ms wraps it)
        self.epoch = epoch        # Unix seconds at ms = 0
        self.time_valid = time_valid
        self.input_at = []        # ms instants at which sleep_until should report input
        self.sleeps = 0           # sleep_until calls
        self.slept = 0            # ms slept in sleep_ms (a blocking wait)
        self.set_calls = []       # every set_time, in order

    def ticks_ms(self):
        return self.ms & _MASK

    def ticks_add(self, t, d):
        return (t + d) & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def time(self):
        return self.epoch + self.ms // 1000

    def set_time(self, t):
        self.set_calls.append(t)
        self.epoch = t - self.ms // 1000
        self.time_valid = True

    def advance(self, ms):
        """Move on `ms`; the ticks now."""
        self.ms += ms
        return self.ticks_ms()

    def sleep_ms(self, ms):
        self.slept += ms
        self.ms += ms

    def sleep_until(self, ticks):
        """Sleep to `ticks`; True (and the time of the input) when input arrives first."""
        self.sleeps += 1
        d = self.ticks_diff(ticks, self.ticks_ms())
        target = self.ms + (d if d > 0 else 0)
        for t in sorted(self.input_at):
            if self.ms <= t < target:
                self.input_at.remove(t)
                self.ms = t
                return True
        self.ms = target
        return False
