"""Shared fakes for firmware tests under CPython: the one clock (mpy_support/fakeclock.py), a bus onto
the chip model and a service-port stream."""
from fakeclock import FakeClock  # noqa: F401 (the tests' one clock, re-exported)


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


class Stream:
    """A service port's byte stream: the test queues lines in `rx`, the port's replies gather in `tx`."""

    def __init__(self):
        self.rx = []
        self.tx = bytearray()

    def read(self):
        return self.rx.pop(0) if self.rx else None

    def write(self, data):
        self.tx += data
