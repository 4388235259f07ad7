"""Picks the metering chip driver named in the board's description, from one table, and builds it on
the board's bus. A name the table does not hold gives a driver that always fails (chips/unknown.py:
reported at boot, metering marked failed), never an exception that would stop the meter."""
# chip name in board.json -> (module, class). One line per chip; nothing else names a chip.
DRIVERS = {
    "atm90e26": ("metering.chips.atm90e26", "ATM90E26"),
    "bl0942": ("metering.chips.bl0942", "BL0942"),
    "ade7953": ("metering.chips.ade7953", "ADE7953"),
    "dummy": ("metering.chips.dummy", "DummyChip"),
}


def make_chip(metering, bus, clock, calibration):
    name = metering.get("chip")
    entry = DRIVERS.get(name)
    if entry is None:
        from metering.chips.unknown import UnknownChip     # loaded only for a board that is wrong
        return UnknownChip(name, calibration, sorted(DRIVERS))
    mod = __import__(entry[0], None, None, (entry[1],))
    return getattr(mod, entry[1])(bus, clock, calibration, metering)


def max_power_w(metering):
    """The highest power the meter can see: 1.17 x Un at Imax (the chip's voltage range top)."""
    return metering["un_v"] * 117 // 100 * metering["imax_a"]
