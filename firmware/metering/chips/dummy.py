"""A metering chip with no bus: readings from a script, energy integrated from the scripted power on
the board clock. For tests and for boards brought up without a metering IC (board.json
`"chip": "dummy"`, optional `"script": [[seconds, p_w, urms_cv, irms_ma], ...]`, played in a loop).
`fault` ("silent", "garbage", "reset" or None) lets a test walk the meter through every state."""
from metering.chip import GARBAGE, OK, RESET, SILENT, Readings, check_int

_STATES = {None: OK, "silent": SILENT, "garbage": GARBAGE, "reset": RESET}


class DummyChip:
    den = 3600000            # counts are watt-seconds: 3.6 million per kWh
    wrap = 0

    def __init__(self, bus, clock, calibration, design=None):
        self.clock = clock
        self.cal = calibration
        self.script = [tuple(s) for s in (design or {}).get("script", ((3600, 0, 23000, 0),))]
        self.readings = Readings()
        self.readings.irms_n_ma = 0
        self.imp = self.exp = 0
        self.energy_ok = True
        self.fault = None
        self._t0 = self._last = None
        self._mws = 0            # milliwatt-seconds not yet given out as whole watt-seconds

    def set(self, p_w, urms_cv=23000, irms_ma=None):
        """Replace the script by one constant step (tests)."""
        self._settle()
        if irms_ma is None:
            irms_ma = abs(p_w) * 100000 // urms_cv if urms_cv else 0
        self.script = [(3600, p_w, urms_cv, irms_ma)]

    def _step(self, t):
        total = 0
        for s in self.script:
            total += s[0]
        at = (self.clock.ticks_diff(t, self._t0) // 1000) % total if total else 0
        for s in self.script:
            if at < s[0]:
                return s
            at -= s[0]
        return self.script[-1]

    def _settle(self):
        """Integrate the power in force since the last poll (one step per poll: the script's steps
        are seconds to hours long, polls a second)."""
        if self._last is None:
            return
        t = self.clock.ticks_ms()
        p = self._step(self._last)[1]
        self._mws += p * self.clock.ticks_diff(t, self._last)
        self._last = t

    def start(self):
        if self.fault == "reset":
            self.fault = None
        t = self.clock.ticks_ms()
        if self._t0 is None:
            self._t0 = t
        self._last = t

    def probe(self):
        return _STATES[self.fault]

    def poll(self):
        self._settle()
        ws = self._mws // 1000 if self._mws >= 0 else -((-self._mws) // 1000)
        self._mws -= ws * 1000
        self.imp = ws if ws > 0 else 0
        self.exp = -ws if ws < 0 else 0
        s = self._step(self.clock.ticks_ms())
        r = self.readings
        r.p_w, r.urms_cv, r.irms_ma = s[1], s[2], s[3]
        r.s_va = s[2] * s[3] // 100000
        r.pf_milli = s[1] * 1000 // r.s_va if r.s_va else 0
        r.freq_chz = 5000
        r.irms_n_ma = s[3]
        return True

    def check_cal(self, name, value):
        check_int(name, value, -(1 << 30), 1 << 30)

    def raw_read(self, *args):
        raise ValueError("the dummy chip has no registers")

    raw_write = raw_read
