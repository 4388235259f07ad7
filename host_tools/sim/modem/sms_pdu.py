"""SMS on the air interface (3GPP TS 23.040 / 23.038), written independently of the firmware so the
simulated SMS centre is a real check of the meter's encoder: GSM 7-bit default alphabet and extension
table, septet packing with UDH fill bits, UCS2, semi-octet addresses and timestamps, SMS-DELIVER PDUs
built for the meter and SMS-SUBMIT PDUs decoded from it, with concatenation headers (IEI 0x00 and 0x08)."""
import datetime

GSM7 = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
            0x40: "|", 0x65: "€"}
_TO_GSM7 = {c: i for i, c in enumerate(GSM7) if i != 0x1B}
_TO_EXT = {c: i for i, c in GSM7_EXT.items()}

DCS_GSM7, DCS_8BIT, DCS_UCS2 = 0x00, 0x04, 0x08


class PduError(ValueError):
    pass


# -- alphabets ---------------------------------------------------------------------------------------
def gsm7_fits(text):
    return all(c in _TO_GSM7 or c in _TO_EXT for c in text)


def gsm7_codes(text):
    """Septet values for text (extension characters as ESC + code)."""
    out = []
    for c in text:
        if c in _TO_GSM7:
            out.append(_TO_GSM7[c])
        elif c in _TO_EXT:
            out += [0x1B, _TO_EXT[c]]
        else:
            raise PduError(f"{c!r} is not in the GSM 7-bit alphabet")
    return out


def gsm7_text(codes):
    out, esc = [], False
    for v in codes:
        if esc:
            out.append(GSM7_EXT.get(v, " "))   # unknown extension: a space, as 23.038 advises
            esc = False
        elif v == 0x1B:
            esc = True
        else:
            out.append(GSM7[v])
    return "".join(out)


