"""Stands in for a metering chip the registry does not know (a wrong board.json): every start fails with
FAILED and says which chips are known, so the meter reports it once and runs on without metering."""
from metering.chip import FAILED, ChipError, Readings


class UnknownChip:
    """Stands in for a chip the registry does not know: every start fails with FAILED and says why."""
    den = 1000
    wrap = 0

    def __init__(self, name, calibration, known):
        self.name = name
        self.known = known
        self.cal = calibration
        self.readings = Readings()
        self.imp = self.exp = 0
        self.energy_ok = False

    def _why(self):
        return "unknown metering chip %r in board.json (known: %s)" % (self.name, ", ".join(self.known))

    def start(self):
        raise ChipError(FAILED, self._why())

    def probe(self):
        return FAILED

    def poll(self):
        return False

    def check_cal(self, *args):
        raise ValueError(self._why())

    raw_read = raw_write = check_cal
