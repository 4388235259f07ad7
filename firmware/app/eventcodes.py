"""Event kinds as one-byte codes for the flash event log (names everywhere else). Append new kinds at the
end: codes are stored on flash and sent to the head-end, so they never change meaning."""
import json

KINDS = (
    "other", "boot", "meter_silent", "meter_garbage", "meter_reset", "meter_cal_error", "meter_recovered",
    "meter_bus_error", "meter_implausible", "meter_energy_unwrapped", "flash_unavailable", "store_unavailable",
    "config_invalid", "job_failed", "calibration_changed", "calibration_unreadable", "ledger_lost",
    "power_fail", "supply_open", "supply_close", "over_power", "reconnect_armed", "relay_failed",
    "relay_welded", "low_credit", "emergency_taken", "emergency_repaid", "debt_recovered", "credit_cleared",
    "token", "token_state_unreadable", "tamper", "auth_failed", "provisioned", "factory_locked",
    "link_up", "link_down", "modem_reset", "queue_overflow", "store_slot_newer_lost", "store_journal",
    "statement", "config_changed", "debt_loaded", "store_slot_corrected",
)


def code(kind):
    try:
        return KINDS.index(kind)
    except ValueError:
        return 0


def pack(kind, data):
    """(code, up to 18 bytes): the data as compact JSON, cut to fit; an unknown kind keeps its name."""
    c = code(kind)
    if c == 0:
        text = kind
    elif data is None:
        return c, b""
    else:
        text = json.dumps(data).replace(" ", "")
    b = text.encode()
    return c, b[:18]


def name(c):
    return KINDS[c] if 0 <= c < len(KINDS) else "other"
