"""Flash wear sums, loaded on demand: erases and writes per day and the projected lifetime, from the
counts a `store.wear.WearCounter` keeps (the lifetime assumption is written down in store/wear.py)."""
from micropython import const

_SECONDS_PER_DAY = const(86400)
ENDURANCE = 100000


def per_day(count, seconds):
    """`count` events over `seconds` scaled to one day, rounded up (never flatters the budget)."""
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    return (count * _SECONDS_PER_DAY + seconds - 1) // seconds


def lifetime_days(erases_per_day, blocks, endurance=ENDURANCE, static_blocks=0):
    """Days until the levelled blocks reach `endurance` erases; -1 when nothing is erased (no limit)."""
    usable = blocks - static_blocks
    if usable <= 0:
        raise ValueError("no blocks left for wear levelling")
    if erases_per_day <= 0:
        return -1
    return usable * endurance // erases_per_day


def lifetime_years(erases_per_day, blocks, endurance=ENDURANCE, static_blocks=0):
    """Whole years (365-day), rounded down; -1 when nothing is erased."""
    d = lifetime_days(erases_per_day, blocks, endurance, static_blocks)
    return -1 if d < 0 else d // 365


def report(w, seconds, endurance=ENDURANCE, static_blocks=0):
    """The budget of WearCounter `w` for `seconds` of running: counts, per day and lifetime (flat dict)."""
    epd = per_day(w.erases, seconds)
    return {
        "erases": w.erases,
        "writes": w.writes,
        "bytes_written": w.bytes_written,
        "erases_per_day": epd,
        "writes_per_day": per_day(w.writes, seconds),
        "blocks": w.block_count,
        "endurance": endurance,
        "lifetime_days": lifetime_days(epd, w.block_count, endurance, static_blocks),
    }
