"""Settings changed on a running meter (the head-end's set_config, the service port's privileged
set_config): checked in full, written atomically, in force at once without a restart, the running
credit state carried over; bad values refused with the reason and nothing changed."""
import json

import pytest

from host_tools.sim.world.flashfile import read_image_files
from host_tools.sim.esp32.runner import SimMeter

PRICE = 2000000       # 2 minor units per Wh


def tariff(price):
    return {"mode": "money", "minor_per_major": 100, "tariffs": [{"start": 0, "blocks": [{"price_per_mwh": price}]}]}


@pytest.fixture
def meter():
    load = {"kind": "constant", "name": "steady", "watts": 3600, "pf": 1.0}      # 1 Wh a second
    m = SimMeter(afe="ideal", profile=load, settings={"meter_period_s": 1, "prepaid": {
        "tariff": tariff(PRICE), "ledger": {"opening_credit": 1000000}}})
    m.run_for(2)
    yield m
    m.close()


def settings_file(m):
    files = read_image_files(str(m.flash_path), m.flash.size, m.flash.block_size)
    return json.loads(files["settings.json"])


def test_a_new_tariff_is_in_force_at_once_and_survives_a_reboot(meter):
    m = meter
    m.run_for(60)
    a = m.request("credit")
    r = m.request("set_config", settings={"prepaid": {"tariff": tariff(3 * PRICE)}})
    assert r["ok"] and r["applied"] == ["prepaid"], r
    b = m.request("credit")
    assert b["credit"] == a["credit"] - (b["debited"] - a["debited"])      # nothing reset or re-credited
    m.run_for(100)
    c = m.request("credit")
    per_wh = (c["debited"] - b["debited"]) / 100.0                          # ~1 Wh a second
    assert 5.5 <= per_wh <= 6.5, per_wh                                     # 6 minor units per Wh now
    assert c["check"] is None
    st = settings_file(m)
    assert st["prepaid"]["tariff"]["tariffs"][0]["blocks"][0]["price_per_mwh"] == 3 * PRICE
    assert st["prepaid"]["ledger"] == {"opening_credit": 1000000}            # the other parts kept
    m.power_cut()
    m.run_for(30)
    d = m.request("credit")
    assert d["topups"] == c["topups"] and d["check"] is None
    m.run_for(100)
    e = m.request("credit")
    assert 5.5 <= (e["debited"] - d["debited"]) / 100.0 <= 6.5
    assert [x[3] for x in m.request("events")["events"] if x[2] == "config_changed"] == []  # this boot: none
    assert "config_invalid" not in [x[2] for x in m.request("events")["events"]]


def test_a_power_limit_and_friendly_hours_take_effect_without_restart(meter):
    m = meter
    r = m.request("set_config", settings={"prepaid": {"supply": {"max_power_w": 2000, "over_power_s": 2}}})
    assert r["ok"], r
    m.run_for(10)
    assert not m.world.relay_closed and "OVER_POWER" in m.request("credit")["reasons"]


@pytest.mark.parametrize("settings, words", [
    ({"meter_period_s": 5}, "cannot be set remotely"),
    ({"prepaid": {"relay": {"pulse_ms": 10}}}, "cannot be set remotely"),
    ({"prepaid": {"tariff": {"mode": "money", "tariffs": []}}}, "tariff"),
    ({"prepaid": {"supply": {"max_power_w": -5}}}, "max_power_w"),
    ({"prepaid": {"commit_wh": 0}}, "commit_wh"),
    ({"language": "de"}, "language"),
    ({"statement_hour": 24}, "statement_hour"),
    ({}, "settings expected"),
])
def test_bad_settings_are_refused_with_the_reason_and_nothing_changes(meter, settings, words):
    m = meter
    before = settings_file(m)
    r = m.request("set_config", settings=settings)
    assert not r["ok"] and words in r["error"], r
    assert settings_file(m) == before
    m.run_for(5)
    assert m.request("credit")["check"] is None and m.world.relay_closed
