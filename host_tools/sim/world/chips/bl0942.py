"""The BL0942 (Shanghai Belling) modelled at register level for the simulator, on its UART.

Transfer functions from the datasheet [DS42] (reference/metering-ics.md §3): I_RMS = 305978 I/Vref,
V_RMS = 73989 V/Vref, WATT = 3537 I V cos(phi)/Vref^2 (pin millivolts, Vref = 1.218 V), one CF pulse
per 1638.4 x 256 WATT-seconds. Modelled quirks: anti-creep (WATT and I_RMS read 0 and nothing
accumulates below WA_CREEP x 3125/256), FREQ held below the zero-crossing threshold, absolute or
algebraic CF_CNT (MODE bit 7), CF_CNT clear-on-read (MODE bit 6), CF output enable (bit 2), user
registers 0x10-0x1F written only after 0x55 in USR_WRPROT, SOFT_RESET 0x5A5A5A, the ones'-complement
checksum on every frame (a write with a bad one is ignored). Faults: silent (no byte back), garbage
(noise instead of the reply), reset (power-on reset: registers to defaults, CF_CNT to 0)."""
import math
from host_tools.sim.world.chips import FromJson, chip_params

VREF = 1.218
I_RMS_K = 305978 / VREF          # counts per pin mV
V_RMS_K = 73989 / VREF
WATT_K = 3537 / (VREF * VREF)    # counts per pin mV^2
CF_WS = 1638.4 * 256             # WATT-seconds per CF pulse
I_FAST_RATIO = 0.363
V_FULL_MV = 100 / math.sqrt(2)   # +-100 mV peak on the voltage pin
ZX_FRACTION = 1 / 32.0

I_WAVE, V_WAVE, I_RMS, V_RMS, I_FAST_RMS, WATT, CF_CNT, FREQ, STATUS = 1, 2, 3, 4, 5, 6, 7, 8, 9
I_RMSOS, WA_CREEP, I_FAST_RMS_TH, I_FAST_RMS_CYC, FREQ_CYC, OT_FUNX, MODE, GAIN_CR = \
    0x12, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A
SOFT_RESET, USR_WRPROT = 0x1C, 0x1D
RESET_VALUES = {FREQ: 0x4E20, WA_CREEP: 0x0B, I_FAST_RMS_TH: 0xFFFF, I_FAST_RMS_CYC: 1, FREQ_CYC: 3,
                OT_FUNX: 0x24, MODE: 0x87, GAIN_CR: 2}
USER = range(0x10, 0x20)
READ, WRITE, PACKET = 0x58, 0xA8, 0xAA

DEFAULT_PARAMS = {"noise_rel": 2e-5, "address": 0}


def checksum(first, data):
    return ~(first + sum(data)) & 0xFF


