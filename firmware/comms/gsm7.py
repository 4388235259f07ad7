"""The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038), and septet packing
(TS 23.040 section 9.2.3.24: septets laid LSB first, optionally after fill bits that align them
behind a user data header)."""
# Position = septet value; 0x1B is the escape to the extension table, never a character here.
_BASIC = ("@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
          "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
          " !\"#\u00a4%&'()*+,-./0123456789:;<=>?"
          "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
          "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0")
_EXT_CHARS = "\x0c^{}\\[~]|\u20ac"
_EXT_CODES = b"\x0a\x14\x28\x29\x2f\x3c\x3d\x3e\x40\x65"
ESC = 0x1B


def septets(text):
    """The septet values for `text` (extension characters take two), or None if some character
    has no GSM 7-bit form (the message must then go as UCS2)."""
    out = bytearray()
    for ch in text:
        if ch == "\x1b":
            return None
        i = _BASIC.find(ch)
        if i >= 0:
            out.append(i)
            continue
        i = _EXT_CHARS.find(ch)
        if i < 0:
            return None
        out.append(ESC)
        out.append(_EXT_CODES[i])
    return out


def text(sep):
    """Characters for septet values; an unknown extension code reads as its basic character, as
    23.038 asks, and a stray trailing escape as a space."""
    out = []
    esc = False
    for s in sep:
        if esc:
            esc = False
            i = _EXT_CODES.find(bytes((s,)))
            out.append(_EXT_CHARS[i] if i >= 0 else _BASIC[s])
        elif s == ESC:
            esc = True
        else:
            out.append(_BASIC[s])
    if esc:
        out.append(" ")
    return "".join(out)


def pack(sep, fill=0):
    """Septets packed into octets, starting `fill` bits into the first octet."""
    out = bytearray((fill + 7 * len(sep) + 7) // 8)
    bit = fill
    for s in sep:
        k = bit >> 3
        sh = bit & 7
        out[k] |= (s << sh) & 0xFF
        if sh > 1:
            out[k + 1] |= s >> (8 - sh)
        bit += 7
    return bytes(out)


def unpack(data, count, fill=0):
    """`count` septets from packed octets; raises ValueError if the octets are too few."""
    if (fill + 7 * count + 7) // 8 > len(data):
        raise ValueError("septets beyond data")
    out = bytearray(count)
    n = len(data)
    for i in range(count):
        bit = fill + 7 * i
        k = bit >> 3
        sh = bit & 7
        v = data[k] >> sh
        if sh > 1 and k + 1 < n:
            v |= data[k + 1] << (8 - sh)
        out[i] = v & 0x7F
    return out
