"""The analog front end between the physical world and the metering chip's pins: shunt, voltage
divider and neutral CT, with their tolerances, phase error, crosstalk and noise drawn from a seed.

A FrontEnd turns line volts and amps into the millivolts the chip sees. Its error profile is a JSON
object (docs/sim-formats.md); the named profiles live in host_tools/sim/world/profiles/afe_<name>.json.
"""
import math
import random

from host_tools.errors import UsageError
from host_tools.sim.world import profiles

# The error terms a profile may set, with what they mean (all default to 0 = ideal).
ERROR_TERMS = {
    "current_gain": "relative gain error of the L-line shunt path (0.03 = reads 3 % high)",
    "voltage_gain": "relative gain error of the voltage divider",
    "current_phase_deg": "extra lag of the L current at the pin, degrees (shunt inductance, filter)",
    "crosstalk_inphase_mv": "mV at the current pin in phase with the voltage, at nominal voltage",
    "crosstalk_quadrature_mv": "mV at the current pin lagging the voltage by 90 degrees, at nominal voltage",
    "neutral_gain": "relative gain error of the neutral CT path",
    "neutral_phase_deg": "extra lag of the neutral current at the pin, degrees",
    "noise_rel": "bound of the uniform relative jitter applied to each pins() result",
}

DEFAULT_DESIGN = {"shunt_uohm": 250, "divider_ratio": 1000, "neutral_ct_ratio": 2000,
                  "neutral_burden_ohm": 2.0, "un_v": 230, "ib_a": 10, "imax_a": 80, "f_hz": 50}


def draw(spec, rng, what):
    """One value from a number or a distribution spec: {"uniform": [lo, hi]} or {"normal": [mu, sigma]}
    (normal clipped to +-3 sigma), for the front-end error terms."""
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        if kind == "uniform" and len(args) == 2:
            return rng.uniform(float(args[0]), float(args[1]))
        if kind == "normal" and len(args) == 2:
            mu, sigma = float(args[0]), float(args[1])
            return min(mu + 3 * sigma, max(mu - 3 * sigma, rng.gauss(mu, sigma)))
    raise UsageError(f"bad value for {what}: {spec!r}",
                     hint='use a number, {"uniform": [lo, hi]} or {"normal": [mu, sigma]}')


def design_from_board(metering):
    """Flatten board.json's `metering` section (front_end + ratings) into one design dict."""
    d = dict(DEFAULT_DESIGN)
    if metering:
        d.update({k: v for k, v in metering.items() if not isinstance(v, dict)})
        d.update(metering.get("front_end", {}))
    return d


class FrontEnd:
    """Shunt + divider + neutral CT with errors drawn once from the seed. See the module docstring."""

    def __init__(self, errors, seed, design=None, name="custom"):
        self.name = name
        self.seed = seed
        self.design = design_from_board(design) if (design is None or "front_end" in design) \
            else dict(DEFAULT_DESIGN, **design)
        unknown = set(errors) - set(ERROR_TERMS)
        if unknown:
            raise UsageError(f"front end {name!r}: unknown error terms {sorted(unknown)}",
                             hint="known terms: " + ", ".join(sorted(ERROR_TERMS)))
        rng = random.Random(f"afe:{name}:{seed}")
        # Sorted order: the draw for a seed does not depend on how the JSON object was written.
        p = {term: 0.0 for term in ERROR_TERMS}
        for term in sorted(errors):
            p[term] = draw(errors[term], rng, f"front end {name!r} {term}")
        self.params = p
        d = self.design
        self._v_scale = 1000.0 / d["divider_ratio"] * (1 + p["voltage_gain"])            # mV per V
        self._i_scale = d["shunt_uohm"] / 1000.0 * (1 + p["current_gain"])                # mV per A
        self._n_scale = 1000.0 * d["neutral_burden_ohm"] / d["neutral_ct_ratio"] * (1 + p["neutral_gain"])
        self._phi = math.radians(p["current_phase_deg"])
        self._nphi = math.radians(p["neutral_phase_deg"])
        self._un = float(d["un_v"])
        self._xi = p["crosstalk_inphase_mv"]
        self._xq = p["crosstalk_quadrature_mv"]
        self._noise = p["noise_rel"]
        self._noise_rng = random.Random(f"afe-noise:{name}:{seed}")

    @classmethod
    def from_json(cls, obj_or_path, seed, design=None):
        obj = profiles.load(obj_or_path, "front end")
        return cls(obj.get("errors", {}), seed, design, obj.get("name", "custom"))

    @classmethod
    def named(cls, name, seed, design=None):
        return cls.from_json(profiles.named("afe", name, "front-end profile"), seed, design)

    def pins(self, volts, amps, phi_rad, freq_hz, neutral_amps=None):
        """(v_mv, i_mv, phi_pin_rad, freq_hz, n_mv, n_phi_rad) at the chip for line values.
        phi > 0: current lags. Negative amps are the same as phi + pi (export)."""
        if neutral_amps is None:
            neutral_amps = amps
        if amps < 0:
            amps, phi_rad = -amps, phi_rad + math.pi
        n_phi = phi_rad
        if neutral_amps < 0:
            neutral_amps, n_phi = -neutral_amps, n_phi + math.pi
        v = volts * self._v_scale
        i = amps * self._i_scale
        phi = phi_rad + self._phi
        if self._xi or self._xq:
            # Crosstalk from the voltage side adds a vector that scales with the line voltage.
            k = volts / self._un
            a = i * math.cos(phi) + self._xi * k
            b = i * math.sin(phi) + self._xq * k
            i = math.hypot(a, b)
            phi = math.atan2(b, a) if i else 0.0
        n = neutral_amps * self._n_scale
        n_phi = n_phi + self._nphi
        if self._noise:
            u = self._noise_rng.uniform
            nz = self._noise
            v *= 1 + u(-nz, nz)
            i *= 1 + u(-nz, nz)
            n *= 1 + u(-nz, nz)
        return v, i, _wrap(phi), freq_hz, n, _wrap(n_phi)


def _wrap(a):
    """An angle into (-pi, pi]."""
    if -math.pi < a <= math.pi:
        return a
    a = math.fmod(a + math.pi, 2 * math.pi)
    if a <= 0:
        a += 2 * math.pi
    return a - math.pi
