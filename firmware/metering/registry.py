"""Picks the metering chip driver named in the board's description and builds it on the board's bus."""


def make_chip(metering, bus, clock, calibration):
    name = metering.get("chip")
    if name == "atm90e26":
        from metering.chips.atm90e26 import ATM90E26
        return ATM90E26(bus, clock, calibration)
    raise ValueError("unsupported metering chip %r (supported: atm90e26)" % name)


def max_power_w(metering):
    """The highest power the meter can see: 1.17 x Un at Imax (the chip's voltage range top)."""
    return metering["un_v"] * 117 // 100 * metering["imax_a"]
