"""Uplink sequence acceptance: strictly increasing (window 0, one worker), or a sliding window that
accepts each seq at most once within `window` of the highest accepted (several workers, which take one
meter's uplinks in parallel through a shared subscription and may commit them out of order). A replay
is refused either way; what falls below the window is stale."""
from host_tools.headend.envelope import EnvelopeError

MAX_WINDOW = 62                      # the bitmap lives in one signed 64-bit column


def accept(last, bitmap, s, window=0):
    """(new highest seq, new bitmap) if seq s is accepted, else EnvelopeError('stale'). Bit i of the
    bitmap says seq last-1-i was accepted."""
    bitmap = bitmap or 0
    if last is None or s > last:
        if last is None or not window:
            return s, 0
        shift = s - last
        bitmap = ((bitmap << shift) | (1 << (shift - 1))) if shift <= window else 0
        return s, bitmap & ((1 << window) - 1)
    if window and last - window <= s < last:
        bit = 1 << (last - 1 - s)
        if not bitmap & bit:
            return last, bitmap | bit
        raise EnvelopeError("stale", f"seq {s} already accepted")
    raise EnvelopeError("stale", f"seq {s} <= last accepted {last}")
