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


# What `device config` reads back: the settings in force (firmware/app/settings.py, prepaid/core.py).
SETTINGS = {"chip_retry_s": 2, "max_voltage_cv": 30000, "meter_id": "", "statement_hour": 9, "ui": 1,
            "sms_balance_registered_only": 1, "sms_tokens_registered_only": 0,
            "prepaid": {"commit_s": 600, "commit_wh": 1, "ledger": {"opening_credit": 100000000}, "policy": {},
                        "tariff": {"minor_per_major": 100, "mode": "money",
                                   "tariffs": [{"blocks": [{"price_per_mwh": 237500, "upto_kwh": 50},
                                                           {"price_per_mwh": 500000}], "start": 0,
                                                "standing_per_day": 250, "tax_bp": 1600}]}}}


def test_config_read_back_for_people_dates_money_flags_and_tariffs():
    at = 1772359235
    rows = render.rows({"provisioned_at": at, "provisioned": True, "settings": SETTINGS})
    t = {lbl.strip(): text for lbl, text in rows}
    assert t["provisioned at"] == render.local_time(at) and str(at) not in t["provisioned at"]
    assert t["opening credit"] == "1000000.00 MRU"
    assert t["commit at least every"] == "600 s" and t["commit after"] == "1 Wh of use"
    labels = [lbl.strip() for lbl, _ in rows]
    assert "commit" not in labels      # commit_s and commit_wh no longer both read "commit"
    assert t["plausible voltage up to"] == "300.00 V" and t["statement SMS at"] == "09:00 UTC"
    assert t["SMS balance to registered numbers only"] == "yes" and t["SMS tokens from registered numbers only"] == "no"
    assert t["display and keypad"] == "yes" and t["meter"] == "-"
    assert t["from"] == "the start" and t["standing charge"] == "2.50 MRU/day" and t["tax"] == "16.00 %"
    assert t["block 1"] == "price 2.375 MRU/kWh, up to 50 kWh this month", t
    assert t["block 2"] == "price 5.00 MRU/kWh"
    assert "tariff 1" in t and t["policy"] == "-"
    text = "\n".join("%s %s" % r for r in rows)
    for raw in ("{", "[", "True", "False", "None", "100000000", "price_per_mwh"):
        assert raw not in text, (raw, text)


def test_two_fields_that_would_read_alike_keep_their_names():
    labels = [lbl for lbl, _ in render.rows({"hold_s": 5, "hold_ms": 7})]
    assert len(set(labels)) == 2, labels


def test_kwh_mode_settings_show_credit_as_energy():
    s = {"prepaid": {"ledger": {"opening_credit": 5000}, "tariff": {"mode": "kwh"}}}
    t = {lbl.strip(): text for lbl, text in render.rows({"settings": s})}
    assert t["opening credit"] == "5.000 kWh"


def test_event_details_are_in_units_and_words():
    d = render.detail({"n": 1, "safe": False, "slot": None, "version": "0.1.0"})
    assert "safe mode no" in d and "slot -" in d and "False" not in d and "None" not in d, d
    assert render.detail({"open": True, "by": "service"}) == "by service, open yes"
    assert render.detail({"after": ""}) == "after -"
    # the head-end's own record of a vend: the token's quantity in its unit
    assert render.detail({"msg_id": "t-1", "tid": 7, "what": "currency", "quantity": 2500000}).startswith(
        "amount 25.00 MRU, TID 7")
    assert render.detail({"what": "kwh", "quantity": 25, "tid": 8}).startswith("amount 2.5 kWh")
    # a meter event as the head-end stores it, and a delivery result with its detail
    at = 1767571256
    d = render.detail({"seq": 1, "ts": at, "data": {"amt": 2500, "by": "headend", "ch": "remote", "reg": 2500,
                                                     "ref": "sts:6801862", "tid": 6801862, "unit": "minor"}})
    assert "amount 25.00 MRU" in d and "at " + render.local_time(at) in d and "{" not in d and "unit" not in d, d
    d = render.detail({"ref": "t-1", "code": "accepted", "first": True, "detail": {"added": 2500, "credit": 100002500}})
    assert "added 25.00 MRU" in d and "credit 1000025.00 MRU" in d and "first yes" in d and "{" not in d, d
    # a meter in kWh mode: the amount is energy
    assert "amount 2.500 kWh" in render.detail({"amt": 2500, "unit": "wh", "ch": "keypad"})
    assert "added 2.500 kWh" in render.detail({"added": 2500}, in_kwh=True)


def test_monitor_event_lines_read_as_words():
    import io

    from host_tools.device.monitor import monitor

    class Fake:
        port = "fake"

        def __init__(self):
            self.calls = 0

        def call(self, cmd, **args):
            if cmd == "identity":
                return {"meter_id": "M1"}
            if cmd == "readings":
                return {"urms_cv": 23000, "irms_ma": 0, "p_w": 0, "freq_chz": 5000, "pf_milli": 1000, "health": "ok"}
            self.calls += 1
            evs = [] if self.calls == 1 else [[1, 1767571415, "remote_relay", {"by": "service", "open": True}]]
            return {"seq": 1 if evs else 0, "events": evs}

    out = io.StringIO()
    monitor(Fake(), count=1, out=out, sleep=lambda s: None)
    assert "EVENT #1 remote_relay by service, open yes" in out.getvalue(), out.getvalue()


def test_token_amounts_and_money_in_major_units():
    assert render.token_amount("currency", 550000) == "5.50 MRU"
    assert render.token_amount("currency", 1) == "0.00001 MRU"
    assert render.token_amount("kwh", 125) == "12.5 kWh"
    assert render.major("2.375") == "2.375 MRU" and render.major(25) == "25.00 MRU"
