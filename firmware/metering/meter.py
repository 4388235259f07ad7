"""The meter interface over any metering chip driver (the contract is metering/chip.py): readings,
integer energy totals (no count lost or counted twice), and chip health supervision (silent, garbage,
reset, refused calibration, no driver) with recovery and events. It names no chip.

Energy arrives as counts of 1/den kWh (den from the driver); totals are kept as whole Wh plus a
remainder in units of 1/den Wh, so conversion is exact and nothing is rounded away."""
from metering.chip import CAL_ERROR, FAILED, OK, RESET, STATE_NAMES, ChipError


class Meter:
    def __init__(self, chip, clock, events, meter_constant, max_power_w, max_voltage_cv=30000):
        self.chip = chip
        self.reading = chip.readings             # the chip's Readings, refreshed by every good poll
        self.clock = clock
        self.events = events
        self.mc = meter_constant
        self.den = chip.den                      # counts per kWh; remainders are in Wh/den
        self.max_power_w = max_power_w
        self.max_voltage_cv = max_voltage_cv
        self.import_wh = 0
        self.export_wh = 0
        self.import_rem = 0
        self.export_rem = 0
        self.health = None                       # None until started; then a chip state code
        self.faults = 0
        self.polls = 0
        self._last_read = None                   # ticks of the last confirmed energy read
        self._last_p = 0
        self.listeners = []                      # fn(import_wh_delta, export_wh_delta)
        # Time for the chip's energy counter to go once round at the meter's maximum power, in ms.
        w = chip.wrap
        self.wrap_ms = w * 3600000 // (self.den * max_power_w // 1000) if (w and max_power_w) else 0

    # -- life cycle ------------------------------------------------------------------------------
    def begin(self):
        try:
            self.chip.start()
        except ChipError as e:
            self._fault(e.state, str(e))
            return False
        self._last_read = self.clock.ticks_ms()
        if self.health not in (None, OK):
            self.events.emit("meter_recovered", {"after": STATE_NAMES[self.health]})
        self.health = OK
        return True

    def _fault(self, state, detail=None):
        if state != self.health:
            self.faults += 1
            self.events.emit("meter_" + STATE_NAMES[state], {"detail": detail} if detail else None)
        self.health = state

    # -- the periodic job ------------------------------------------------------------------------
    def poll(self):
        self.polls += 1
        if self.health == FAILED:
            return                               # no driver: nothing to ask, reported once at boot
        st = self.chip.probe()
        if st == OK:
            if self.health != OK:
                if self.health is None:
                    # Never started (chip absent at boot): start it now.
                    self.begin()
                    return
                self.events.emit("meter_recovered", {"after": STATE_NAMES[self.health]})
                self.health = OK
            self._read()
            return
        self._fault(st)
        if st == RESET or st == CAL_ERROR:
            # The chip answers coherently but lost (or refused) its calibration: take whatever
            # energy it still holds before the restart clears it, then restart.
            if self.health is not None and self._last_read is not None:
                self._read()
            self.begin()
        # SILENT / GARBAGE: do not touch the energy registers; the chip keeps counting and the next
        # good poll collects everything it held.

    def _read(self):
        chip = self.chip
        chip.poll()
        r = self.reading
        now = self.clock.ticks_ms()
        if (r.urms_cv > self.max_voltage_cv or
                (self.max_power_w and abs(r.p_w) > 2 * self.max_power_w)):
            self.events.emit("meter_implausible", {"urms_cv": r.urms_cv, "p_w": r.p_w})
        if not chip.energy_ok:
            self.events.emit("meter_bus_error", None)
        dt = self.clock.ticks_diff(now, self._last_read) if self._last_read is not None else 0
        ap = self._unwrap(chip.imp, dt, r.p_w, 1)
        an = self._unwrap(chip.exp, dt, r.p_w, -1)
        self._last_read = now
        self._last_p = r.p_w
        self.add_counts(ap, an)

    def _unwrap(self, counts, dt_ms, p_now, sign):
        """A read later than the wrap time may have lost whole counter turns: restore them from the
        power seen on both sides of the gap (nearest whole number of turns)."""
        if not self.wrap_ms or dt_ms < self.wrap_ms:
            return counts
        wrap = self.chip.wrap
        p = (max(0, sign * self._last_p) + max(0, sign * p_now)) // 2
        expected = p * dt_ms * self.den // 3600000000
        turns = (expected - counts + wrap // 2) // wrap
        if turns > 0:
            self.events.emit("meter_energy_unwrapped", {"turns": turns})
            return counts + turns * wrap
        return counts

    def add_counts(self, ap, an):
        di = de = 0
        if ap:
            self.import_rem += ap * 1000
            di = self.import_rem // self.den
            self.import_rem -= di * self.den
            self.import_wh += di
        if an:
            self.export_rem += an * 1000
            de = self.export_rem // self.den
            self.export_rem -= de * self.den
            self.export_wh += de
        if di or de:
            for fn in self.listeners:
                fn(di, de)

    # -- views -----------------------------------------------------------------------------------
    def readings(self):
        out = self.reading.as_dict()
        out["health"] = STATE_NAMES[self.health] if self.health is not None else "starting"
        return out

    def totals(self):
        return {"import_wh": self.import_wh, "export_wh": self.export_wh,
                "import_rem": self.import_rem, "export_rem": self.export_rem, "rem_den": self.den}
