"""The ADE7953 (Analog Devices) modelled at register level for the simulator, on SPI.

Frames are `addr_hi, addr_lo, rw (0x80 read), data` with the data as wide as the register: 8 bits at
0x0xx, 16 at 0x1xx, 24 at 0x2xx, 32 at 0x3xx (the 24- and 32-bit views are one storage, sign-
extended in the 32-bit view for signed registers); Version 0x702 is 8-bit. Transfer functions at
PGA 1 and gain 0x400000 [DS53]: VRMS and IRMS 9,032,007 and AWATT 4,862,401 at full scale (500 mV
peak on both inputs), active energy 2^23 LSB in 40.5 s at full scale. Modelled: the gains
(AIGAIN/AVGAIN/AWGAIN/BIGAIN), offsets (AWATTOS), PHCALA (10-bit sign-magnitude, 1.117 us per LSB,
bit 9 = advance), PGAs, the 0xAD-then-0x120 unlock (0x120 reverts to 0 at reset), COMM_LOCK and
SWRST in CONFIG, read-with-reset energy (LCYCMODE.RSTREAD), line-cycle accumulation (LCYCMODE bit 0,
LINECYC half cycles, CYCEND), no-load (AP_NOLOAD), CF1 from the channel A active energy divided by
CF1DEN, LAST_RWDATA per width, IRQSTATA with RESET, write protection. Faults: silent (MISO high),
garbage (noise), reset."""
import math
from host_tools.sim.world.chips import FromJson, chip_params

FS_MV = 500 / math.sqrt(2)
RMS_FS = 9032007
WATT_FS = 4862401
ENERGY_PER_WATT_S = (1 << 23) / 40.5 / WATT_FS   # energy LSB per AWATT count per second
PHCAL_S = 1.117e-6
PGA = (1, 2, 4, 8, 16, 22, 22, 22)
GAIN_ONE = 0x400000

# addresses (16-bit view names where the chip has one)
LCYCMODE, PGA_V, PGA_IA, PGA_IB, WRITE_PROTECT, LAST_OP, UNLOCK, LAST_RW8 = 0x004, 0x007, 0x008, 0x009, 0x040, 0x0FD, 0x0FE, 0x0FF
LINECYC, CONFIG, CF1DEN, CF2DEN, CFMODE, PHCALA, PHCALB, PFA, PFB, ANGLE_A, PERIOD = \
    0x101, 0x102, 0x103, 0x104, 0x107, 0x108, 0x109, 0x10A, 0x10B, 0x10C, 0x10E
RESERVED_120, LAST_ADD, LAST_RW16 = 0x120, 0x1FE, 0x1FF
AP_NOLOAD, AVA, AWATT, AVAR, IRMSA, IRMSB, VRMS = 0x03, 0x10, 0x12, 0x14, 0x1A, 0x1B, 0x1C   # low byte, 24/32
AENERGYA, AENERGYB = 0x1E, 0x1F
IRQENA, IRQSTATA, RSTIRQSTATA = 0x2C, 0x2D, 0x2E
AIGAIN, AVGAIN, AWGAIN, AVARGAIN, AVAGAIN, AIRMSOS, VRMSOS, AWATTOS = 0x80, 0x81, 0x82, 0x83, 0x84, 0x86, 0x88, 0x89
BIGAIN, BIRMSOS = 0x8C, 0x92
LAST_RW24 = 0xFF
VERSION = 0x702
SIGNED = {AVA, AWATT, AVAR, AENERGYA, AENERGYB, AIRMSOS, VRMSOS, AWATTOS, BIRMSOS}
RESET_BIT, CYCEND_BIT = 1 << 20, 1 << 18

DEFAULT_PARAMS = {"noise_rel": 2e-5, "version": 0x80}


def width_of(addr):
    if addr == VERSION or addr == 0x800:
        return 1
    return {0: 1, 1: 2, 2: 3, 3: 4}.get(addr >> 8, 0)


