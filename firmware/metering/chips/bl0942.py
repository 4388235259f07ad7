"""BL0942 (Shanghai Belling) single-phase metering IC on its UART (4800 8N1, half duplex): the 23-byte
full packet read with its checksum, user registers behind the 0x55 write unlock, the 24-bit CF pulse
counter as the energy source, over-current and zero-cross settings, and reset detection through MODE.
Takes a UART meter bus with `exchange(tx, rx) -> bytes received` (the board times the reply out).

The chip has no gain registers: calibration is the scale of each reading and the energy of one CF
pulse, all integers (counts per volt, per amp and per watt x1000; micro-Wh per pulse)."""
from micropython import const

from metering.chip import GARBAGE, OK, RESET, SILENT, ChipError, Readings, check_int

_READ = const(0x58)            # | chip address (0 here: SSOP10 or A1/A2 low)
_WRITE = const(0xA8)
_PACKET = const(0xAA)
_HEADER = const(0x55)
_MODE = const(0x19)
_WA_CREEP = const(0x14)
_I_FAST_RMS_TH = const(0x15)
_I_FAST_RMS_CYC = const(0x16)
_FREQ_CYC = const(0x17)
_OT_FUNX = const(0x18)
_SOFT_RESET = const(0x1C)
_USR_WRPROT = const(0x1D)
_UNLOCK = const(0x55)
_RESET_CODE = const(0x5A5A5A)
_MODE_DEFAULT = const(0x87)
# MODE as this driver runs it: CF enabled (bits 0-2 as at reset), 800 ms RMS updates (b3), 50 Hz,
# CF_CNT not cleared on read, algebraic accumulation (b7 clear): reverse energy counts down, so the
# meter sees export (swapped terminals) instead of billing it as import. Not the reset value, so a
# chip that reset is told from one that did not.
_MODE_RUN = const(0x0F)
_MODE_60HZ = const(0x20)
# CF1 = active energy pulses, CF2 = over-current alarm, ZX = voltage zero crossing (the reset value,
# written so it is known).
_OT_FUNX_RUN = const(0x24)
_CNT_MASK = const(0xFFFFFF)
_CNT_HALF = const(0x800000)


def checksum(first, data):
    """~(first byte + all following bytes) & 0xFF: the chip's one checksum for every frame."""
    s = first
    for b in data:
        s += b
    return ~s & 0xFF


def _u24(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16)


