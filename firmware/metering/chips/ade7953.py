"""ADE7953 (Analog Devices) single-phase metering IC on SPI: register widths by address (8/16/24/32
bits), start-up with COMM_LOCK, the 0xAD -> 0x0FE then 0x30 -> 0x120 unlock, gains, phase and offset
calibration registers, read-with-reset active energy confirmed by LAST_RWDATA, CF1 as the energy test
output, and current channel B on the neutral (for tamper). Takes a framed SPI bus.

The meter's scales are fixed by the board (`scales` in board.json: VRMS counts per volt, IRMS counts per
amp, AWATT counts per kW, energy counts per kWh); calibration moves the chip's gains to meet them."""
from micropython import const

from metering.chip import CAL_ERROR, GARBAGE, OK, RESET, SILENT, ChipError, Readings, check_int

_LCYCMODE = const(0x004)
_PGA_V = const(0x007)
_PGA_IA = const(0x008)
_PGA_IB = const(0x009)
_UNLOCK = const(0x0FE)
_LINECYC = const(0x101)
_CONFIG = const(0x102)
_CF1DEN = const(0x103)
_CFMODE = const(0x107)
_PHCALA = const(0x108)
_PFA = const(0x10A)
_PERIOD = const(0x10E)
_R120 = const(0x120)
_AWATT = const(0x212)
_AVAR = const(0x214)
_IRMSA = const(0x21A)
_IRMSB = const(0x21B)
_VRMS = const(0x21C)
_AENERGYA = const(0x21E)
_RSTIRQSTATA = const(0x22E)
_LAST24 = const(0x2FF)
_AP_NOLOAD = const(0x203)
_IRQ_RESET = const(0x100000)
_IRQ_CYCEND = const(0x40000)
_CONFIG_RUN = const(0x0004)      # HPFEN, COMM_LOCK cleared (the interface locked to SPI)
_CONFIG_SWRST = const(0x0080)
_R120_RUN = const(0x0030)
_LCYC_RSTREAD = const(0x40)
_LCYC_ALWATT = const(0x01)
_CFMODE_CF1_AWATT = const(0x0200)   # CF1 on (bit 8 clear) from channel A active power; CF2 off
_WRAP = 1 << 24

# calibration name -> (address, width in bytes, lowest, highest)
CAL = {
    "AIGAIN": (0x280, 3, 0x200000, 0x600000), "AVGAIN": (0x281, 3, 0x200000, 0x600000),
    "AWGAIN": (0x282, 3, 0x200000, 0x600000), "BIGAIN": (0x28C, 3, 0x200000, 0x600000),
    "AWATTOS": (0x289, 3, 0, 0xFFFFFF), "AIRMSOS": (0x286, 3, 0, 0xFFFFFF), "BIRMSOS": (0x292, 3, 0, 0xFFFFFF),
    "PHCALA": (0x108, 2, 0, 0x3FF), "CF1DEN": (0x103, 2, 1, 0xFFFF),
    "PGA_V": (0x007, 1, 0, 5), "PGA_IA": (0x008, 1, 0, 5), "PGA_IB": (0x009, 1, 0, 4),
}
_GAIN_CHECK = ("AWGAIN", "AIGAIN", "AVGAIN")


def _frame(addr, n, read):
    b = bytearray(3 + n)
    b[0] = addr >> 8
    b[1] = addr & 0xFF
    b[2] = 0x80 if read else 0
    return b


def _s24(v):
    return v - 0x1000000 if v & 0x800000 else v