class BL0942(FromJson):
    """One BL0942 on a UART. `uart(tx, want)` answers what the chip sends back for the bytes tx."""

    NAME = "BL0942"
    kind = "bl0942"
    bus = "uart"

    def __init__(self, rng, params=None):
        self.rng = rng
        self.params = p = chip_params(DEFAULT_PARAMS, params, self.NAME)
        self.fault = None
        self.cf_pulses = 0              # edges on the CF1 pin (the bench's scanning head)
        self.frames = 0
        self.v_mv = self.i_mv = self.phi = 0.0
        self.freq_hz = 50.0
        self.power_on_reset()


    def power_on_reset(self):
        self.r = {a: RESET_VALUES.get(a, 0) for a in range(0x20)}
        self._cf_frac = 0.0             # signed pulses not yet whole
        self._cnt = 0                   # CF_CNT as a plain integer (masked to 24 bits when read)

    def set_fault(self, kind):
        if kind not in (None, "silent", "garbage"):
            raise ValueError(f"unknown BL0942 fault {kind!r}: use None, 'silent' or 'garbage'")
        self.fault = kind

    # ---- the physical side ----------------------------------------------------------------------
    def set_inputs(self, v_mv, i_mv, phi_rad, freq_hz, n_mv=0.0, n_phi_rad=0.0):
        self.v_mv, self.i_mv, self.phi, self.freq_hz = float(v_mv), float(i_mv), float(phi_rad), float(freq_hz)

    def _watt(self):
        return WATT_K * self.v_mv * self.i_mv * math.cos(self.phi)

    def _creeping(self, watt):
        return abs(watt) < self.r[WA_CREEP] * 3125 / 256.0

    def advance(self, dt_s):
        watt = self._watt()
        if self._creeping(watt) or dt_s <= 0:
            return
        mode = self.r[MODE]
        pulses = watt * dt_s / CF_WS
        if mode & 0x80:
            pulses = abs(pulses)
        acc = self._cf_frac + pulses
        whole = int(acc)
        self._cf_frac = acc - whole
        if whole:
            self._cnt += whole
            if mode & 0x04:
                self.cf_pulses += abs(whole)

    # ---- registers ------------------------------------------------------------------------------
    def _noisy(self, x):
        n = self.params["noise_rel"]
        return x * (1 + self.rng.uniform(-n, n)) if n else x

    def peek(self, a):
        """A register's value as the chip would send it (24 bits), without side effects."""
        if a == I_RMS or a == I_FAST_RMS or a == WATT:
            watt = self._watt()
            if self._creeping(watt):
                return 0
            if a == WATT:
                return int(round(self._noisy(watt))) & 0xFFFFFF
            i = I_RMS_K * self.i_mv
            return min(0xFFFFFF, int(round(self._noisy(i * (I_FAST_RATIO if a == I_FAST_RMS else 1.0)))))
        if a == V_RMS:
            return min(0xFFFFFF, int(round(self._noisy(V_RMS_K * self.v_mv))))
        if a == CF_CNT:
            return self._cnt & 0xFFFFFF
        if a == FREQ:
            if self.v_mv >= V_FULL_MV * ZX_FRACTION and self.freq_hz > 0:
                self.r[FREQ] = int(round(1e6 / self.freq_hz)) & 0xFFFF
            return self.r[FREQ]
        if a == STATUS:
            watt = self._watt()
            s = (1 if watt < 0 else 0) | (2 if self._creeping(watt) else 0)
            if self.i_mv < 42 / math.sqrt(2) / 64:
                s |= 0x100
            if self.v_mv < V_FULL_MV * ZX_FRACTION:
                s |= 0x200
            return s
        return self.r.get(a, 0)

    def _read(self, a):
        v = self.peek(a)
        if a == CF_CNT and self.r[MODE] & 0x40:
            self._cnt = 0                               # clear-on-read when MODE bit 6 says so
        return v

    def _write(self, a, v):
        if a in USER and a != USR_WRPROT and self.r[USR_WRPROT] != 0x55:
            return                                      # write-protected: ignored
        if a == SOFT_RESET:
            if v == 0x5A5A5A:
                self.power_on_reset()
            return
        if a in self.r and a >= 0x10:
            self.r[a] = v

    def poke(self, a, v):
        self.r[a] = v

    # ---- the bus side ---------------------------------------------------------------------------
    def uart(self, tx, want):
        """The bytes the chip sends back within the reply window for the host's bytes `tx`."""
        self.frames += 1
        if self.fault == "silent":
            return b""
        out = self._frame(bytes(tx))
        if self.fault == "garbage":
            return self.rng.randbytes(want or len(out))
        return out[:want]

    def _frame(self, tx):
        addr = self.params["address"]
        if len(tx) >= 2 and tx[0] == READ | addr:
            reg = tx[1]
            if reg == PACKET:
                body = bytearray([0x55])
                for a in (I_RMS, V_RMS, I_FAST_RMS, WATT, CF_CNT):
                    body += self._read(a).to_bytes(3, "little")
                body += self._read(FREQ).to_bytes(2, "little")
                body += bytes([0, self.peek(STATUS) & 0xFF, 0, 0])
                return bytes(body) + bytes([checksum(READ | addr, body)])
            v = self._read(reg) if reg < 0x20 else 0
            d = v.to_bytes(3, "little")
            return d + bytes([checksum((READ | addr) + reg, d)])
        if len(tx) >= 6 and tx[0] == WRITE | addr:
            if checksum(tx[0] + tx[1], tx[2:5]) == tx[5]:
                self._write(tx[1], int.from_bytes(tx[2:5], "little"))
            return b""
        return b""
