"""Shared test doubles for the token tests: a board-like clock that tests move by hand, on CPython and
(as source text) under MicroPython. Its own behaviour (tick wrap) is tested here too."""

CLOCK_SRC = '''
class FakeClock:
    """ticks wrap at 2**30 ms like MicroPython; time() is Unix seconds; time_valid settable."""
    def __init__(self, t=0, unix=1700000000, time_valid=False):
        self.t = t
        self.unix0 = unix
        self.time_valid = time_valid
    def ticks_ms(self):
        return self.t & 0x3FFFFFFF
    def ticks_add(self, a, b):
        return (a + b) & 0x3FFFFFFF
    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d
    def time(self):
        return self.unix0 + self.t // 1000
    def advance(self, ms):
        self.t += ms
'''

exec(CLOCK_SRC)

STS_KEY_HEX = "f94b6ed353c3bfdb113e2d3a7ea3c41d"
STS_KEY = bytes.fromhex(STS_KEY_HEX)
VENDING_KEY_HEX = "abababababababab949494949494949401234567"
PAN = "600727000000000009"
OPAYGO_KEY_HEX = "bc41ec9530f6dac86b1a29ab82edc5fb"
OPAYGO_START = 516959010


def test_fake_clock_ticks_wrap_like_micropython():
    c = FakeClock(t=(1 << 30) - 5)  # noqa: F821 (defined by exec above)
    start = c.ticks_ms()
    c.advance(10)
    assert c.ticks_ms() == 5
    assert c.ticks_diff(c.ticks_ms(), start) == 10
    assert c.ticks_diff(c.ticks_add(start, 20), c.ticks_ms()) == 10