class BL0942:
    den = 1000000            # counts are milli-Wh: a million per kWh
    wrap = 0                 # CF_CNT is read as a 24-bit difference: it never wraps between polls

    def __init__(self, bus, clock, calibration, design=None):
        self.bus = bus
        self.clock = clock
        self.cal = calibration
        self.design = design or {}
        self.readings = Readings()            # irms_n_ma stays None: the chip has no neutral channel
        self.imp = self.exp = 0
        self.energy_ok = True
        self.status = 0
        self.i_fast = 0
        self._cnt = None                      # CF_CNT at the last good read
        self._uwh = 0                         # micro-Wh of pulses not yet given out as milli-Wh
        self._tx = bytearray(2)
        self._tx[0] = _READ
        self._reg = bytearray(4)
        self._pkt = bytearray(23)
        self._w = bytearray(6)

    # -- frames ----------------------------------------------------------------------------------
    def read(self, reg):
        """One register (24 bits) or None when the chip is silent; ValueError on a bad checksum."""
        tx = self._tx
        tx[1] = reg
        rx = self._reg
        n = self.bus.exchange(tx, rx)
        if n == 0:
            return None
        if n != 4 or checksum(_READ + reg, memoryview(rx)[:3]) != rx[3]:
            raise ValueError("checksum")
        return _u24(rx, 0)

    def write(self, reg, value):
        w = self._w
        w[0] = _WRITE
        w[1] = reg
        w[2] = value & 0xFF
        w[3] = (value >> 8) & 0xFF
        w[4] = (value >> 16) & 0xFF
        w[5] = checksum(_WRITE + reg, memoryview(w)[2:5])
        self.bus.exchange(w, self._reg[:0])

    def _mode(self):
        return _MODE_RUN | (_MODE_60HZ if self.design.get("f_hz", 50) == 60 else 0)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self):
        """Soft reset, settings behind the unlock, lock, verify; the energy baseline is CF_CNT now."""
        c = self.cal
        self.write(_USR_WRPROT, _UNLOCK)
        self.write(_SOFT_RESET, _RESET_CODE)
        self.clock.sleep_ms(10)
        self.write(_USR_WRPROT, _UNLOCK)      # the reset locked the user registers again
        self.write(_MODE, self._mode())
        self.write(_WA_CREEP, c.get("creep", 0x0B))
        self.write(_I_FAST_RMS_TH, self._overcurrent_th())
        self.write(_I_FAST_RMS_CYC, 1)       # the over-current check over one line cycle
        self.write(_FREQ_CYC, 3)             # frequency over 16 cycles
        self.write(_OT_FUNX, _OT_FUNX_RUN)
        self.write(_USR_WRPROT, 0)
        try:
            mode = self.read(_MODE)
            cnt = self.read(0x07)
        except ValueError:
            raise ChipError(GARBAGE, "BL0942 answers with bad checksums")
        if mode is None or cnt is None:
            raise ChipError(SILENT, "no BL0942 answering on the meter UART")
        if mode != self._mode():
            raise ChipError(GARBAGE, "BL0942 MODE reads %04x after writing %04x" % (mode, self._mode()))
        self._cnt = cnt
        self.clock.sleep_ms(800)             # one RMS period: the first readings are real ones

    def _overcurrent_th(self):
        """I_FAST_RMS_TH for `overcurrent_a` (default 1.2 x Imax): the chip compares I_FAST_RMS[23:8],
        and I_FAST_RMS is about 0.363 of I_RMS [DS42]."""
        amps = self.design.get("overcurrent_a") or self.design.get("imax_a", 60) * 12 // 10
        th = amps * self.cal["iref"] * 363 // 1000000 // 256
        return th if th < 0xFFFF else 0xFFFF

    # -- health ----------------------------------------------------------------------------------
    def probe(self):
        try:
            mode = self.read(_MODE)
        except ValueError:
            return GARBAGE
        if mode is None:
            return SILENT
        if mode == self._mode():
            return OK
        if mode == _MODE_DEFAULT:
            # The chip restarted: its CF counter began again at 0, so what it holds now is the
            # energy since that reset (the meter reads it before setting the chip up again).
            self._cnt = 0
            return RESET
        return GARBAGE

    # -- readings and energy ---------------------------------------------------------------------
    def poll(self):
        """The full packet: readings and the CF pulses since the last good packet. A packet that fails
        its checksum changes nothing (the chip's counter keeps every pulse for the next one)."""
        tx = self._tx
        tx[1] = _PACKET
        p = self._pkt
        n = self.bus.exchange(tx, p)
        self.imp = self.exp = 0
        if n != 23 or p[0] != _HEADER or checksum(_READ, memoryview(p)[:22]) != p[22]:
            self.energy_ok = False
            return False
        self.energy_ok = True
        cnt = _u24(p, 13)
        if self._cnt is None:
            self._cnt = cnt
        d = (cnt - self._cnt) & _CNT_MASK
        if d >= _CNT_HALF:
            d -= _CNT_MASK + 1
        self._cnt = cnt
        if d:
            uwh = self._uwh + d * self.cal["cf_uwh"]
            mwh = uwh // 1000 if uwh >= 0 else -((-uwh) // 1000)
            self._uwh = uwh - mwh * 1000
            if mwh > 0:
                self.imp = mwh
            else:
                self.exp = -mwh
        c = self.cal
        r = self.readings
        irms = _u24(p, 1)
        vrms = _u24(p, 4)
        self.i_fast = _u24(p, 7)
        watt = _u24(p, 10)
        if watt & 0x800000:
            watt -= 0x1000000
        freq = p[16] | (p[17] << 8)
        self.status = p[19]
        r.urms_cv = vrms * 100000 // c["uref"]
        r.irms_ma = irms * 1000000 // c["iref"]
        r.p_w = watt * 1000 // c["pref"] if watt >= 0 else -((-watt) * 1000 // c["pref"])
        r.s_va = r.urms_cv * r.irms_ma // 100000
        r.pf_milli = r.p_w * 1000 // r.s_va if r.s_va else 0
        if r.pf_milli > 1000:
            r.pf_milli = 1000
        elif r.pf_milli < -1000:
            r.pf_milli = -1000
        r.freq_chz = 100000000 // freq if freq else 0
        return True

    # -- calibration and the lab -----------------------------------------------------------------
    def check_cal(self, name, value):
        if name not in ("uref", "iref", "pref", "cf_uwh", "creep"):
            raise ValueError("unknown BL0942 calibration value %r (uref, iref, pref, cf_uwh, creep)" % name)
        check_int(name, value, 0 if name == "creep" else 1, 0xFF if name == "creep" else 0x3FFFFFFF)

    def raw_read(self, addr):
        check_int("register address", addr, 1, 0x1D)
        try:
            v = self.read(addr)
        except ValueError:
            raise ValueError("register 0x%02x: bad checksum" % addr)
        if v is None:
            raise ValueError("register 0x%02x: no answer" % addr)
        return v

    def raw_write(self, addr, value):
        raise ValueError("the BL0942 takes no raw writes: its settings are calibration values")
