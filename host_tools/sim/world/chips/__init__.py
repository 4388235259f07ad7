"""Register-level models of the metering chips the firmware drives (one module per chip), and the
table the world picks one from by the board's `metering.chip`."""
import importlib

from host_tools.errors import UsageError

# chip name -> (module, class)
MODELS = {
    "atm90e26": ("host_tools.sim.world.chips.atm90e26", "ATM90E26"),
    "bl0942": ("host_tools.sim.world.chips.bl0942", "BL0942"),
    "ade7953": ("host_tools.sim.world.chips.ade7953", "ADE7953"),
}
NAMES = tuple(sorted(MODELS))


def make(name, rng, params=None):
    """The model of chip `name`, seeded from rng."""
    entry = MODELS.get(name)
    if entry is None:
        raise UsageError("no simulator model of the metering chip %r" % (name,),
                         hint="models: " + ", ".join(NAMES))
    cls = getattr(importlib.import_module(entry[0]), entry[1])
    return cls(rng, params) if params else cls(rng)


def chip_params(defaults, params, chip):
    """A model's parameters: `defaults` with `params` laid over them (an unknown name is an error)."""
    p = dict(defaults)
    if params:
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"unknown {chip} parameters: {sorted(unknown)}")
        p.update(params)
    return p


class FromJson:
    """`from_json` for a chip model with NAME: parameters from a dict or a JSON file path
    (docs/sim-formats.md)."""

    @classmethod
    def from_json(cls, obj_or_path, rng):
        from host_tools.sim.world import profiles
        obj = profiles.load(obj_or_path, "%s parameters" % cls.NAME)
        return cls(rng, obj.get("params", obj))
