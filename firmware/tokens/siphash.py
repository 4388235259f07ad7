"""SipHash-2-4 (Aumasson & Bernstein), the one primitive of OpenPAYGO Token.

Every 64-bit lane is held as two 32-bit halves, so a 64-bit add or rotate never builds a
64-bit integer; on the unix port 32-bit values are small ints. OpenPAYGO only ever hashes 8-byte
messages, so `hash8` (the message as two 32-bit words) is the whole API.
"""
from micropython import const

_M = const(0xFFFFFFFF)


class SipHash24:
    """A SipHash-2-4 instance for one 16-byte key (the key words are split once)."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("SipHash key must be 16 bytes")
        k0l = _le32(key, 0)
        k0h = _le32(key, 4)
        k1l = _le32(key, 8)
        k1h = _le32(key, 12)
        # Initial state: k0/k1 xor "somepseudorandomlygeneratedbytes", kept as (hi, lo) pairs.
        self._init = (
            k0h ^ 0x736F6D65, k0l ^ 0x70736575,
            k1h ^ 0x646F7261, k1l ^ 0x6E646F6D,
            k0h ^ 0x6C796765, k0l ^ 0x6E657261,
            k1h ^ 0x74656462, k1l ^ 0x79746573,
        )

    def hash8(self, mhi, mlo):
        """Hash one 8-byte message given as its little-endian 64-bit value split in (hi, lo)
        32-bit words; returns the 64-bit result as (hi, lo).

        The eight SipRounds are written out in one loop with plain locals: calling a round
        function and passing eight values through tuples costs far more than the round itself."""
        s = self._init
        a_h = s[0]
        a_l = s[1]
        b_h = s[2]
        b_l = s[3]
        c_h = s[4]
        c_l = s[5]
        d_h = s[6] ^ mhi
        d_l = s[7] ^ mlo
        for r in range(8):
            if r == 2:
                # end of the message block; the final block carries only the length (8)
                a_h ^= mhi
                a_l ^= mlo
                d_h ^= 0x08000000
            elif r == 4:
                a_h ^= 0x08000000
                c_l ^= 0xFF
            t = a_l + b_l
            a_h = (a_h + b_h + (t >> 32)) & _M
            a_l = t & _M
            t = ((b_h << 13) | (b_l >> 19)) & _M
            b_l = (((b_l << 13) | (b_h >> 19)) & _M) ^ a_l
            b_h = t ^ a_h
            t = a_h
            a_h = a_l
            a_l = t
            t = c_l + d_l
            c_h = (c_h + d_h + (t >> 32)) & _M
            c_l = t & _M
            t = ((d_h << 16) | (d_l >> 16)) & _M
            d_l = (((d_l << 16) | (d_h >> 16)) & _M) ^ c_l
            d_h = t ^ c_h
            t = a_l + d_l
            a_h = (a_h + d_h + (t >> 32)) & _M
            a_l = t & _M
            t = ((d_h << 21) | (d_l >> 11)) & _M
            d_l = (((d_l << 21) | (d_h >> 11)) & _M) ^ a_l
            d_h = t ^ a_h
            t = c_l + b_l
            c_h = (c_h + b_h + (t >> 32)) & _M
            c_l = t & _M
            t = ((b_h << 17) | (b_l >> 15)) & _M
            b_l = (((b_l << 17) | (b_h >> 15)) & _M) ^ c_l
            b_h = t ^ c_h
            t = c_h
            c_h = c_l
            c_l = t
        return a_h ^ b_h ^ c_h ^ d_h, a_l ^ b_l ^ c_l ^ d_l


def _le32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)
