"""Household electrical loads for the simulated world: seeded, piecewise-constant power over time.

A LoadProfile is built from a JSON object (docs/sim-formats.md) and a seed; the named profiles are
host_tools/sim/world/profiles/load_<name>.json. Every day's appliance activity is drawn from its own
generator keyed by (profile, seed, day, appliance), so the load at any instant is a pure function of
time: queries over any window give the same values however the window is split. Event times are
whole seconds and powers whole watts/vars, so sums are exact in any order.
"""
import bisect
import datetime
import math
import random

from host_tools.errors import UsageError
from host_tools.sim.world import profiles

_DAY = 86400
_EPOCH_WEEKDAY = 3               # 1970-01-01 was a Thursday (Monday = 0)


def _pq(watts, pf):
    """Integer (W, var) for a load of `watts` at signed power factor `pf` (> 0 inductive)."""
    if not -1.0 <= pf <= 1.0 or pf == 0:
        raise UsageError(f"power factor {pf} out of range", hint="use a non-zero pf between -1 and 1")
    p = int(round(watts))
    q = abs(p) * math.tan(math.acos(min(1.0, abs(pf))))
    return p, int(round(math.copysign(q, pf)))


def signed_pf(p, q):
    """The convention of segments(): |P|/S, negative when the reactive part is capacitive."""
    if p == 0 and q == 0:
        return 1.0
    pf = abs(p) / math.hypot(p, q)
    return -pf if q < 0 else pf


class Sun:
    """Season and daylight for a local day number (days since 1970-01-01, local time)."""

    def __init__(self, spec):
        spec = spec or {}
        self.south = spec.get("hemisphere", "north") == "south"
        self.sunrise_h = float(spec.get("mean_sunrise_h", 6.25))
        self.sunset_h = float(spec.get("mean_sunset_h", 18.25))
        self.swing_h = float(spec.get("swing_h", 1.5))

    def season(self, day):
        """+1 at midsummer, -1 at midwinter."""
        doy = datetime.date.fromordinal(719163 + day).timetuple().tm_yday
        c = math.cos(2 * math.pi * (doy - 172) / 365.25)
        return -c if self.south else c

    def sunrise(self, day):
        return self.sunrise_h - self.swing_h * self.season(day)

    def sunset(self, day):
        return self.sunset_h + self.swing_h * self.season(day)


def _span(spec, rng, what):
    """A value from a number or [lo, hi] (uniform)."""
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, list) and len(spec) == 2:
        return rng.uniform(float(spec[0]), float(spec[1]))
    raise UsageError(f"bad value for {what}: {spec!r}", hint="use a number or [lo, hi]")


def _hour(spec, sun, day, what):
    """A window edge: hours as a number, or "sunrise+h" / "sunset-h"."""
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, str):
        for anchor in ("sunrise", "sunset"):
            if spec.startswith(anchor):
                rest = spec[len(anchor):] or "0"
                base = sun.sunrise(day) if anchor == "sunrise" else sun.sunset(day)
                return base + float(rest)
    raise UsageError(f"bad hour for {what}: {spec!r}", hint='use hours (6.5) or "sunset-0.5"')


def _season_weight(spec, sun, day):
    """Probability an event happens given its season preference: floor + (1 - floor) * season part."""
    if not spec:
        return 1.0
    s = sun.season(day)
    part = max(0.0, s) if spec.get("kind") == "summer" else max(0.0, -s)
    floor = float(spec.get("floor", 0.0))
    return floor + (1.0 - floor) * part