def pack_septets(codes, fill_bits=0):
    acc, nbits, out = 0, fill_bits, bytearray()
    for v in codes:
        acc |= (v & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data, count, fill_bits=0):
    bits = int.from_bytes(data, "little")
    return [(bits >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


# -- addresses and timestamps -------------------------------------------------------------------------
def _swap_bcd(digits):
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


def _unswap_bcd(data, ndigits):
    s = "".join("%X%X" % (b & 0xF, b >> 4) for b in data)
    return s[:ndigits]


def encode_address(number):
    """TP address: digit count, type (0x91 international for '+'), swapped BCD digits."""
    intl = number.startswith("+")
    digits = number.lstrip("+")
    if not digits.isdigit():
        raise PduError(f"address {number!r} is not a phone number")
    return bytes([len(digits), 0x91 if intl else 0x81]) + _swap_bcd(digits)


def decode_address(data, i):
    """(number, next index) from a TP address at data[i]."""
    n, toa = data[i], data[i + 1]
    octets = (n + 1) // 2
    raw = data[i + 2:i + 2 + octets]
    if len(raw) != octets:
        raise PduError("address runs past the PDU")
    if toa & 0x70 == 0x50:  # alphanumeric, GSM 7-bit packed
        num = gsm7_text(unpack_septets(raw, n * 4 // 7))
    else:
        num = ("+" if toa & 0x70 == 0x10 else "") + _unswap_bcd(raw, n)
    return num, i + 2 + octets


def encode_sca(number):
    """Service centre address as AT+CMGR shows it: octet length then type and digits."""
    a = encode_address(number)[1:]
    return bytes([len(a)]) + a


def encode_scts(unix_s, tz_quarters=0):
    t = datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc) + datetime.timedelta(minutes=15 * tz_quarters)
    digits = "%02d%02d%02d%02d%02d%02d" % (t.year % 100, t.month, t.day, t.hour, t.minute, t.second)
    tz = abs(tz_quarters)
    tzb = int("%d%d" % (tz % 10, tz // 10), 16) | (0x08 if tz_quarters < 0 else 0)
    return _swap_bcd(digits) + bytes([tzb])


# -- splitting long texts -----------------------------------------------------------------------------
def choose_dcs(text):
    return DCS_GSM7 if gsm7_fits(text) else DCS_UCS2


def split_text(text, dcs):
    """Parts of text that fit one SMS each (153 septets / 67 UCS2 units when concatenated), never
    splitting an escape pair or a surrogate pair."""
    if dcs == DCS_GSM7:
        codes = gsm7_codes(text)
        if len(codes) <= 160:
            return [text]
        parts, cur, n = [], "", 0
        for c in text:
            w = 2 if c in _TO_EXT else 1
            if n + w > 153:
                parts.append(cur)
                cur, n = "", 0
            cur += c
            n += w
        return parts + [cur] if cur else parts
    units = len(text.encode("utf-16-be")) // 2
    if units <= 70:
        return [text]
    parts, cur, n = [], "", 0
    for c in text:
        w = 2 if ord(c) > 0xFFFF else 1
        if n + w > 67:
            parts.append(cur)
            cur, n = "", 0
        cur += c
        n += w
    return parts + [cur] if cur else parts


def _user_data(text, dcs, udh):
    """(UDL, UD bytes) for a part, with the UDH (bytes, may be empty) in front."""
    if dcs == DCS_GSM7:
        codes = gsm7_codes(text)
        if udh:
            hdr_bits = (len(udh) + 1) * 8
            fill = (7 - hdr_bits % 7) % 7
            septets_hdr = (hdr_bits + fill) // 7
            return septets_hdr + len(codes), bytes([len(udh)]) + udh + pack_septets(codes, fill)
        return len(codes), pack_septets(codes)
    body = text.encode("utf-16-be") if dcs == DCS_UCS2 else text.encode("latin-1")
    if udh:
        body = bytes([len(udh)]) + udh + body
    return len(body), body


def deliver_pdus(sender, text, unix_s, sca="+22200000000", ref=0, dcs=None):
    """SMS-DELIVER PDUs (with SCA in front, as a modem stores them) for text; concatenated if long."""
    dcs = choose_dcs(text) if dcs is None else dcs
    parts = split_text(text, dcs)
    out = []
    for i, part in enumerate(parts):
        udh = bytes([0x00, 0x03, ref & 0xFF, len(parts), i + 1]) if len(parts) > 1 else b""
        udl, ud = _user_data(part, dcs, udh)
        first = 0x04 | (0x40 if udh else 0)      # SMS-DELIVER, no more messages to send, UDHI
        tpdu = bytes([first]) + encode_address(sender) + bytes([0x00, dcs]) + encode_scts(unix_s) + bytes([udl]) + ud
        out.append((encode_sca(sca) + tpdu, len(tpdu)))
    return out


def submit_pdu(dest, text, dcs=None, mr=0, udh=b""):
    """One SMS-SUBMIT TPDU (no SCA), as a meter would send it: used to test the decoder both ways."""
    dcs = choose_dcs(text) if dcs is None else dcs
    udl, ud = _user_data(text, dcs, udh)
    first = 0x11 | (0x40 if udh else 0)          # SMS-SUBMIT, relative validity period
    return bytes([first, mr]) + encode_address(dest) + bytes([0x00, dcs, 0xA7, udl]) + ud


# -- decoding what the meter sends --------------------------------------------------------------------
def _dcs_alphabet(dcs):
    group = dcs >> 4
    if group in (0, 1, 2, 3) or group == 0xF:
        alpha = (dcs >> 2) & 3 if group != 0xF else (1 if dcs & 4 else 0)
        return {0: DCS_GSM7, 1: DCS_8BIT, 2: DCS_UCS2}.get(alpha, DCS_8BIT)
    if group in (0xC, 0xD):
        return DCS_GSM7
    if group == 0xE:
        return DCS_UCS2
    return DCS_8BIT


def parse_udh(udh):
    """Information elements as {iei: bytes}."""
    ies, i = {}, 0
    while i + 1 < len(udh):
        iei, n = udh[i], udh[i + 1]
        ies[iei] = bytes(udh[i + 2:i + 2 + n])
        i += 2 + n
    return ies


def decode_submit(tpdu):
    """dict(to, text, dcs, mr, pid, concat=(ref, total, seq) or None, octets = the UCS2/8-bit user data
    after any header, as sent; None for GSM 7-bit) from an SMS-SUBMIT TPDU."""
    try:
        first = tpdu[0]
        if first & 0x03 != 0x01:
            raise PduError(f"not an SMS-SUBMIT (first octet 0x{first:02x})")
        mr = tpdu[1]
        to, i = decode_address(tpdu, 2)
        pid, dcs = tpdu[i], tpdu[i + 1]
        i += 2
        vpf = (first >> 3) & 3
        i += {0: 0, 2: 1, 1: 7, 3: 7}[vpf]
        udl = tpdu[i]
        ud = tpdu[i + 1:]
    except IndexError:
        raise PduError("SMS-SUBMIT truncated") from None
    alphabet = _dcs_alphabet(dcs)
    body = None
    udh = b""
    if first & 0x40:
        if not ud:
            raise PduError("UDHI set but no user data")
        udh = ud[1:1 + ud[0]]
    if alphabet == DCS_GSM7:
        need = (udl * 7 + 7) // 8
        if len(ud) < need:
            raise PduError(f"user data has {len(ud)} octets, UDL {udl} septets needs {need}")
        if udh:
            hdr_bits = (len(udh) + 1) * 8
            fill = (7 - hdr_bits % 7) % 7
            skip = (hdr_bits + fill) // 7
            codes = unpack_septets(ud[len(udh) + 1:], udl - skip, fill)
        else:
            codes = unpack_septets(ud, udl)
        text = gsm7_text(codes)
    else:
        if len(ud) != udl:
            raise PduError(f"user data has {len(ud)} octets, UDL says {udl}")
        body = ud[len(udh) + 1:] if udh else ud
        text = body.decode("utf-16-be", "strict") if alphabet == DCS_UCS2 else body.decode("latin-1")
    concat = None
    ies = parse_udh(udh)
    if 0x00 in ies and len(ies[0x00]) == 3:
        concat = (ies[0x00][0], ies[0x00][1], ies[0x00][2])
    elif 0x08 in ies and len(ies[0x08]) == 4:
        concat = ((ies[0x08][0] << 8) | ies[0x08][1], ies[0x08][2], ies[0x08][3])
    return {"to": to, "text": text, "dcs": alphabet, "mr": mr, "pid": pid, "concat": concat,
            "octets": body}
