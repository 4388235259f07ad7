"""MISTY1 block cipher (RFC 2994: 64-bit block, 128-bit key, 8 rounds), the STS EA11 algorithm.

The meter decrypts with it; the vending tools encrypt with the same code. All arithmetic is on
16-bit halves so every value stays a small int on a 32-bit MCU (no big ints in the cipher).
"""
from array import array

# S-boxes from RFC 2994 section 2.3, as hex text: one string constant parses in a few hundred bytes
# of RAM, where a 512-element tuple literal needs kilobytes to compile on the device. S9 entries are
# 2 bytes big-endian. Both tables are built once at import.
_S7 = bytes.fromhex(
    "1b32335a3b1017545b1a72736b2c66491f24136c372e3f4a5d0f405625511c040b46200d7b3544422b1e41144b79156f"
    "0e550936740c6753280a7e38020760291912652f303908685f782a4c6445753d594803577c4f623c1d215e276a704d3a"
    "016d6e6318772305267600312d7a7f61502211064716524e713e6943345c587d"
)

_S9_HEX = (
    "01c300cb0153019f01e300e900fb0035018100b9011701eb01330009002d00d300c7014a0037007e00eb0164019301d8"
    "00a3011e0055002c001d01a201630118014b015201d2000f002b0030013a00e501110138018e006300e300c801f4001b"
    "0001009d00f801a0016d01f3001c0146007d00d1008201ea0183012d00f4019e01d300dd01e2012801e000ec00590091"
    "0011012f002600dc00b0018c010f01f700e7016c00b600f900d801510101014c010300b80154012b01ae00170071000c"
    "00470058007f01a4013401290084015d019d01b201a30048007c005101ca0023013d01a70165003b004200da019200ce"
    "00c1006b009f01f1012c018400fa019601e10169017d00310180010a009401da0186013e011c0060017501cf00670119"
    "006500680099015000080007017c00b70024001900de012700db00e401a9005201090090019c01c1002801b30135016a"
    "017600df01e5018800c5016e01de01b100c301df003600ee01ee00f000930049009a01b6006900810125000b005e00b4"
    "014901c70174003e013b01b7008e01c600ae0010009501ef004e00f201fd008500fd00f600a0016f0083008a0156009b"
    "013c01070167009801d001e9000301fe00bd0122008900d2018f00120033006a014200ed0170011b00e2014f01580131"
    "0147005d011301cd0079016101a50179009e01b400cc00220132001a00e80004018701ed0197003901bf01d70027018b"
    "00c6009c00d0014e006c003401f2006e00ca002500ba019100fe00130106002f01ad017201db00c0010b01d600f501ec"
    "010d0076011401ab0075010c01e401590054011f004b00c401be00f7002900a4000e01f00077004d017a0086008b00b3"
    "017100bf010e01040097015b0160016800d700bb006601ce00fc009201c5006f0016004a00a1013900af00f10190000a"
    "01aa0143017b0056018d016600d401fb014d0194019a008701f8012300a701b80141003c01f90140002a0155011a01a1"
    "019800d5012601af0061012e015701dc0072018a00aa0096011500ef0045007b008d01450053005f017800b2002e0020"
    "01d5003f01c901e701ac00440038001400b1016b00ab00b5005a018201c801d400180177006400cf006d010001990130"
    "015a0005012001bb01bd00e0004f00d6013f01c4012a0015000600ff019b00a6004300880050015f01e801210073017e"
    "00bc00c200c90173018901f5007401cc01e601a80195001f0041000d01ba0032003d01d1008000a8005701b901620148"
    "00d901050062007a002101ff0112010801c000a9011d01b001a600cd00f3005c0102005b01d9014401f600ad00a5003a"
    "01cb0136017f004600e1001e01dd00e6013701fa0185008c008f004001b500be0078000000ac0110015e0124000201bc"
    "00a200ea007001fc0116015c004c01c2"
)
_S9 = array("H", bytes(1024))
for _i in range(512):
    _S9[_i] = int(_S9_HEX[4 * _i:4 * _i + 4], 16)
del _S9_HEX, _i