class LoadProfile:
    """Seeded piecewise-constant household load. `segments(t0, t1)` yields (t_s, watts, pf)."""

    def __init__(self, spec, seed):
        self.spec = spec
        self.seed = seed
        self.name = spec.get("name", "custom")
        self.kind = spec.get("kind", "appliances")
        if self.kind not in ("constant", "appliances"):
            raise UsageError(f"load profile {self.name!r}: unknown kind {self.kind!r}",
                             hint='use "constant" or "appliances"')
        self.utc_offset_s = int(round(float(spec.get("utc_offset_h", 0)) * 3600))
        self.weekend = set(spec.get("weekend_days", [5, 6]))
        self.sun = Sun(spec.get("sun"))
        self.appliances = spec.get("appliances", [])
        for a in self.appliances:
            if a.get("type") not in ("cycling", "events", "pv"):
                raise UsageError(f"load profile {self.name!r}: appliance {a.get('name')!r} has unknown type "
                                 f"{a.get('type')!r}", hint='use "cycling", "events" or "pv"')
        if self.kind == "constant":
            self._const = _pq(float(spec["watts"]), float(spec.get("pf", 1.0)))
        self._cache = {}
        self._timelines = {}

    @classmethod
    def from_json(cls, obj_or_path, seed):
        return cls(profiles.load(obj_or_path, "load profile"), seed)

    @classmethod
    def named(cls, name, seed):
        return cls(profiles.named("load", name, "load profile"), seed)

    # ---- one day's activity ----------------------------------------------------------------------
    def _day_events(self, day):
        """[(start_s, end_s, p_w, q_var)] of everything that starts on local day `day` (absolute times)."""
        ev = self._cache.get(day)
        if ev is not None:
            return ev
        if len(self._cache) >= 8:
            del self._cache[next(iter(self._cache))]       # oldest first: queries move forward
        t_day = day * _DAY - self.utc_offset_s
        ev = []
        base = self.spec.get("base", {"watts": 30, "pf": 0.9})
        brng = random.Random(f"load:{self.name}:{self.seed}:{day}:base")
        p, q = _pq(_span(base.get("watts", 30), brng, "base watts"), float(base.get("pf", 0.9)))
        ev.append((t_day, t_day + _DAY, p, q))
        weekday = (day + _EPOCH_WEEKDAY) % 7
        weekend = weekday in self.weekend
        for idx, a in enumerate(self.appliances):
            rng = random.Random(f"load:{self.name}:{self.seed}:{day}:{idx}")
            kind = a["type"]
            if kind == "cycling":
                self._cycling(a, rng, day, t_day, ev)
            elif kind == "events":
                self._events(a, rng, day, t_day, weekend, ev)
            else:
                self._pv(a, rng, day, t_day, ev)
        self._cache[day] = ev
        return ev

    def _cycling(self, a, rng, day, t_day, ev):
        """A thermostat appliance (fridge): on/off cycles all day; summer shortens the off time."""
        boost = float(a.get("summer_duty_boost", 0.0)) * max(0.0, self.sun.season(day))
        t = t_day + int(rng.uniform(0, 60 * _span(a.get("off_min", 30), rng, "off_min")))
        end = t_day + _DAY
        pf = float(a.get("pf", 0.8))
        while t < end:
            on = int(60 * _span(a.get("on_min", 12), rng, "on_min"))
            p, q = _pq(_span(a["watts"], rng, "watts"), pf)
            ev.append((t, t + on, p, q))
            off = int(60 * _span(a.get("off_min", 30), rng, "off_min") * (1 - boost))
            t += on + max(60, off)

    def _events(self, a, rng, day, t_day, weekend, ev):
        """An appliance used a few times a day in time windows (kettle, TV, lights, washer...)."""
        weight = _season_weight(a.get("season"), self.sun, day)
        for w in a.get("windows", []):
            days = w.get("days", "all")
            if (days == "weekend" and not weekend) or (days == "weekday" and weekend):
                continue
            lo = _hour(w["from_h"], self.sun, day, "from_h")
            hi = _hour(w["to_h"], self.sun, day, "to_h")
            cnt = w.get("count", 1)
            n = int(cnt) if isinstance(cnt, (int, float)) else rng.randint(int(cnt[0]), int(cnt[1]))
            for _ in range(n):
                start = t_day + int(3600 * rng.uniform(lo, max(lo, hi)))
                keep = rng.random() < weight
                phases = a.get("phases") or [{"watts": a["watts"], "pf": a.get("pf", 1.0),
                                              "minutes": a.get("duration_min", 10)}]
                for ph in phases:
                    dur = int(60 * _span(ph["minutes"], rng, "minutes"))
                    p, q = _pq(_span(ph["watts"], rng, "watts"), float(ph.get("pf", 1.0)))
                    if keep and dur > 0:
                        ev.append((start, start + min(dur, _DAY - 1), p, q))
                    start += dur

    def _pv(self, a, rng, day, t_day, ev):
        """Rooftop solar: negative watts between sunrise and sunset, clouds drawn per day and per step."""
        rise, sset = self.sun.sunrise(day), self.sun.sunset(day)
        step = int(60 * float(a.get("step_min", 15)))
        clear = 1.0 - _span(a.get("day_cloud", [0.0, 0.6]), rng, "day_cloud")
        elev = 0.8 + 0.2 * self.sun.season(day)
        peak = float(a["peak_w"])
        t = t_day + int(rise * 3600) // step * step
        end = t_day + int(sset * 3600)
        while t < end:
            mid_h = (t + step / 2 - t_day) / 3600.0
            x = (mid_h - rise) / (sset - rise)
            if 0 < x < 1:
                frac = math.sin(math.pi * x) * clear * elev * (1 - rng.uniform(0, a.get("step_cloud", 0.2)))
                w = int(round(peak * frac))
                if w > 0:
                    ev.append((t, t + step, -w, 0))
            t += step

    # ---- queries ---------------------------------------------------------------------------------
    def _timeline(self, day):
        """(times, p, q) change points over local day `day`, the first at its midnight (cached)."""
        got = self._timelines.get(day)
        if got is not None:
            return got
        t_day = day * _DAY - self.utc_offset_s
        t_end = t_day + _DAY
        p = q = 0
        deltas = {}
        for d in (day - 1, day):                       # events last under a day
            for s, e, ep, eq in self._day_events(d):
                if e <= t_day or s >= t_end:
                    continue
                if s <= t_day:
                    p += ep
                    q += eq
                else:
                    dp, dq = deltas.get(s, (0, 0))
                    deltas[s] = (dp + ep, dq + eq)
                if e < t_end:
                    dp, dq = deltas.get(e, (0, 0))
                    deltas[e] = (dp - ep, dq - eq)
        times, ps, qs = [t_day], [p], [q]
        for t in sorted(deltas):
            dp, dq = deltas[t]
            if dp or dq:
                p += dp
                q += dq
                times.append(t)
                ps.append(p)
                qs.append(q)
        got = (times, ps, qs)
        if len(self._timelines) >= 8:
            del self._timelines[next(iter(self._timelines))]   # oldest first: queries move forward
        self._timelines[day] = got
        return got

    def segments(self, t0_s, t1_s):
        """Change points (t_s, watts, pf) covering [t0, t1): the first at t0, then each change.
        watts < 0 is export; pf > 0 inductive, < 0 capacitive."""
        if t1_s <= t0_s:
            return
        if self.kind == "constant":
            p, q = self._const
            yield t0_s, float(p), signed_pf(p, q)
            return
        d0 = (int(math.floor(t0_s)) + self.utc_offset_s) // _DAY
        d1 = (int(math.ceil(t1_s)) - 1 + self.utc_offset_s) // _DAY
        last = None
        for day in range(d0, d1 + 1):
            times, ps, qs = self._timeline(day)
            k = bisect.bisect_right(times, t0_s) - 1 if day == d0 else 0
            n = len(times)
            while k < n:
                t = times[k]
                if t >= t1_s:
                    break
                pq = (ps[k], qs[k])
                if pq != last:
                    last = pq
                    yield (t if t > t0_s else t0_s), float(pq[0]), signed_pf(pq[0], pq[1])
                k += 1

    def watts_at(self, t_s):
        """(watts, pf) at one instant."""
        for _, w, pf in self.segments(t_s, t_s + 1e-6):
            return w, pf
