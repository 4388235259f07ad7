"""The meter interface over a metering chip driver: readings, integer energy totals (no count lost or
counted twice), and chip health supervision (silent, garbage, reset) with recovery and events.

Energy arrives as clear-on-read counts of 0.1 CF pulse; totals are kept as whole Wh plus a remainder
in units of 1/(10*MC) Wh, so conversion is exact and nothing is rounded away."""
from metering.chips import atm90e26 as _chip

_WRAP = 65536


class Meter:
    def __init__(self, chip, clock, events, meter_constant, max_power_w, max_voltage_cv=30000):
        self.chip = chip
        self.clock = clock
        self.events = events
        self.mc = meter_constant
        self.den = meter_constant * 10          # counts per kWh; remainders are in Wh/den
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
        # Wrap time of the 16-bit count registers at the meter's maximum power, in ms.
        self.wrap_ms = _WRAP * 3600000 // (self.den * max_power_w // 1000) if max_power_w else 0

    # -- life cycle ------------------------------------------------------------------------------
    def begin(self):
        try:
            self.chip.start()
        except _chip.ChipError as e:
            self._fault(_chip.SILENT if "no ATM90E26" in str(e) else _chip.CAL_ERROR, str(e))
            return False
        self._last_read = self.clock.ticks_ms()
        if self.health not in (None, _chip.OK):
            self.events.emit("meter_recovered", {"after": _chip.STATE_NAMES[self.health]})
        self.health = _chip.OK
        return True

    def _fault(self, state, detail=None):
        if state != self.health:
            self.faults += 1
            self.events.emit("meter_" + _chip.STATE_NAMES[state], {"detail": detail} if detail else None)
        self.health = state

    # -- the periodic job ------------------------------------------------------------------------
    def poll(self):
        self.polls += 1
        st = self.chip.probe()
        if st == _chip.OK:
            if self.health != _chip.OK:
                if self.health is None:
                    # Never started (chip absent at boot): start it now.
                    self.begin()
                    return
                self.events.emit("meter_recovered", {"after": _chip.STATE_NAMES[self.health]})
                self.health = _chip.OK
            self._read()
            return
        self._fault(st)
        if st == _chip.RESET or st == _chip.CAL_ERROR:
            # The chip answers coherently but lost (or refused) its calibration: take whatever
            # energy it still holds before the restart's soft reset clears it, then restart.
            if self.health is not None and self._last_read is not None:
                self._read()
            self.begin()
        # SILENT / GARBAGE: do not touch the clear-on-read registers; the chip keeps counting and
        # the next good poll collects everything it held.

    def _read(self):
        chip = self.chip
        chip.poll()
        now = self.clock.ticks_ms()
        if (chip.urms_cv > self.max_voltage_cv or
                (self.max_power_w and abs(chip.p_w) > 2 * self.max_power_w)):
            self.events.emit("meter_implausible", {"urms_cv": chip.urms_cv, "p_w": chip.p_w})
        if not chip.energy_ok:
            self.events.emit("meter_bus_error", None)
        dt = self.clock.ticks_diff(now, self._last_read) if self._last_read is not None else 0
        ap = self._unwrap(chip.ap, dt, chip.p_w, 1)
        an = self._unwrap(chip.an, dt, chip.p_w, -1)
        self._last_read = now
        self._last_p = chip.p_w
        self.add_counts(ap, an)

    def _unwrap(self, counts, dt_ms, p_now, sign):
        """A read later than the wrap time may have lost whole register turns: restore them from the
        power seen on both sides of the gap (nearest whole number of turns)."""
        if not self.wrap_ms or dt_ms < self.wrap_ms:
            return counts
        p = (max(0, sign * self._last_p) + max(0, sign * p_now)) // 2
        expected = p * dt_ms * self.den // 3600000000
        turns = (expected - counts + _WRAP // 2) // _WRAP
        if turns > 0:
            self.events.emit("meter_energy_unwrapped", {"turns": turns})
            return counts + turns * _WRAP
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
        c = self.chip
        return {"urms_cv": c.urms_cv, "irms_ma": c.irms_ma, "p_w": c.p_w, "q_var": c.q_var,
                "s_va": c.s_va, "pf_milli": c.pf_milli, "freq_chz": c.freq_chz,
                "angle_dd": c.angle_dd, "irms_n_ma": c.irms_n_ma,
                "health": _chip.STATE_NAMES[self.health] if self.health is not None else "starting"}

    def totals(self):
        return {"import_wh": self.import_wh, "export_wh": self.export_wh,
                "import_rem": self.import_rem, "export_rem": self.export_rem, "rem_den": self.den}
