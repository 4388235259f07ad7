"""Shared fakes for firmware tests under CPython: a wrapping clock and a bus onto the chip model."""
_MASK = (1 << 30) - 1
_HALF = 1 << 29


class FakeClock:
    """ticks wrap at 2**30 like MicroPython's; `start` lets tests begin just before a wrap."""

    def __init__(self, start=0, epoch=1767571200):
        self.ms = start
        self.epoch = epoch
        self.time_valid = True
        self.input_at = []        # ms instants at which sleep_until should report input
        self.sleeps = 0

    def ticks_ms(self):
        return self.ms & _MASK

    def ticks_add(self, t, d):
        return (t + d) & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def time(self):
        return self.epoch + self.ms // 1000

    def set_time(self, t):
        self.epoch = t - self.ms // 1000

    def advance(self, ms):
        self.ms += ms

    def sleep_ms(self, ms):
        self.ms += ms

    def sleep_until(self, ticks):
        self.sleeps += 1
        d = self.ticks_diff(ticks, self.ticks_ms())
        target = self.ms + max(0, d)
        for t in sorted(self.input_at):
            if self.ms <= t < target:
                self.input_at.remove(t)
                self.ms = t
                return True
        self.ms = target
        return False


class ModelBus:
    """The board's framed SPI bus, wired to the simulator's chip model; advances the model's time
    with the fake clock so energy accumulates as the clock moves."""

    def __init__(self, chip, clock):
        self.chip = chip
        self.clock = clock
        self.last_ms = clock.ms
        self.frames = 0

    def sync(self):
        dt = self.clock.ms - self.last_ms
        if dt > 0:
            self.chip.advance(dt / 1000.0)
            self.last_ms = self.clock.ms

    def transfer(self, buf, frame_len):
        self.sync()
        self.frames += len(buf) // frame_len
        self.chip.transfer(buf, frame_len)

    def exchange(self, tx, rx):
        """A UART metering chip: the bytes sent, then what came back (at most len(rx))."""
        self.sync()
        self.frames += 1
        out = self.chip.uart(bytes(tx), len(rx))
        rx[:len(out)] = out
        return len(out)


class EventSink:
    def __init__(self):
        self.items = []

    def emit(self, kind, data=None):
        self.items.append((kind, data))

    def kinds(self):
        return [k for k, _ in self.items]
