"""The metering chip contract every driver keeps, so the meter interface knows no chip by name.

A driver is built as `Driver(bus, clock, calibration, design)` (bus from the board, calibration a dict
of the chip's own settings, design the board's `metering` section) and offers:
- `start()`: (re)start the chip with its calibration; raises ChipError(state, detail) when it cannot;
- `probe()`: classify the chip without touching its energy (one of the states below);
- `poll()`: fill `readings` and set `imp`, `exp` (energy counts since the last poll) and `energy_ok`;
- `den`: energy counts per kWh (an int), `wrap`: the period of the chip's energy counter as read at
  one poll (0 when the driver itself makes a late read exact), so the meter can restore lost turns;
- `cal` (the calibration in force), `check_cal(name, value)` (ValueError for a bad one), and
  `raw_read(addr)` / `raw_write(addr, value)` for the lab (ValueError for what the lab may not touch).
"""
from micropython import const

# Health states, as probe() returns them and events name them.
OK = const(0)
SILENT = const(1)
GARBAGE = const(2)
RESET = const(3)
CAL_ERROR = const(4)
FAILED = const(5)        # no driver at all (a chip the registry does not know): never recovers
STATE_NAMES = ("ok", "silent", "garbage", "reset", "cal_error", "failed")


class ChipError(Exception):
    """The chip could not be started: `state` says how it failed (SILENT, GARBAGE, CAL_ERROR, FAILED)."""

    def __init__(self, state, detail):
        super().__init__(detail)
        self.state = state


class Readings:
    """The instantaneous readings of one poll, in the units every layer above uses (integers). No
    __slots__: MicroPython ignores it, and the tuple would only cost heap."""

    def __init__(self):
        self.urms_cv = 0          # 0.01 V
        self.irms_ma = 0          # mA, line
        self.p_w = 0              # W, signed (negative = export)
        self.q_var = 0            # var, signed
        self.s_va = 0             # VA
        self.pf_milli = 0         # 0.001, signed
        self.freq_chz = 0         # 0.01 Hz
        self.angle_dd = 0         # 0.1 degree
        self.irms_n_ma = None     # mA, neutral; None when the chip has no neutral channel

    def as_dict(self):
        return {"urms_cv": self.urms_cv, "irms_ma": self.irms_ma, "p_w": self.p_w, "q_var": self.q_var,
                "s_va": self.s_va, "pf_milli": self.pf_milli, "freq_chz": self.freq_chz,
                "angle_dd": self.angle_dd, "irms_n_ma": self.irms_n_ma}


def check_int(name, value, lo, hi):
    """One calibration value in range, else ValueError naming it."""
    if not isinstance(value, int) or value < lo or value > hi:
        raise ValueError("%s must be an integer %d..%d" % (name, lo, hi))
