"""Fakes for the UI tests, written to run under CPython and MicroPython alike: a board clock whose
ticks wrap at 2**30 (started just before the wrap), an LCD that records every show(), a keypad queue."""

from fakeclock import FakeClock

_PERIOD = 1 << 30


def WrapClock(start=_PERIOD - 1500):
    """The tests' one clock (mpy_support/fakeclock.py), started just before the ticks wrap."""
    return FakeClock(start)


class RecordingLcd:
    def __init__(self):
        self.shown = []

    def show(self, lines):
        self.shown.append(list(lines))

    @property
    def last(self):
        return self.shown[-1] if self.shown else None


class KeyQueue:
    def __init__(self):
        self.keys = []

    def push(self, *keys):
        for k in keys:
            self.keys.append(k)

    def read_key(self):
        return self.keys.pop(0) if self.keys else None
