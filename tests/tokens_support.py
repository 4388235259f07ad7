"""Shared test doubles for the token tests: the tests' one clock started at the token tests' time, on
CPython and (as source text) under MicroPython, and the keys and identifiers the vectors use."""
from fakeclock import FakeClock as _Clock

TOKEN_EPOCH = 1700000000     # the token tests' start (2023-11-14), time not known yet
# Source text that gives code run under MicroPython the same clock, started the same way.
CLOCK_SRC = """
from fakeclock import FakeClock as _Clock
def FakeClock(ms=0, epoch=%d, time_valid=False):
    return _Clock(ms, epoch, time_valid)
""" % TOKEN_EPOCH


def FakeClock(ms=0, epoch=TOKEN_EPOCH, time_valid=False):
    """The tests' one clock (mpy_support/fakeclock.py) started as the token tests expect."""
    return _Clock(ms, epoch, time_valid)


STS_KEY_HEX = "f94b6ed353c3bfdb113e2d3a7ea3c41d"
STS_KEY = bytes.fromhex(STS_KEY_HEX)
VENDING_KEY_HEX = "abababababababab949494949494949401234567"
PAN = "600727000000000009"
OPAYGO_KEY_HEX = "bc41ec9530f6dac86b1a29ab82edc5fb"
OPAYGO_START = 516959010

