"""ATM90E26 single-phase metering IC on SPI (mode 3, 24-bit frames): calibrated start with CS1/CS2,
a health probe, and clear-on-read energy confirmed through LastData. Takes a framed SPI bus."""
from micropython import const

from metering.chip import CAL_ERROR, GARBAGE, OK, RESET, SILENT, ChipError, Readings

_SYS_STATUS = const(0x01)
_FUNC_EN = const(0x02)
_LAST_DATA = const(0x06)
_CAL_START = const(0x20)
_ADJ_START = const(0x30)
_AP_ENERGY = const(0x40)
_AN_ENERGY = const(0x41)
_EN_STATUS = const(0x46)
_IRMS = const(0x48)
_URMS = const(0x49)
_PMEAN = const(0x4A)
_QMEAN = const(0x4B)
_FREQ = const(0x4C)
_POWERF = const(0x4D)
_PANGLE = const(0x4E)
_SMEAN = const(0x4F)
_IRMS2 = const(0x68)

_CODE_RUN = const(0x8765)
_CODE_OFF = const(0x6886)
# FuncEn: SagEn | SagWo. Not the reset default (0x000C), so reading it back tells a chip that was
# reset (and lost its calibration) from one that was not.
_FUNC_SIGNATURE = const(0x0030)
_FUNC_DEFAULT = const(0x000C)
_CAL_ERR = const(0xC000)
_ADJ_ERR = const(0x3000)

# The energy registers wrap at 16 bits (0.1 CF pulse per count) when they are not read in time.
_WRAP = 65536


def _setup():
    # The start-up code and register tables are loaded for one call and forgotten again: they run at
    # boot and on recovery only, and would otherwise stay resident beside the poll path.
    import sys
    from metering.chips import atm90e26_setup as m
    sys.modules.pop(m.__name__, None)
    delattr(sys.modules["metering.chips"], "atm90e26_setup")
    return m


def __getattr__(name):
    """`checksum`, `CAL_REGS`, `ADJ_REGS` and `REGISTER_ADDRESS` live in atm90e26_setup (on demand)."""
    if name in ("checksum", "CAL_REGS", "ADJ_REGS", "REGISTER_ADDRESS"):
        return getattr(_setup(), name)
    raise AttributeError(name)


def sign_magnitude(v):
    return -(v & 0x7FFF) if v & 0x8000 else v


def twos16(v):
    return v - 0x10000 if v & 0x8000 else v


def _read_frames(addrs):
    buf = bytearray(3 * len(addrs))
    for i, a in enumerate(addrs):
        buf[3 * i] = 0x80 | a
    return buf


def _vote(a, l1, l2):
    """The energy word as the chip sent it: confirmed by LastData, else None (the bus lied)."""
    if a == l1 or a == l2:
        return a
    if l1 == l2:
        return l1
    return None


class ATM90E26:
    FRAME = 3

    wrap = _WRAP

    def __init__(self, bus, clock, calibration, design=None):
        self.bus = bus
        self.clock = clock
        self.cal = calibration
        # counts (0.1 CF pulse) per kWh at the board's meter constant
        self.den = 10 * (design or {}).get("meter_constant_imp_per_kwh", 3200)
        # Probe: FuncEn, LastData, CalStart, AdjStart, SysStatus.
        self._probe_tpl = _read_frames((_FUNC_EN, _LAST_DATA, _CAL_START, _ADJ_START, _SYS_STATUS))
        self._probe = bytearray(len(self._probe_tpl))
        # Poll: energy reads each followed by two LastData reads (a vote), then the readings.
        self._poll_tpl = _read_frames((_AP_ENERGY, _LAST_DATA, _LAST_DATA, _AN_ENERGY, _LAST_DATA, _LAST_DATA,
                                       _EN_STATUS, _URMS, _IRMS, _PMEAN, _QMEAN, _SMEAN, _POWERF, _FREQ,
                                       _PANGLE, _IRMS2))
        self._poll = bytearray(len(self._poll_tpl))
        self.words = [0] * 16
        self.imp = 0
        self.exp = 0
        self.energy_ok = True
        self.en_status = 0
        self.readings = Readings()
        self.readings.irms_n_ma = 0
        self.last_probe = None

    # -- low level -------------------------------------------------------------------------------
    def _run(self, frames):
        self.bus.transfer(frames, 3)
        return frames

    def read(self, addr):
        f = self._run(bytearray((0x80 | addr, 0, 0)))
        return (f[1] << 8) | f[2]

    def write(self, addr, value):
        self._run(bytearray((addr & 0x7F, (value >> 8) & 0xFF, value & 0xFF)))

    def cal_values(self, names):
        return [self.cal[n] & 0xFFFF for n in names]

    def start(self):
        """Soft reset, load calibration with CS1/CS2, start metering and verify. Raises ChipError."""
        _setup().start(self, ChipError)

    # -- health ----------------------------------------------------------------------------------
    def probe(self):
        """Classify the chip without touching its energy registers: OK, SILENT, GARBAGE, RESET, CAL_ERROR."""
        f = self._probe
        f[:] = self._probe_tpl
        self._run(f)
        func, last, cs, adjs, status = [(f[3 * i + 1] << 8) | f[3 * i + 2] for i in range(5)]
        if func == last == cs == adjs == status and (func == 0xFFFF or func == 0):
            st = SILENT
        elif func == _FUNC_SIGNATURE and last == _FUNC_SIGNATURE and cs == _CODE_RUN and adjs == _CODE_RUN:
            st = CAL_ERROR if status & (_CAL_ERR | _ADJ_ERR) else OK
        elif func == _FUNC_DEFAULT and last == _FUNC_DEFAULT and cs == _CODE_OFF:
            st = RESET
        else:
            st = GARBAGE
        self.last_probe = st
        return st

    # -- readings and energy ---------------------------------------------------------------------
    def poll(self):
        """Read energy (clear-on-read, confirmed by LastData) and the instantaneous readings."""
        f = self._poll
        f[:] = self._poll_tpl
        self._run(f)
        w = self.words
        for i in range(len(w)):
            w[i] = (f[3 * i + 1] << 8) | f[3 * i + 2]
        ap = _vote(w[0], w[1], w[2])
        an = _vote(w[3], w[4], w[5])
        self.energy_ok = ap is not None and an is not None
        self.imp = ap or 0
        self.exp = an or 0
        self.en_status = w[6]
        r = self.readings
        r.urms_cv = w[7]
        r.irms_ma = w[8]
        r.p_w = twos16(w[9])
        r.q_var = twos16(w[10])
        r.s_va = w[11] & 0x7FFF
        r.pf_milli = sign_magnitude(w[12])
        r.freq_chz = w[13]
        r.angle_dd = sign_magnitude(w[14])
        r.irms_n_ma = w[15]
        return self.energy_ok

    # -- calibration and the lab (atm90e26_setup, loaded for the call) ----------------------------
    def check_cal(self, name, value):
        _setup().check_cal(name, value)

    def raw_read(self, addr):
        return _setup().raw_read(self, addr)

    def raw_write(self, addr, value):
        _setup().raw_write(self, addr, value)
