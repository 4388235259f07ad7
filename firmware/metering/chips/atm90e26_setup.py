"""ATM90E26 start-up, loaded only while the chip is (re)started or its register names are looked up:
soft reset, calibration registers with their CS1/CS2 checksums, start metering and verify. Kept out of
atm90e26.py so the resident driver is only the poll and health path. Also the lab's checks (calibration
names and values, raw register access)."""
from micropython import const

from metering.chip import CAL_ERROR, SILENT, check_int

_SOFT_RESET = const(0x00)
_SYS_STATUS = const(0x01)
_FUNC_EN = const(0x02)
_SAG_TH = const(0x03)
_LAST_DATA = const(0x06)
_CAL_START = const(0x20)
_CS1 = const(0x2C)
_ADJ_START = const(0x30)
_CS2 = const(0x3B)

_RESET_CODE = const(0x789A)
_CODE_CAL = const(0x5678)
_CODE_RUN = const(0x8765)
_FUNC_SIGNATURE = const(0x0030)  # see atm90e26.py: tells a chip that was reset from one that was not
_CAL_ERR = const(0xC000)
_ADJ_ERR = const(0x3000)

# Registers 0x21..0x2B (CS1 covers them) and 0x31..0x3A (CS2), in address order.
CAL_REGS = ("PLconstH", "PLconstL", "Lgain", "Lphi", "Ngain", "Nphi",
            "PStartTh", "PNolTh", "QStartTh", "QNolTh", "MMode")
ADJ_REGS = ("Ugain", "IgainL", "IgainN", "Uoffset", "IoffsetL", "IoffsetN",
            "PoffsetL", "QoffsetL", "PoffsetN", "QoffsetN")
REGISTER_ADDRESS = {"SagTh": _SAG_TH}
for _i, _n in enumerate(CAL_REGS):
    REGISTER_ADDRESS[_n] = 0x21 + _i
for _i, _n in enumerate(ADJ_REGS):
    REGISTER_ADDRESS[_n] = 0x31 + _i


_WRITABLE_RAW = (0x04,)          # SmallPMod: the lab's offset measurement mode


def check_cal(name, value):
    """A calibration register by name: known, 16-bit, Ugain bit 15 clear (datasheet)."""
    if name not in REGISTER_ADDRESS:
        raise ValueError("unknown calibration register %r" % name)
    check_int(name, value, 0, 0xFFFF)
    if name == "Ugain" and value & 0x8000:
        raise ValueError("Ugain bit 15 must be 0 (datasheet)")


def raw_read(chip, addr):
    check_int("register address", addr, 0, 0x7F)
    if 0x40 <= addr <= 0x45 or addr == 0x01:
        raise ValueError("register 0x%02x clears on read: use totals" % addr)
    return chip.read(addr)


def raw_write(chip, addr, value):
    check_int("register address", addr, 0, 0x7F)   # 4.0 == 4 would pass the next check and break the frame
    if addr not in _WRITABLE_RAW:
        raise ValueError("only SmallPMod (0x04) may be written raw")
    check_int("value", value, 0, 0xFFFF)
    chip.write(addr, value)


def checksum(values):
    """CS1/CS2: low byte = sum of all register bytes mod 256, high byte = XOR of them."""
    lo = 0
    hi = 0
    for v in values:
        b1 = (v >> 8) & 0xFF
        b0 = v & 0xFF
        lo += b1 + b0
        hi ^= b1 ^ b0
    return (hi << 8) | (lo & 0xFF)


def start(chip, error):
    """Soft reset, load calibration with CS1/CS2, start metering and verify; raises `error` (ChipError)."""
    chip.write(_SOFT_RESET, _RESET_CODE)
    chip.clock.sleep_ms(5)
    c = chip.cal
    cal = [c[n] & 0xFFFF for n in CAL_REGS]
    adj = [c[n] & 0xFFFF for n in ADJ_REGS]
    seq = [(_FUNC_EN, _FUNC_SIGNATURE)]
    if "SagTh" in c:
        seq.append((_SAG_TH, c["SagTh"] & 0xFFFF))
    seq.append((_CAL_START, _CODE_CAL))
    for i, v in enumerate(cal):
        seq.append((0x21 + i, v))  # PLconstH before PLconstL: H takes effect when L is written
    seq.append((_CS1, checksum(cal)))
    seq.append((_ADJ_START, _CODE_CAL))
    for i, v in enumerate(adj):
        seq.append((0x31 + i, v))
    seq.append((_CS2, checksum(adj)))
    seq.append((_CAL_START, _CODE_RUN))
    seq.append((_ADJ_START, _CODE_RUN))
    verify = (_SYS_STATUS, _CS1, _CS2, _FUNC_EN, _LAST_DATA, _CAL_START, _ADJ_START)
    buf = bytearray(3 * (len(seq) + len(verify)))
    for i, (a, v) in enumerate(seq):
        buf[3 * i] = a
        buf[3 * i + 1] = v >> 8
        buf[3 * i + 2] = v & 0xFF
    base = len(seq)
    for j, a in enumerate(verify):
        buf[3 * (base + j)] = 0x80 | a
    chip.bus.transfer(buf, 3)
    status, cs1, cs2, func, last, cs, adjs = [(buf[3 * j + 1] << 8) | buf[3 * j + 2]
                                              for j in range(base, base + len(verify))]
    if func != _FUNC_SIGNATURE or last != _FUNC_SIGNATURE:
        raise error(SILENT, "no ATM90E26 answering (FuncEn read %04x, LastData %04x)" % (func, last))
    if status & _CAL_ERR or cs1 != checksum(cal):
        raise error(CAL_ERROR, "chip rejected CS1 (SysStatus %04x, CS1 %04x)" % (status, cs1))
    if status & _ADJ_ERR or cs2 != checksum(adj):
        raise error(CAL_ERROR, "chip rejected CS2 (SysStatus %04x, CS2 %04x)" % (status, cs2))
    if cs != _CODE_RUN or adjs != _CODE_RUN:
        raise error(CAL_ERROR, "metering did not start (CalStart %04x, AdjStart %04x)" % (cs, adjs))
