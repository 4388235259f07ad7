"""Checking settings: one integer setting within its range, with the error naming it."""


def need_int(cfg, key, lo, hi, default=None):
    """cfg[key] as an int in [lo, hi]; ValueError naming the key and the range otherwise."""
    v = cfg.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("%s must be an int in %d..%d (got %r)" % (key, lo, hi, v))
    return v
