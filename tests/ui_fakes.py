"""Fakes for the UI tests, written to run under CPython and MicroPython alike: a board clock whose
ticks wrap at 2**30 (started just before the wrap), an LCD that records every show(), a keypad queue."""

_PERIOD = 1 << 30
_HALF = 1 << 29


class WrapClock:
    def __init__(self, start=_PERIOD - 1500):
        self.ms = start

    def ticks_ms(self):
        return self.ms & (_PERIOD - 1)

    def ticks_add(self, t, d):
        return (t + d) & (_PERIOD - 1)

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF

    def advance(self, ms):
        self.ms += ms


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