def _fi(x, k):
    # The 16-bit FI function: a 9-bit and a 7-bit half mixed through S9 and S7 with the subkey.
    d9 = x >> 7
    d7 = x & 0x7F
    d9 = _S9[d9] ^ d7
    d7 = _S7[d7] ^ (d9 & 0x7F)
    d7 ^= k >> 9
    d9 ^= k & 0x1FF
    d9 = _S9[d9] ^ d7
    return (d7 << 9) | d9


class Misty1:
    """One expanded key; `encrypt(block8)` / `decrypt(block8)` return new 8-byte values.

    The 16-bit word forms (`encrypt_words`, `decrypt_words`) avoid any 32-bit or 64-bit integer."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("MISTY1 key must be 16 bytes")
        ek = array("H", bytes(32))  # EK[0..7] key words, EK[8..15] FI-expanded words
        for i in range(8):
            ek[i] = (key[2 * i] << 8) | key[2 * i + 1]
        for i in range(8):
            ek[i + 8] = _fi(ek[i], ek[(i + 1) & 7])
        self._ek = ek

    def _fo(self, h, l, k):
        # FO on a 32-bit value held as two 16-bit halves (h, l); returns the two halves.
        ek = self._ek
        t0 = h ^ ek[k]
        t1 = l
        t0 = _fi(t0, ek[((k + 5) & 7) + 8]) ^ t1
        t1 ^= ek[(k + 2) & 7]
        t1 = _fi(t1, ek[((k + 1) & 7) + 8]) ^ t0
        t0 ^= ek[(k + 7) & 7]
        t0 = _fi(t0, ek[((k + 3) & 7) + 8]) ^ t1
        t1 ^= ek[(k + 4) & 7]
        return t1, t0

    def _fl(self, h, l, k):
        ek = self._ek
        if k & 1 == 0:
            j = k >> 1
            l ^= h & ek[j]
            h ^= l | ek[((j + 6) & 7) + 8]
        else:
            j = (k - 1) >> 1
            l ^= h & ek[((j + 2) & 7) + 8]
            h ^= l | ek[(j + 4) & 7]
        return h, l

    def _flinv(self, h, l, k):
        ek = self._ek
        if k & 1 == 0:
            j = k >> 1
            h ^= l | ek[((j + 6) & 7) + 8]
            l ^= h & ek[j]
        else:
            j = (k - 1) >> 1
            h ^= l | ek[(j + 4) & 7]
            l ^= h & ek[((j + 2) & 7) + 8]
        return h, l

    def encrypt_words(self, a, b, c, d):
        """Encrypt the block held as four 16-bit words (most significant first)."""
        # D0 = (a, b), D1 = (c, d)
        for r in (0, 2, 4, 6):
            a, b = self._fl(a, b, r)
            c, d = self._fl(c, d, r + 1)
            x, y = self._fo(a, b, r)
            c ^= x
            d ^= y
            x, y = self._fo(c, d, r + 1)
            a ^= x
            b ^= y
        a, b = self._fl(a, b, 8)
        c, d = self._fl(c, d, 9)
        return c, d, a, b

    def decrypt_words(self, a, b, c, d):
        """Decrypt the block held as four 16-bit words (most significant first)."""
        # C = D1 | D0: D0 = (c, d), D1 = (a, b)
        c, d = self._flinv(c, d, 8)
        a, b = self._flinv(a, b, 9)
        for r in (6, 4, 2, 0):
            x, y = self._fo(a, b, r + 1)
            c ^= x
            d ^= y
            x, y = self._fo(c, d, r)
            a ^= x
            b ^= y
            c, d = self._flinv(c, d, r)
            a, b = self._flinv(a, b, r + 1)
        return c, d, a, b

    def encrypt(self, block):
        w = self.encrypt_words(*_words(block))
        return _bytes(w)

    def decrypt(self, block):
        w = self.decrypt_words(*_words(block))
        return _bytes(w)


def _words(block):
    if len(block) != 8:
        raise ValueError("MISTY1 block must be 8 bytes")
    return ((block[0] << 8) | block[1], (block[2] << 8) | block[3],
            (block[4] << 8) | block[5], (block[6] << 8) | block[7])


def _bytes(w):
    out = bytearray(8)
    for i in range(4):
        out[2 * i] = w[i] >> 8
        out[2 * i + 1] = w[i] & 0xFF
    return bytes(out)
