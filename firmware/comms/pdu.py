"""SMS PDUs (3GPP TS 23.040): SMS-SUBMIT built for `AT+CMGS` in PDU mode and SMS-DELIVER (or SUBMIT,
for tests) decoded from `AT+CMGR`/`AT+CMGL` output, with the 8-bit-reference concatenation header.

`decode()` never raises: any malformed PDU gives None. Text is GSM 7-bit (DCS 0x00) or UCS2 (DCS
0x08, UTF-16BE, written by hand because MicroPython has no utf-16 codec)."""
import binascii
from micropython import const
from comms import gsm7
from credit import civil

DCS_GSM7 = const(0x00)
DCS_UCS2 = const(0x08)
_MTI_SUBMIT = const(0x01)
_VPF_RELATIVE = const(0x10)
_UDHI = const(0x40)
_VP_24H = const(167)  # relative validity: (167 - 143) * 30 min + 12 h = 24 h
_IEI_CONCAT8 = const(0x00)


def ucs2(text):
    out = bytearray()
    for ch in text:
        o = ord(ch)
        if o > 0xFFFF:  # outside the BMP: a surrogate pair
            o -= 0x10000
            hi = 0xD800 | (o >> 10)
            lo = 0xDC00 | (o & 0x3FF)
            out += bytes((hi >> 8, hi & 0xFF, lo >> 8, lo & 0xFF))
        else:
            out += bytes((o >> 8, o & 0xFF))
    return bytes(out)


def from_ucs2(data):
    """Text from UTF-16BE octets (surrogate pairs joined, lone surrogates as U+FFFD), built as UTF-8 in
    one buffer: no string object per character on a small heap."""
    out = bytearray()
    i = 0
    n = len(data) & ~1
    while i < n:
        o = (data[i] << 8) | data[i + 1]
        i += 2
        if 0xD800 <= o < 0xDC00 and i < n:
            lo = (data[i] << 8) | data[i + 1]
            if 0xDC00 <= lo < 0xE000:
                i += 2
                o = 0x10000 + ((o - 0xD800) << 10) + (lo - 0xDC00)
        if 0xD800 <= o < 0xE000:
            o = 0xFFFD  # a lone surrogate cannot be a character
        if o < 0x80:
            out.append(o)
        elif o < 0x800:
            out.append(0xC0 | (o >> 6))
            out.append(0x80 | (o & 0x3F))
        elif o < 0x10000:
            out.append(0xE0 | (o >> 12))
            out.append(0x80 | ((o >> 6) & 0x3F))
            out.append(0x80 | (o & 0x3F))
        else:
            out.append(0xF0 | (o >> 18))
            out.append(0x80 | ((o >> 12) & 0x3F))
            out.append(0x80 | ((o >> 6) & 0x3F))
            out.append(0x80 | (o & 0x3F))
    return str(out, "utf-8")


def address(number):
    """TP-DA/OA field: digit count, type of address (0x91 international, 0x81 unknown), BCD with
    nibbles swapped and an F filler."""
    toa = 0x81
    if number.startswith("+"):
        number = number[1:]
        toa = 0x91
    digits = number
    if len(digits) & 1:
        digits += "F"
    out = bytearray((len(number), toa))
    for i in range(0, len(digits), 2):
        out.append(int(digits[i + 1] + digits[i], 16))
    return bytes(out)


def submit(dest, user_data, dcs, udl, udh=None):
    """An SMS-SUBMIT TPDU. `user_data` is already packed (septets) or UCS2 octets; `udl` is the
    TP-UDL value (septets for GSM 7-bit including the header's, octets for UCS2)."""
    first = _MTI_SUBMIT | _VPF_RELATIVE | (_UDHI if udh else 0)
    return bytes((first, 0)) + address(dest) + bytes((0, dcs, _VP_24H, udl)) + user_data


def concat_header(ref, total, seq):
    """UDH with the concatenation element, 8-bit reference (IEI 0x00)."""
    return bytes((5, _IEI_CONCAT8, 3, ref & 0xFF, total, seq))


def hexlify(b):
    return binascii.hexlify(b).decode().upper()


class _Cur:
    def __init__(self, b):
        self.b = b
        self.i = 0

    def take(self, n):
        if n < 0 or self.i + n > len(self.b):
            raise ValueError("short pdu")
        self.i += n
        return self.b[self.i - n:self.i]

    def byte(self):
        return self.take(1)[0]


