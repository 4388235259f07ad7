"""What has no subsystem of its own. Here: the refusal an action raises and the check of one integer
setting (small, shared, and a module of their own would cost a module object each). Beside it: lazy.py
(load a module for one call)."""


class Refused(ValueError):
    """An action asked with a value it cannot take: the text says which value and what is accepted.
    Nothing was changed. Caught by class, never by name."""


def need_int(cfg, key, lo, hi, default=None):
    """cfg[key] as an int in [lo, hi]; ValueError naming the key and the range otherwise."""
    v = cfg.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("%s must be an int in %d..%d (got %r)" % (key, lo, hi, v))
    return v
