"""Meter settings: firmware defaults, overlaid by settings.json on the flash file system, each value
validated (type and range). A bad or unknown value is reported and the default kept: a typo in a
settings file never stops the meter."""
import json

# name: (default, type, min, max). Times in seconds or ms as named; energy in Wh.
SCHEMA = {
    "meter_period_s": (1, int, 1, 300),      # metering poll; 341 s is the register wrap time at 80 A/270 V
    "gc_every_polls": (8, int, 1, 1000),
    "display_period_s": (5, int, 1, 3600),
    "service_line_max": (1024, int, 128, 4096),
    "max_voltage_cv": (30000, int, 10000, 50000),    # plausibility cap on Urms, 0.01 V
    "chip_retry_s": (2, int, 1, 600),
    "meter_id": ("", str, 0, 32),
    "language": ("fr", str, 2, 2),
    "reading_period_s": (900, int, 60, 86400),       # readings to the head-end
    "statement_hour": (9, int, 0, 23),               # the monthly statement SMS waits for this hour (UTC)
    "sms_tokens_registered_only": (0, int, 0, 1),    # 1: tokens by SMS only from utility/customer numbers
    "sms_balance_registered_only": (1, int, 0, 1),   # 1: balance by SMS only to utility/customer numbers
    "ui": (1, int, 0, 1),                            # the LCD and keypad (0: headless, e.g. a test rig)
    "ota_trial_s": (600, int, 60, 86400),            # a new image proves itself within this, else rolls back
    "ota_gap_ms": (250, int, 0, 60000),              # update chunks: at most one per this (rate limit)
    "prepaid": (None, dict, 0, 0),                   # tariff, ledger, policy, supply, relay: see prepaid.py
}


class ConfigError(ValueError):
    pass


def validate(name, value):
    if name not in SCHEMA:
        raise ConfigError("unknown setting %r" % name)
    default, typ, lo, hi = SCHEMA[name]
    if typ is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError("%s must be an integer, got %r" % (name, value))
        if value < lo or value > hi:
            raise ConfigError("%s must be within %d..%d, got %d" % (name, lo, hi, value))
    elif typ is dict:
        if not isinstance(value, dict):
            raise ConfigError("%s must be an object" % name)
    elif typ is str:
        if not isinstance(value, str) or not (lo <= len(value) <= hi):
            raise ConfigError("%s must be a string of %d..%d characters" % (name, lo, hi))
    return value


def defaults():
    return {k: v[0] for k, v in SCHEMA.items()}


def merge(base, overrides, problems):
    """Overlay validated overrides on base; collect (name, message) for each rejected value."""
    for k in overrides:
        try:
            base[k] = validate(k, overrides[k])
        except ConfigError as e:
            problems.append((k, str(e)))
    return base


def load(path):
    """Return (settings, problems). A missing file gives the defaults; an unreadable one is a problem."""
    cfg = defaults()
    problems = []
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError:
        return cfg, problems
    except ValueError as e:
        problems.append(("settings.json", "not valid JSON: %s" % e))
        return cfg, problems
    if not isinstance(data, dict):
        problems.append(("settings.json", "must hold a JSON object"))
        return cfg, problems
    return merge(cfg, data, problems), problems