class ADE7953(FromJson):
    NAME = "ADE7953"
    kind = "ade7953"
    bus = "spi"

    def __init__(self, rng, params=None):
        self.rng = rng
        self.params = p = chip_params(DEFAULT_PARAMS, params, self.NAME)
        self.fault = None
        self.cf_pulses = 0
        self.v_mv = self.i_mv = self.phi = self.n_mv = self.n_phi = 0.0
        self.freq_hz = 50.0
        self.power_on_reset()


    def power_on_reset(self):
        self.r8 = {LCYCMODE: 0x40, PGA_V: 0, PGA_IA: 0, PGA_IB: 0, WRITE_PROTECT: 0}
        self.r16 = {LINECYC: 0, CONFIG: 0x8004, CF1DEN: 0x3F, CF2DEN: 0x3F, CFMODE: 0x300, PHCALA: 0, PHCALB: 0,
                    RESERVED_120: 0}
        self.r24 = {AP_NOLOAD: 0xE419, IRQENA: 0x100000, IRQSTATA: RESET_BIT}
        for a in (AIGAIN, AVGAIN, AWGAIN, AVARGAIN, AVAGAIN, BIGAIN):
            self.r24[a] = GAIN_ONE
        self.energy = [0.0, 0.0]                 # AENERGYA/B accumulators (LSB, fractional)
        self.lcyc_acc = 0.0
        self.lcyc_t = 0.0
        self.cf_acc = 0.0
        self.last = {1: 0, 2: 0, 3: 0, 4: 0}
        self._unlocked = False
        self._prev_write = None

    def set_fault(self, kind):
        if kind not in (None, "silent", "garbage"):
            raise ValueError(f"unknown ADE7953 fault {kind!r}: use None, 'silent' or 'garbage'")
        self.fault = kind

    # ---- the physical side ----------------------------------------------------------------------
    def set_inputs(self, v_mv, i_mv, phi_rad, freq_hz, n_mv=0.0, n_phi_rad=0.0):
        self.v_mv, self.i_mv, self.phi, self.freq_hz = float(v_mv), float(i_mv), float(phi_rad), float(freq_hz)
        self.n_mv, self.n_phi = float(n_mv), float(n_phi_rad)

    def _gain(self, a):
        return self.r24[a] / GAIN_ONE

    def _phi_a(self):
        v = self.r16[PHCALA] & 0x3FF
        mag = v & 0x1FF
        theta = 2 * math.pi * (self.freq_hz or 50.0) * PHCAL_S * mag
        return self.phi - theta if v & 0x200 else self.phi + theta

    def _s24(self, a):
        v = self.r24.get(a, 0) & 0xFFFFFF
        return v - (1 << 24) if v & 0x800000 else v

    def _awatt(self):
        v = self.v_mv * PGA[self.r8[PGA_V] & 7] / FS_MV
        i = self.i_mv * PGA[self.r8[PGA_IA] & 7] / FS_MV
        return WATT_FS * v * i * math.cos(self._phi_a()) * self._gain(AWGAIN) + self._s24(AWATTOS)

    def _noload(self, awatt):
        y = (65536 - (self.r24[AP_NOLOAD] & 0xFFFF)) * 1.4
        return abs(awatt) < WATT_FS / y if y > 0 else False

    def advance(self, dt_s):
        if dt_s <= 0:
            return
        aw = self._awatt()
        if self._noload(aw):
            return
        e = aw * ENERGY_PER_WATT_S * dt_s
        if self.r8[LCYCMODE] & 0x01:
            # line-cycle mode: the energy of each LINECYC half cycles is latched at its end (CYCEND)
            period = self.r16[LINECYC] / (2.0 * (self.freq_hz or 50.0))
            self.lcyc_acc += e
            self.lcyc_t += dt_s
            if period > 0 and self.lcyc_t >= period:
                self.energy[0] = self.lcyc_acc
                self.lcyc_acc = 0.0
                self.lcyc_t -= period * int(self.lcyc_t / period)
                self.r24[IRQSTATA] |= CYCEND_BIT
        else:
            x = self.energy[0] + e
            # the signed 24-bit register rolls over
            if x >= 1 << 23:
                x -= 1 << 24
            elif x < -(1 << 23):
                x += 1 << 24
            self.energy[0] = x
        if not self.r16[CFMODE] & 0x100:          # CF1 enabled: active energy A / CF1DEN
            den = max(1, self.r16[CF1DEN])
            acc = self.cf_acc + abs(e) / den
            whole = int(acc)
            self.cf_acc = acc - whole
            self.cf_pulses += whole

    # ---- registers ------------------------------------------------------------------------------
    def _noisy(self, x):
        n = self.params["noise_rel"]
        return x * (1 + self.rng.uniform(-n, n)) if n else x

    def _rms(self, mv, pga_reg, gain_reg, os_reg):
        x = mv * PGA[self.r8[pga_reg] & 7] / FS_MV * RMS_FS * self._gain(gain_reg)
        x = math.sqrt(max(0.0, x * x + (self._s24(os_reg) if os_reg else 0) * 4096.0))
        return min(0xFFFFFF, int(round(self._noisy(x))))

    def _value(self, addr, w, consume):
        if w == 1:
            if addr == VERSION:
                return self.params["version"]
            return self.r8.get(addr & 0xFF, 0) if addr != LAST_RW8 else self.last[1]
        if w == 2:
            if addr == LAST_RW16:
                return self.last[2]
            if addr == PERIOD:
                return int(round(223750 / (self.freq_hz or 50.0))) - 1 if self.v_mv > 1 else 0
            if addr == PFA:
                aw = self._awatt()
                s = self.v_mv * self.i_mv
                return int(round(math.cos(self._phi_a()) * 0x7FFF)) & 0xFFFF if s > 0 and not self._noload(aw) else 0
            if addr == ANGLE_A:
                return int(round((self._phi_a() / (2 * math.pi * (self.freq_hz or 50.0))) / 4.47e-6)) & 0xFFFF
            return self.r16.get(addr, 0)
        lo = addr & 0xFF
        if lo == LAST_RW24:
            return self.last[w]
        if lo == AWATT:
            aw = self._awatt()
            v = 0 if self._noload(aw) else int(round(self._noisy(aw)))
        elif lo == IRMSA:
            v = self._rms(self.i_mv, PGA_IA, AIGAIN, AIRMSOS)
        elif lo == IRMSB:
            v = self._rms(self.n_mv, PGA_IB, BIGAIN, BIRMSOS)
        elif lo == VRMS:
            v = self._rms(self.v_mv, PGA_V, AVGAIN, VRMSOS)
        elif lo == AENERGYA:
            whole = int(self.energy[0])
            v = whole
            if consume and self.r8[LCYCMODE] & 0x40 and not self.r8[LCYCMODE] & 0x01:
                self.energy[0] -= whole               # read-with-reset keeps the fraction
        elif lo == RSTIRQSTATA:
            v = self.r24[IRQSTATA]
            if consume:
                self.r24[IRQSTATA] = 0
        elif lo == IRQSTATA:
            v = self.r24[IRQSTATA]
        else:
            v = self.r24.get(lo, 0)
        v &= 0xFFFFFF
        if w == 4 and lo in SIGNED and v & 0x800000:
            v |= 0xFF000000
        return v

    def peek(self, addr):
        return self._value(addr, width_of(addr), False)

    def _write(self, addr, w, value):
        wp = self.r8[WRITE_PROTECT]
        if (w == 1 and wp & 1 and addr != WRITE_PROTECT) or (w == 2 and wp & 2) or (w >= 3 and wp & 4):
            return
        prev, self._prev_write = self._prev_write, (addr, value)
        if addr == RESERVED_120:
            if prev == (UNLOCK, 0xAD):
                self.r16[RESERVED_120] = value & 0xFFFF
            return
        if w == 1:
            if addr != UNLOCK:
                self.r8[addr & 0xFF] = value & 0xFF
        elif w == 2:
            if addr == CONFIG and value & 0x80:
                self.power_on_reset()              # SWRST
                return
            self.r16[addr] = value & 0xFFFF
        else:
            lo = addr & 0xFF
            if lo in (AWATT, IRMSA, IRMSB, VRMS, AENERGYA, AENERGYB, IRQSTATA, RSTIRQSTATA, AVA, AVAR):
                return                              # read-only
            self.r24[lo] = value & 0xFFFFFF
        self.last[w] = value

    def poke(self, addr, value):
        self._write(addr, width_of(addr), value)

    # ---- the bus side ---------------------------------------------------------------------------
    def transfer(self, buf, frame_len=None):
        """Frames of frame_len bytes each (3-byte header + data), in place."""
        n = len(buf)
        if self.fault == "silent":
            buf[:] = b"\xff" * n
            return
        fl = frame_len or n
        for o in range(0, n - fl + 1, fl):
            addr = (buf[o] << 8) | buf[o + 1]
            w = fl - 3
            if width_of(addr) != w:
                buf[o:o + fl] = bytes(fl)                  # wrong length: CS high aborts, nothing happens
                continue
            if buf[o + 2] & 0x80:
                self._prev_write = None                   # the unlock must be the write just before
                v = self._value(addr, w, True)
                self.last[w] = v
                buf[o + 3:o + fl] = v.to_bytes(w, "big")
            else:
                self._write(addr, w, int.from_bytes(buf[o + 3:o + fl], "big"))
            buf[o:o + 3] = bytes(3)
        if self.fault == "garbage":
            buf[:] = self.rng.randbytes(n)