def _bcd(b):
    s = ""
    for x in b:
        s += "0123456789*#abc"[x & 0x0F] if (x & 0x0F) != 0x0F else ""
        s += "0123456789*#abc"[x >> 4] if (x >> 4) != 0x0F else ""
    return s


def _swapped(x):
    return (x & 0x0F) * 10 + (x >> 4)


def _scts(b):
    """Unix seconds of a service-centre time stamp (local time + zone in quarter hours)."""
    y, mo, d, h, mi, s = [_swapped(x) for x in b[:6]]
    z = b[6]
    zone = (z & 0x07) * 10 + (z >> 4)
    if z & 0x08:
        zone = -zone
    if not (1 <= mo <= 12 and 1 <= d <= civil.days_in_month(2000 + y, mo) and h < 24 and mi < 60 and s < 60):
        return None
    return civil.unix(2000 + y, mo, d, h, mi, s) - zone * 900


def decode(data, smsc=True):
    """Decode a PDU (bytes or hex text) into {"type", "addr", "text", "ts", "concat": (ref, total,
    seq) or None, "dcs"}; None when it is not a well-formed SMS-DELIVER or SMS-SUBMIT."""
    try:
        if isinstance(data, str):
            data = binascii.unhexlify(data.strip())
        return _decode(_Cur(data), smsc)
    except (ValueError, IndexError, TypeError):
        return None


def _decode(c, smsc):
    if smsc:
        c.take(c.byte())
    first = c.byte()
    mti = first & 3
    if mti not in (0, 1):
        return None
    out = {"type": "deliver" if mti == 0 else "submit"}
    if mti == 1:
        c.byte()  # message reference
    n = c.byte()
    toa = c.byte()
    raw = c.take((n + 1) // 2)
    if toa & 0x70 == 0x50:  # alphanumeric sender: GSM 7-bit packed in n semi-octets
        out["addr"] = gsm7.text(gsm7.unpack(raw, n * 4 // 7))
    else:
        digits = _bcd(raw)[:n]
        out["addr"] = ("+" if toa & 0x70 == 0x10 else "") + digits
    c.byte()  # protocol identifier
    dcs = c.byte()
    out["dcs"] = dcs
    out["ts"] = None
    if mti == 0:
        out["ts"] = _scts(c.take(7))
    else:
        vpf = (first >> 3) & 3
        c.take((0, 7, 1, 7)[vpf])
    udl = c.byte()
    alpha = _alphabet(dcs)
    ud = c.take(len(c.b) - c.i)
    hlen = 0
    out["concat"] = None
    if first & _UDHI:
        if not ud:
            raise ValueError("missing udh")
        hlen = ud[0] + 1
        if hlen > len(ud):
            raise ValueError("udh too long")
        out["concat"] = _concat(ud[1:hlen])
    if alpha == 0:
        if udl > 160:
            raise ValueError("udl")
        fill = (7 - (hlen * 8) % 7) % 7
        skip = (hlen * 8 + fill) // 7
        if udl < skip:
            raise ValueError("udl")
        sep = gsm7.unpack(ud[hlen:], udl - skip, fill)
        out["text"] = gsm7.text(sep)
    else:
        if udl > len(ud) or udl < hlen:
            raise ValueError("udl")
        body = ud[hlen:udl]
        out["text"] = from_ucs2(body) if alpha == 2 else hexlify(body)
    return out


def _alphabet(dcs):
    """0 GSM 7-bit, 1 8-bit data, 2 UCS2 (TS 23.038 section 4)."""
    g = dcs & 0xF0
    if dcs & 0xC0 == 0:
        a = (dcs >> 2) & 3
        if a == 3:
            raise ValueError("reserved alphabet")
        return a
    if g == 0xF0:
        return 1 if dcs & 4 else 0
    if g in (0xC0, 0xD0):
        return 0
    if g == 0xE0:
        return 2
    raise ValueError("unsupported dcs")


def _concat(h):
    i = 0
    while i + 2 <= len(h):
        iei = h[i]
        ln = h[i + 1]
        v = h[i + 2:i + 2 + ln]
        if len(v) != ln:
            raise ValueError("udh element")
        if iei == _IEI_CONCAT8 and ln == 3 and v[1] and 1 <= v[2] <= v[1]:
            return (v[0], v[1], v[2])
        if iei == 0x08 and ln == 4 and v[2] and 1 <= v[3] <= v[2]:  # 16-bit reference
            return ((v[0] << 8) | v[1], v[2], v[3])
        i += 2 + ln
    return None
