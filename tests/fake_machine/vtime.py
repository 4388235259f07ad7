"""A virtual `time` for board tests: ticks move only when the code sleeps, and scripted events (a key
press, a power-fail edge) happen at set virtual milliseconds, so sleep-and-wake behaviour is exact and
instant on both interpreters. Sleeps are logged in `machine.log`; the wall clock follows the fake RTC.
"""
import machine
from credit.civil import days_from_civil  # firmware/ is on the path in every test run

_PERIOD = 1 << 30
_HALF = 1 << 29
_Y2000 = 946684800


class VirtualTime:
    def __init__(self, epoch_year=1970, real=None):
        self.epoch_year = epoch_year
        self._offset = 0 if epoch_year == 1970 else _Y2000
        self.real = real  # the interpreter's own time module, for gmtime
        self.ms = 0
        self.us = 0
        self.wall_at_ms0 = 0  # port-epoch seconds at ms == 0
        self.events = []  # (at_ms, fn), fired as virtual time passes them
        machine.RTC.on_set = self._rtc_set
        machine.Timer.clock = self

    def _rtc_set(self, dt):
        s = days_from_civil(dt[0], dt[1], dt[2]) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]
        self.wall_at_ms0 = s - self._offset - self.ms // 1000

    def at(self, ms, fn):
        self.events.append((ms, fn))
        self.events.sort(key=lambda e: e[0])

    def _advance(self, ms):
        end = self.ms + ms
        while self.events and self.events[0][0] <= end:
            when, fn = self.events.pop(0)
            if when > self.ms:
                self.ms = when
            fn()
        self.ms = end

    def ticks_ms(self):
        return self.ms & (_PERIOD - 1)

    def ticks_us(self):
        return (self.ms * 1000 + self.us) & (_PERIOD - 1)

    def ticks_add(self, t, delta):
        return (t + delta) & (_PERIOD - 1)

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF

    def sleep_ms(self, ms):
        machine.record(("sleep_ms", ms))
        self._advance(ms)

    def sleep_us(self, us):
        machine.record(("sleep_us", us))
        self.us += us
        if self.us >= 1000:
            self._advance(self.us // 1000)
            self.us %= 1000

    def sleep(self, s):
        self.sleep_ms(int(s * 1000))

    def time(self):
        return self.wall_at_ms0 + self.ms // 1000

    def gmtime(self, s=0):
        # the port's gmtime: seconds counted from its own epoch
        return self.real.gmtime(s + self._offset)
