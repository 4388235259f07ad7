"""Picks the metering chip driver named in the board's description, from one table, and builds it on
the board's bus. A name the table does not hold gives a driver that always fails (reported at boot,
metering marked failed), never an exception that would stop the meter."""
from metering.chip import FAILED, ChipError, Readings

# chip name in board.json -> (module, class). One line per chip; nothing else names a chip.
DRIVERS = {
    "atm90e26": ("metering.chips.atm90e26", "ATM90E26"),
    "bl0942": ("metering.chips.bl0942", "BL0942"),
    "ade7953": ("metering.chips.ade7953", "ADE7953"),
    "dummy": ("metering.chips.dummy", "DummyChip"),
}


class UnknownChip:
    """Stands in for a chip the registry does not know: every start fails with FAILED and says why."""
    den = 1000
    wrap = 0

    def __init__(self, name, calibration):
        self.name = name
        self.cal = calibration
        self.readings = Readings()
        self.imp = self.exp = 0
        self.energy_ok = False

    def _why(self):
        return "unknown metering chip %r in board.json (known: %s)" % (self.name, ", ".join(sorted(DRIVERS)))

    def start(self):
        raise ChipError(FAILED, self._why())

    def probe(self):
        return FAILED

    def poll(self):
        return False

    def check_cal(self, *args):
        raise ValueError(self._why())

    raw_read = raw_write = check_cal


def make_chip(metering, bus, clock, calibration):
    name = metering.get("chip")
    entry = DRIVERS.get(name)
    if entry is None:
        return UnknownChip(name, calibration)
    mod = __import__(entry[0], None, None, (entry[1],))
    return getattr(mod, entry[1])(bus, clock, calibration, metering)


def max_power_w(metering):
    """The highest power the meter can see: 1.17 x Un at Imax (the chip's voltage range top)."""
    return metering["un_v"] * 117 // 100 * metering["imax_a"]
