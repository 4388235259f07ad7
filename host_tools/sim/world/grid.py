"""The supply grid for the simulated world: seeded voltage, frequency and outages over time.

A Grid is built from a JSON object (docs/sim-formats.md) and a seed; the named grids are
host_tools/sim/world/profiles/grid_<name>.json. Each day is drawn from its own generator keyed by
(grid, seed, day), so the supply at any instant is a pure function of time and queries split
anywhere give the same values.
"""
import bisect
import math
import random

from host_tools.errors import UsageError
from host_tools.sim.world import profiles

_DAY = 86400


class Grid:
    """Piecewise-constant supply. `segments(t0, t1)` yields (t_s, volts, freq_hz, on)."""

    def __init__(self, spec, seed):
        self.spec = spec
        self.seed = seed
        self.name = spec.get("name", "custom")
        self.nominal_v = float(spec.get("nominal_v", 230.0))
        self.nominal_hz = float(spec.get("nominal_hz", 50.0))
        self.step_s = int(spec.get("step_s", 300))
        if self.step_s <= 0 or _DAY % self.step_s:
            raise UsageError(f"grid {self.name!r}: step_s {self.step_s} must divide a day",
                             hint="use e.g. 60, 300 or 900")
        self.utc_offset_s = int(round(float(spec.get("utc_offset_h", 0)) * 3600))
        self.v_sigma = float(spec.get("v_sigma_pct", 0.0)) / 100.0
        self.v_swing = float(spec.get("v_evening_sag_pct", 0.0)) / 100.0
        self.v_corr = float(spec.get("v_correlation", 0.9))
        self.f_sigma = float(spec.get("f_sigma_hz", 0.0))
        self.outages_per_day = float(spec.get("outages_per_year", 0.0)) / 365.0
        self.outage_min = spec.get("outage_minutes", [1, 60])
        self.steady = not (self.v_sigma or self.v_swing or self.f_sigma or self.outages_per_day)
        self._cache = {}

    @classmethod
    def from_json(cls, obj_or_path, seed):
        return cls(profiles.load(obj_or_path, "grid"), seed)

    @classmethod
    def named(cls, name, seed):
        return cls(profiles.named("grid", name, "grid"), seed)

    def _day(self, day):
        """(t_day, [(volts, hz)] per step, [(start, end)] outages starting that day)."""
        got = self._cache.get(day)
        if got is not None:
            return got
        if len(self._cache) >= 8:
            del self._cache[next(iter(self._cache))]       # oldest first: queries move forward
        rng = random.Random(f"grid:{self.name}:{self.seed}:{day}")
        t_day = day * _DAY - self.utc_offset_s
        n = _DAY // self.step_s
        steps = []
        x = rng.gauss(0.0, 1.0)
        a = self.v_corr
        b = math.sqrt(max(0.0, 1 - a * a))
        for k in range(n):
            h = (k + 0.5) * self.step_s / 3600.0
            # The evening peak (about 19:00-22:00 local) pulls the voltage down.
            sag = self.v_swing * math.exp(-((h - 20.0) / 1.5) ** 2)
            x = a * x + b * rng.gauss(0.0, 1.0)
            v = self.nominal_v * (1 - sag + self.v_sigma * x)
            f = self.nominal_hz + self.f_sigma * max(-3.0, min(3.0, rng.gauss(0.0, 1.0)))
            steps.append((round(v, 1), round(f, 2)))
        outages = []
        # Poisson count of outages starting this day; durations log-uniform in outage_minutes.
        lam = self.outages_per_day
        if lam > 0:
            limit, k, prod = math.exp(-lam), 0, rng.random()
            while prod > limit:
                k += 1
                prod *= rng.random()
            lo, hi = math.log(float(self.outage_min[0])), math.log(float(self.outage_min[1]))
            for _ in range(k):
                start = t_day + rng.randrange(_DAY)
                dur = min(_DAY - 1, int(60 * math.exp(rng.uniform(lo, hi))))
                outages.append((start, start + max(1, dur)))
        got = (t_day, steps, outages)
        self._cache[day] = got
        return got

    def _off(self, t, outages):
        for s, e in outages:
            if s <= t < e:
                return True
        return False

    def segments(self, t0_s, t1_s):
        """Change points (t_s, volts, freq_hz, on) covering [t0, t1); during an outage volts = freq = 0."""
        if t1_s <= t0_s:
            return
        if self.steady:
            yield t0_s, self.nominal_v, self.nominal_hz, True
            return
        d0 = (int(math.floor(t0_s)) + self.utc_offset_s) // _DAY
        d1 = (int(math.ceil(t1_s)) + self.utc_offset_s) // _DAY
        outages = []
        for day in range(d0 - 1, d1 + 1):
            outages.extend(o for o in self._day(day)[2] if o[1] > t0_s and o[0] < t1_s)
        edges = sorted({t for o in outages for t in o if t0_s < t < t1_s})
        last = None
        for day in range(d0, d1 + 1):
            t_day, steps, _ = self._day(day)
            k0 = max(0, int((t0_s - t_day) // self.step_s))
            k1 = min(len(steps), int(math.ceil((t1_s - t_day) / self.step_s)))
            for k in range(k0, k1):
                ts = t_day + k * self.step_s
                te = ts + self.step_s
                v, f = steps[k]
                points = [max(ts, t0_s)]
                if edges:
                    points += edges[bisect.bisect_right(edges, ts):bisect.bisect_left(edges, te)]
                for t in points:
                    if t >= t1_s:
                        break
                    val = (0.0, 0.0, False) if (outages and self._off(t, outages)) else (v, f, True)
                    if val != last:
                        last = val
                        yield (t,) + val
