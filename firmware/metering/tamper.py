"""Tamper detection from what the meter already measures, after each metering poll:

- `imbalance`: line and neutral currents disagree. The ATM90E26 measures both (a shunt in the line, a
  CT in the neutral). A wire around the meter's line terminals makes the neutral current the larger
  (`"side": "neutral"`: energy bypasses the meter); current leaving through earth, or a neutral
  bypass, makes the line current the larger (`"side": "line"`). Flagged when, above `min_ma`, the
  difference exceeds `imbalance_pct` of the larger current for `hold_s` seconds without a break.
- `reverse`: a consumption meter registering export energy (`reverse_wh` Wh since the flag was
  last cleared): swapped line terminals.
- `cover`: the terminal cover switch (board pin `cover`, 1 = open), on boards that have one.

Each kind is flagged once (event `tamper` {kind, ...}) and stays flagged until cleared by an STS
clear-tamper token or the head-end's `clear_tamper`, which re-arms it; the flags are kept in the
prepaid record, so a reboot does not re-report nor forget them. With `disconnect` set (the utility's
choice; off by default) a flag also opens the supply for reason TAMPER until cleared.
"""
from micropython import const

from relay.supply import TAMPER

IMBALANCE = const(1)
REVERSE = const(2)
COVER = const(4)
KINDS = ("imbalance", "reverse", "cover")

DEFAULTS = {"min_ma": 500, "imbalance_pct": 25, "hold_s": 30, "reverse_wh": 2, "disconnect": 0}


def check(cfg):
    """The settings completed by DEFAULTS; ValueError names a wrong one."""
    c = dict(DEFAULTS)
    if cfg:
        for k in cfg:
            if k not in c:
                raise ValueError("unknown tamper setting %r" % k)
            v = cfg[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("tamper %s must be an integer >= 0" % k)
            c[k] = v
    return c


class Tamper:
    def __init__(self, meter, clock, emit, supply, cover_pin=None, cfg=None, state=None):
        self.cfg = c = check(cfg)
        self.meter = meter
        self.clock = clock
        self.emit = emit
        self.supply = supply
        self.cover = cover_pin
        st = state or [0, meter.export_wh]    # first start: armed from what is registered now
        self.flags = st[0]
        self.export_base = st[1]          # the export register when reverse was last armed
        if meter.export_wh < self.export_base:
            self.export_base = meter.export_wh
        self._since = None                # ticks when the current imbalance began
        if self.flags and c["disconnect"]:
            supply.set_reason(TAMPER)

    def configure(self, cfg):
        """New settings (set_config); the flags and the reverse base carry over."""
        self.cfg = c = check(cfg)
        if self.flags and c["disconnect"]:
            self.supply.set_reason(TAMPER)

    def state(self):
        return [self.flags, self.export_base]

    def _flag(self, bit, data):
        if self.flags & bit:
            return
        self.flags |= bit
        data["kind"] = KINDS[0 if bit == IMBALANCE else (1 if bit == REVERSE else 2)]
        self.emit("tamper", data)
        if self.cfg["disconnect"]:
            self.supply.set_reason(TAMPER)

    def poll(self):
        """After a metering poll."""
        c = self.cfg
        r = self.meter.reading
        il = r.irms_ma
        ineu = r.irms_n_ma
        if ineu is None:
            ineu = il           # a chip without a neutral channel: no imbalance can be seen
        big = il if il > ineu else ineu
        diff = il - ineu if il > ineu else ineu - il
        if big >= c["min_ma"] and diff * 100 > c["imbalance_pct"] * big:
            t = self.clock.ticks_ms()
            if self._since is None:
                self._since = t
            elif self.clock.ticks_diff(t, self._since) >= c["hold_s"] * 1000:
                self._flag(IMBALANCE, {"side": "neutral" if ineu > il else "line", "line_ma": il,
                                       "neutral_ma": ineu})
        else:
            self._since = None
        if self.meter.export_wh - self.export_base >= c["reverse_wh"]:
            self._flag(REVERSE, {"export_wh": self.meter.export_wh - self.export_base})
        if self.cover is not None and self.cover.value():
            self._flag(COVER, {})

    def clear(self):
        """Re-arm every kind (an STS clear-tamper token, the head-end's clear_tamper)."""
        self.flags = 0
        self.export_base = self.meter.export_wh
        self._since = None
        self.supply.clear_reason(TAMPER)

    def names(self):
        return [KINDS[i] for i in range(3) if self.flags >> i & 1]
