"""Relay and supply configuration, loaded on demand while a `LatchingRelay` or a `Supply` is built:
checks each key (ValueError naming the key and its allowed range) and returns the values the
resident classes keep. Not resident: it runs once at boot."""
from micropython import const

_ALL = const(511)
_OVER_POWER = const(2)  # relay.supply.OVER_POWER


def _cfg_int(cfg, key, lo, hi, default, who):
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("%s %s must be an int in %d..%d (got %r)" % (who, key, lo, hi, v))
    return v


def mask_of(name_list, where):
    """The reason mask of a list of reason names; ValueError naming an unknown one."""
    from relay.supply import NAMES, names  # (supply is loaded whenever its config is checked)
    m = 0
    for n in name_list:
        if n not in NAMES:
            raise ValueError("%s: unknown reason %r (one of %s)" % (where, n, names(_ALL)))
        m |= 1 << NAMES.index(n)
    return m


def supply(cfg):
    """(mode, key_mask, limit_w, over_ms, backoff_ms, backoff_max_ms, decay_ms, retry_ms)."""
    mode = cfg.get("reconnect", "auto")
    if mode not in ("auto", "key"):
        raise ValueError("supply reconnect must be 'auto' or 'key' (got %r)" % (mode,))
    kr = cfg.get("key_reasons", ["NO_CREDIT", "REMOTE"])
    if not isinstance(kr, list):
        raise ValueError("supply key_reasons must be a list of reason names")
    key_mask = mask_of(kr, "supply key_reasons") & ~_OVER_POWER
    s = "supply"
    return (mode, key_mask, _cfg_int(cfg, "max_power_w", 0, 1000000, 0, s),
            _cfg_int(cfg, "over_power_s", 1, 3600, 10, s) * 1000,
            _cfg_int(cfg, "backoff_s", 1, 3600, 30, s) * 1000,
            _cfg_int(cfg, "backoff_max_s", 1, 86400, 1920, s) * 1000,
            _cfg_int(cfg, "decay_s", 1, 86400, 3600, s) * 1000,
            _cfg_int(cfg, "relay_retry_s", 1, 3600, 60, s) * 1000)


def latching(cfg):
    """(pulse_ms, settle_ms, retries, current_ma, weld_ms, feedback_closed); defaults in latching.py."""
    r = "relay"
    return (_cfg_int(cfg, "pulse_ms", 5, 1000, 60, r), _cfg_int(cfg, "settle_ms", 0, 1000, 20, r),
            _cfg_int(cfg, "retries", 1, 10, 3, r), _cfg_int(cfg, "current_ma", 1, 100000, 100, r),
            _cfg_int(cfg, "weld_ms", 100, 600000, 5000, r), _cfg_int(cfg, "feedback_closed", 0, 1, 1, r))