class ADE7953:
    wrap = _WRAP

    def __init__(self, bus, clock, calibration, design=None):
        self.bus = bus
        self.clock = clock
        self.cal = calibration
        sc = (design or {}).get("scales", {})
        self.den = sc.get("counts_per_kwh", 24000000)
        self._v = sc.get("vrms_per_v", 26000)
        self._i = sc.get("irms_per_a", 100000)
        self._in = sc.get("irmsb_per_a", self._i)
        self._p = sc.get("awatt_per_kw", 156507)
        self.readings = Readings()
        self.readings.irms_n_ma = 0
        self.imp = self.exp = 0
        self.energy_ok = True
        # Poll: energy then LAST_RWDATA twice (a vote, as the bus may lie), then the readings (24 bits).
        self._poll24 = bytearray(6 * 8)
        self._poll_regs = (_AENERGYA, _LAST24, _LAST24, _IRMSA, _IRMSB, _VRMS, _AWATT, _AVAR)
        self._poll16 = bytearray(5 * 2)

    # -- frames ----------------------------------------------------------------------------------
    def read(self, addr, n):
        f = _frame(addr, n, True)
        self.bus.transfer(f, 3 + n)
        v = 0
        for k in range(n):
            v = (v << 8) | f[3 + k]
        return v

    def write(self, addr, n, value):
        f = _frame(addr, n, False)
        for k in range(n):
            f[3 + n - 1 - k] = (value >> (8 * k)) & 0xFF
        self.bus.transfer(f, 3 + n)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self):
        """Software reset, lock the interface, the 0x120 unlock, PGAs, gains, offsets, phase, CF1, then
        read back what matters. Raises ChipError."""
        self.write(_CONFIG, 2, _CONFIG_SWRST)
        self.clock.sleep_ms(100)                      # the chip is not ready for about 100 ms
        irq = self.read(_RSTIRQSTATA, 3)
        if irq == 0xFFFFFF or irq == 0:
            raise ChipError(SILENT, "no ADE7953 answering (IRQSTATA %06x after reset)" % irq)
        if not irq & _IRQ_RESET:
            raise ChipError(GARBAGE, "ADE7953 did not report its reset (IRQSTATA %06x)" % irq)
        self.write(_CONFIG, 2, _CONFIG_RUN)
        self.write(_UNLOCK, 1, 0xAD)                  # must be the write just before 0x120
        self.write(_R120, 2, _R120_RUN)
        c = self.cal
        for name in ("PGA_V", "PGA_IA", "PGA_IB", "AIGAIN", "AVGAIN", "AWGAIN", "BIGAIN",
                     "AWATTOS", "AIRMSOS", "BIRMSOS", "PHCALA"):
            if name in c:
                a, n, _, _ = CAL[name]
                self.write(a, n, c[name])
        den = c.get("CF1DEN", 7500)
        self.write(_CF1DEN, 2, den)
        self.write(_CF1DEN, 2, den)                   # written twice in a row [DS53]
        self.write(_CFMODE, 2, _CFMODE_CF1_AWATT)
        self.write(_LCYCMODE, 1, _LCYC_RSTREAD)       # normal accumulation, read-with-reset
        config = self.read(_CONFIG, 2)
        r120 = self.read(_R120, 2)
        if config == 0xFFFF and r120 == 0xFFFF:
            raise ChipError(SILENT, "no ADE7953 answering (CONFIG reads ffff)")
        if config != _CONFIG_RUN or r120 != _R120_RUN:
            raise ChipError(GARBAGE, "ADE7953 set-up did not hold (CONFIG %04x, 0x120 %04x)" % (config, r120))
        for name in _GAIN_CHECK:
            if name in c and self.read(CAL[name][0], 3) != c[name]:
                raise ChipError(CAL_ERROR, "ADE7953 did not keep %s" % name)
        self.read(_AENERGYA, 3)                       # the energy baseline: what the reset left

    # -- health ----------------------------------------------------------------------------------
    def probe(self):
        config = self.read(_CONFIG, 2)
        r120 = self.read(_R120, 2)
        if config == r120 and (config == 0xFFFF or config == 0):
            return SILENT
        if config == _CONFIG_RUN and r120 == _R120_RUN:
            return OK
        if config == 0x8004 and r120 == 0:
            return RESET                              # reset values: the chip restarted
        return GARBAGE

    # -- readings and energy ---------------------------------------------------------------------
    def poll(self):
        f = self._poll24
        for k, a in enumerate(self._poll_regs):
            f[6 * k] = a >> 8
            f[6 * k + 1] = a & 0xFF
            f[6 * k + 2] = 0x80
        self.bus.transfer(f, 6)
        w = [(f[6 * k + 3] << 16) | (f[6 * k + 4] << 8) | f[6 * k + 5] for k in range(8)]
        e = w[0] if (w[0] == w[1] or w[0] == w[2]) else (w[1] if w[1] == w[2] else None)
        self.energy_ok = e is not None
        self.imp = self.exp = 0
        if e is not None:
            e = _s24(e)
            if e > 0:
                self.imp = e
            else:
                self.exp = -e
        g = self._poll16
        for k, a in enumerate((_PFA, _PERIOD)):
            g[5 * k] = a >> 8
            g[5 * k + 1] = a & 0xFF
            g[5 * k + 2] = 0x80
            g[5 * k + 3] = g[5 * k + 4] = 0
        self.bus.transfer(g, 5)
        pf = (g[3] << 8) | g[4]
        period = (g[8] << 8) | g[9]
        r = self.readings
        r.irms_ma = w[3] * 1000 // self._i
        r.irms_n_ma = w[4] * 1000 // self._in
        r.urms_cv = w[5] * 100 // self._v
        p = _s24(w[6])
        r.p_w = p * 1000 // self._p if p >= 0 else -((-p) * 1000 // self._p)
        q = _s24(w[7])
        r.q_var = q * 1000 // self._p if q >= 0 else -((-q) * 1000 // self._p)
        r.s_va = r.urms_cv * r.irms_ma // 100000
        pf = pf - 0x10000 if pf & 0x8000 else pf
        r.pf_milli = pf * 1000 // 0x7FFF if pf >= 0 else -((-pf) * 1000 // 0x7FFF)
        r.freq_chz = 22375000 // (period + 1) if period else 0
        return self.energy_ok

    def line_cycle_energy(self, half_cycles, timeout_ms=5000):
        """Channel A active energy over `half_cycles` half line cycles, in line-cycle accumulation mode
        (for the lab: an energy window locked to the mains). Normal accumulation is restored after;
        the energy the chip accumulated meanwhile is the lab's, not the meter's."""
        self.write(_LINECYC, 2, half_cycles)
        self.write(_LCYCMODE, 1, _LCYC_RSTREAD | _LCYC_ALWATT)
        self.read(_RSTIRQSTATA, 3)
        got = None
        waited = 0
        ends = 0
        while waited < timeout_ms:
            self.clock.sleep_ms(10)
            waited += 10
            if self.read(_RSTIRQSTATA, 3) & _IRQ_CYCEND:
                ends += 1
                if ends == 2:                          # the first window may have started early
                    got = _s24(self.read(_AENERGYA, 3))
                    break
        self.write(_LCYCMODE, 1, _LCYC_RSTREAD)
        self.read(_AENERGYA, 3)
        if got is None:
            raise ValueError("no line cycle end within %d ms (is there voltage?)" % timeout_ms)
        return got

    # -- calibration and the lab -----------------------------------------------------------------
    def check_cal(self, name, value):
        spec = CAL.get(name)
        if spec is None:
            raise ValueError("unknown ADE7953 calibration register %r (%s)" % (name, ", ".join(sorted(CAL))))
        check_int(name, value, spec[2], spec[3])

    def raw_read(self, addr):
        check_int("register address", addr, 0, 0x3FF)
        if addr & 0xFF in (0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x2E, 0x31):
            raise ValueError("register 0x%03x resets on read: use totals" % addr)
        return self.read(addr, (addr >> 8) + 1)

    def raw_write(self, addr, value):
        raise ValueError("the ADE7953 takes its settings as calibration values (cal_set)")
