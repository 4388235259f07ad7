"""Replies for people (host_tools.render): units, a stable order whatever order the meter sent, money as
the meter's display writes it, Wh credit on a meter in kWh mode, local dates, plumbing hidden."""
import time

from host_tools import render


def _text(reply):
    return dict(render.rows(reply))


def test_readings_in_units_and_in_the_same_order_whatever_the_meter_sent():
    a = {"freq_chz": 5000, "urms_cv": 23562, "irms_ma": 202, "p_w": 41, "pf_milli": 851, "health": "ok"}
    b = dict(reversed(list(a.items())))
    assert render.rows(a) == render.rows(b)
    t = _text(a)
    assert t["voltage"] == "235.62 V" and t["current"] == "0.202 A" and t["frequency"] == "50.00 Hz"
    assert t["power factor"] == "0.851" and t["active power"] == "41 W"
    assert [lbl for lbl, _ in render.rows(a)][:2] == ["voltage", "current"]


def test_money_is_the_meters_own_and_kwh_mode_is_energy():
    assert _text({"credit": 1234567, "check": None})["credit"] == "12345.67 MRU"
    assert _text({"credit": 1234567, "check": None})["ledger check"] == "conserved"
    assert _text({"credit": 12345, "mode": "kwh"})["credit"] == "12.345 kWh"


def test_totals_fold_the_remainder_into_kwh_and_hide_plumbing():
    t = _text({"id": 3, "ok": True, "import_wh": 1500, "import_rem": 1, "rem_den": 2, "export_wh": 0,
               "export_rem": 0})
    assert t["imported"] == "1.500 kWh" and "rem den" not in t and "id" not in t and "ok" not in t


def test_times_are_local_dates_and_unknown_fields_get_units_by_suffix():
    now = int(time.time())
    assert render.local_time(now) == time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now)).strip()
    t = _text({"true_import_wh": 86326.1, "firmware_heap_peak_bytes": 234528, "error_pct": 3.749,
               "wall_seconds": 0.416123456, "time": 0})
    assert t["true import"] == "86.3261 kWh" and t["firmware heap peak"] == "229.0 KiB"
    assert t["error"] == "3.749 %" and t["wall seconds"] == "0.416123 s" and t["meter time"] == "-"


def test_empty_lists_and_flags_read_as_words():
    t = _text({"tamper": [], "reasons": "", "time_valid": True, "provisioned": False})
    assert t["tamper"] == "none" and t["open because"] == "none"
    assert t["time valid"] == "yes" and t["provisioned"] == "no"
