"""The prepaid core in the simulated world: the real firmware (MicroPython, heap-capped) on a simulated
board with a steady load, driven through its service port. Each scenario sets prices, credit and
limits so that what it is about happens within minutes of virtual time (the world starts on Monday
2026-01-05 00:00 UTC)."""
import secrets

import pytest

from host_tools.sim.esp32.runner import SimMeter
from host_tools.keys.vendingkey import open_vending_key
from host_tools.vend.sts_encode import build, currency_units, encode_amount, tenths

PAN = "600727000000000009"
# 20 MRU/kWh: 2 minor units per Wh, so a 2 kW load spends 4000 minor units (40 MRU) an hour.
PRICE = 2000000


def make_meter(prepaid, watts=2000, time_valid=True, seed=1):
    pp = {"tariff": {"mode": "money", "minor_per_major": 100,
                     "tariffs": [{"start": 0, "blocks": [{"price_per_mwh": PRICE}]}]}}
    pp.update(prepaid)
    load = {"kind": "constant", "name": "steady", "watts": watts, "pf": 1.0}
    m = SimMeter(seed=seed, profile=load, afe="ideal", time_valid=time_valid,
                 settings={"meter_period_s": 1, "prepaid": pp})
    m.run_for(1)
    return m


@pytest.fixture
def meters():
    made = []

    def make(*a, **kw):
        m = make_meter(*a, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def events(m, kind=None):
    """Every event the meter still holds in RAM, oldest first, as (unix time, kind, data)."""
    out = [(e[1], e[2], e[3]) for e in m.request("events")["events"]]
    return [e for e in out if kind is None or e[1] == kind]


def run_until_relay(m, closed, max_s, step_s=1):
    """Advance in steps until the world's relay is closed/open; the virtual seconds it took."""
    t0 = m.world.now_ms
    while m.world.relay_closed != closed:
        if m.world.now_ms - t0 > max_s * 1000:
            raise AssertionError("relay still %s after %d s" % ("open" if closed else "closed", max_s))
        m.run_for(step_s)
    return (m.world.now_ms - t0) / 1000.0


def test_credit_running_out_outside_a_friendly_period_opens_the_relay_and_a_topup_closes_it(meters):
    m = meters({"ledger": {"opening_credit": 200}})      # 100 Wh: 3 minutes at 2 kW
    run_until_relay(m, False, 600)
    v = m.request("credit")
    assert v["credit"] == 0 and v["supply"] == "open" and "NO_CREDIT" in v["reasons"]
    opens = events(m, "supply_open")
    assert opens and opens[-1][2]["reasons"] == "NO_CREDIT"
    # Between the last debit with credit and the relay opening, a poll's use may become debt.
    # (One 1-second poll at 2 kW is ~0.56 Wh, ~1.1 minor units.)
    assert v["debt"] <= 4
    m.run_for(60)
    assert m.world.relay_closed is False            # no credit, no supply
    r = m.request("topup", amount=1000, ref="t1")
    assert r["ok"] and r["applied"]
    m.run_for(2)
    assert m.world.relay_closed is True
    assert events(m, "supply_close")[-1][2]["after"] == "NO_CREDIT"
    assert m.request("credit")["check"] is None


def test_inside_a_friendly_period_the_supply_stays_on_and_the_debt_is_recovered_by_the_share(meters):
    m = meters({"ledger": {"opening_credit": 200, "debt_share_bp": 5000},
                "policy": {"friendly": [{"days": [0], "start": "00:00", "end": "06:00"}]}})
    m.run_for(900)                                  # credit gone after 3 min; 12 min of debt
    assert m.world.relay_closed is True
    v = m.request("credit")
    assert v["credit"] == 0 and v["supply"] == "closed"
    assert 780 <= v["debt"] <= 820                  # 2 kW x 900 s x 2 minor/Wh = 1000, less the 200
    assert not events(m, "supply_open")
    r = m.request("topup", amount=1000, ref="f1")
    assert r["debt"] == min(v["debt"], 1000 * 5000 // 10000) == 500
    after = m.request("credit")
    assert r["credit"] == after["credit"] == r["balance"] == 500
    assert after["debt"] == v["debt"] - 500
    assert events(m, "debt_recovered")[-1][2]["amount"] == 500
    assert after["check"] is None


def test_emergency_credit_is_taken_once_and_repaid_first_from_the_next_topup(meters):
    m = meters({"ledger": {"opening_credit": 300, "emergency_amount": 1000, "debt_share_bp": 2500}})
    v = m.request("credit")
    assert v["emergency"] == "available"
    g = m.request("emergency")
    assert g["granted"] == 1000 and g["credit"] >= 1000
    again = m.request("emergency")
    assert not again["granted"] and again["reason"] == "already_taken"
    m.run_for(120)                                  # spends ~270 of it
    v = m.request("credit")
    assert v["emergency_owed"] == 1000 and v["credit"] < 1300
    r = m.request("topup", amount=5000, ref="e1")
    assert r["emergency"] == 1000                   # in full, even the unspent part
    after = m.request("credit")
    assert r["debt"] == 0 and r["credit"] == 4000             # the shares of the 5000
    assert r["balance"] == after["credit"]
    assert after["emergency_owed"] == 0 and after["credit"] == v["credit"] + 4000
    assert events(m, "emergency_repaid")[-1][2]["amount"] == 1000
    assert after["check"] is None


def test_power_limit_trips_and_the_back_off_doubles_with_each_trip_up_to_its_cap(meters):
    m = meters({"ledger": {"opening_credit": 10000000},
                "supply": {"max_power_w": 1500, "over_power_s": 2, "backoff_s": 5, "backoff_max_s": 40}},
               watts=2000)
    offs = []
    for _ in range(5):
        run_until_relay(m, False, 30)
        offs.append(run_until_relay(m, True, 120))
    # Opened for 5, 10, 20, 40 s, then the cap (within a metering poll of either edge).
    for got, want in zip(offs, [5, 10, 20, 40, 40]):
        assert want - 1 <= got <= want + 2, offs
    trips = events(m, "over_power")
    assert [e[2]["backoff_s"] for e in trips] == [5, 10, 20, 40, 40]
    assert [e[2]["trips"] for e in trips] == [1, 2, 3, 4, 5]
    assert all(e[2]["watts"] > 1500 for e in trips)
    assert all(e[2]["reasons"] == "OVER_POWER" for e in events(m, "supply_open"))


def test_a_load_under_the_limit_never_trips(meters):
    m = meters({"ledger": {"opening_credit": 10000000}, "supply": {"max_power_w": 2500, "over_power_s": 2}},
               watts=2000)
    m.run_for(120)
    assert m.world.relay_closed is True and not events(m, "over_power")


def test_a_welded_relay_commanded_open_is_reported(meters):
    m = meters({"ledger": {"opening_credit": 10000000}})
    m.world.relay_fault = "welded"
    r = m.request("relay", open=True)
    assert r["reasons"] == "REMOTE"
    m.run_for(10)                                   # weld_ms defaults to 5 s of current while open
    assert m.world.relay_closed is True             # the contact did not open
    welded = events(m, "relay_welded")
    assert len(welded) == 1 and welded[0][2]["ma"] > 100


def test_a_stuck_relay_that_will_not_close_reports_relay_failed(meters):
    m = meters({"ledger": {"opening_credit": 10000000}})
    m.request("relay", open=True)
    m.run_for(2)
    assert m.world.relay_closed is False
    m.world.relay_fault = "stuck"
    r = m.request("relay", open=False)
    m.run_for(2)
    assert m.world.relay_closed is False
    failed = events(m, "relay_failed")
    assert failed and failed[0][2]["want"] == "closed"
    assert m.request("credit")["relay_failed"] is True
    assert r["ok"]


def test_key_reconnect_mode_waits_for_the_reconnect_command_after_a_topup(meters):
    m = meters({"ledger": {"opening_credit": 100}, "supply": {"reconnect": "key"}})
    run_until_relay(m, False, 600)
    m.request("topup", amount=2000, ref="k1")
    m.run_for(30)
    v = m.request("credit")
    assert m.world.relay_closed is False and v["awaiting_key"] is True and v["reasons"] == ""
    r = m.request("reconnect")
    assert r["reconnected"] is True
    m.run_for(2)
    assert m.world.relay_closed is True


def test_unknown_time_never_disconnects_and_the_use_becomes_debt(meters):
    m = meters({"ledger": {"opening_credit": 100}}, time_valid=False)
    assert m.request("ping")["time_valid"] is False
    m.run_for(600)
    v = m.request("credit")
    assert m.world.relay_closed is True and v["supply"] == "closed"
    assert v["credit"] == 0 and 540 <= v["debt"] <= 590      # 666 minor units used, 100 of them paid
    assert not events(m, "supply_open")
    # and committed as it went, with the time still unknown (the energy record holds "no time yet")
    assert v["energy_commits"] >= 500 and not events(m, "job_failed"), (v["energy_commits"], events(m, "job_failed"))
    # A trusted time outside any friendly period: now the meter may and does cut.
    m.request("set_time", unix=m.world.epoch + m.world.now_ms // 1000)
    m.run_for(3)
    assert m.world.relay_closed is False
    assert events(m, "supply_open")[-1][2]["reasons"] == "NO_CREDIT"


def test_low_credit_warning_is_emitted_once_per_crossing(meters):
    m = meters({"ledger": {"opening_credit": 400},
                "policy": {"low_credit": 300, "low_credit_hysteresis": 200}})
    m.run_for(150)                                  # 400 -> ~230: crosses 300 once
    assert len(events(m, "low_credit")) == 1
    m.request("topup", amount=200, ref="w1")        # back to ~430 < 300 + 200: not re-armed
    m.run_for(120)
    lows = events(m, "low_credit")
    assert len(lows) == 1 and lows[0][2]["by"] == "amount" and lows[0][2]["credit"] < 300
    m.request("topup", amount=400, ref="w2")        # ~700 >= 500: re-armed
    m.run_for(1)
    assert len(events(m, "low_credit")) == 1
    m.run_for(420)                                  # down through 300 again
    assert len(events(m, "low_credit")) == 2


def _provision(m, base_date="14"):
    key = open_vending_key().decoder_key(sgc=123457, ti=1, krn=1, kt=2, pan=PAN, base_date=base_date)
    r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1,
                  base_date=base_date, sts_key=key.hex(), message_key=secrets.token_hex(32),
                  service_key=secrets.token_hex(32),
                  broker={"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"})
    assert r["ok"], r
    return key


def test_sts_currency_token_is_applied_once_and_a_second_entry_says_used(meters):
    m = meters({"ledger": {"opening_credit": 100000}}, watts=100)
    key = _provision(m)
    before = m.request("credit")
    digits = build(key, 0, 4, 3, 6784520, encode_amount(currency_units("25")))["token"]
    r = m.request("token", digits=digits)
    assert r["ok"] and r["result"] == "accepted" and r["action"] == "credit_currency"
    after = m.request("credit")
    assert after["topups"] == before["topups"] + 2500
    again = m.request("token", digits=digits)
    assert again["result"] == "used"
    assert m.request("credit")["topups"] == after["topups"]


def test_kwh_mode_meter_takes_a_kwh_token_and_debits_energy(meters):
    m = meters({"tariff": {"mode": "kwh"}, "ledger": {"opening_credit": 1000}}, watts=1800)
    key = _provision(m)
    money = build(key, 0, 4, 3, 6784520, encode_amount(currency_units("25")))["token"]
    assert m.request("token", digits=money)["result"] == "format_error"   # currency on a kWh meter
    digits = build(key, 0, 0, 5, 6784530, encode_amount(tenths("5")))["token"]
    r = m.request("token", digits=digits)
    assert r["result"] == "accepted" and r["action"] == "credit_kwh"
    v = m.request("credit")
    assert v["mode"] == "kwh" and v["topups"] == 5000                   # Wh
    m.run_for(100)                                                       # 1.8 kW x 100 s = 50 Wh
    v2 = m.request("credit")
    assert 45 <= v["credit"] - v2["credit"] <= 55
    assert m.request("token", digits=digits)["result"] == "used"


def test_a_friendly_period_starting_while_the_supply_is_off_restores_it_without_a_topup(meters):
    m = meters({"ledger": {"opening_credit": 200},
                "policy": {"friendly": [{"days": [0], "start": "00:10", "end": "06:00"}]}})
    run_until_relay(m, False, 400)                  # out of credit at ~00:03, not yet friendly
    assert m.world.now_ms < 600000
    closed_after = run_until_relay(m, True, 900)
    assert 600000 <= m.world.now_ms <= 603000 and closed_after > 0
    v = m.request("credit")
    assert v["credit"] == 0 and v["topups"] == 0 and v["supply"] == "closed"
    m.run_for(60)
    assert m.request("credit")["debt"] > v["debt"]  # friendly use becomes debt


def test_month_turn_closes_the_statement_once_and_exactly(meters):
    import calendar
    from host_tools.sim.esp32.runner import SimMeter
    pp = {"tariff": {"mode": "money", "minor_per_major": 100,
                     "tariffs": [{"start": 0, "blocks": [{"price_per_mwh": PRICE}]}]},
          "ledger": {"opening_credit": 100000}}
    load = {"kind": "constant", "name": "steady", "watts": 2000, "pf": 1.0}
    m = SimMeter(seed=4, profile=load, afe="ideal", settings={"meter_period_s": 1, "prepaid": pp},
                 epoch=calendar.timegm((2026, 1, 31, 23, 50, 0)))
    try:
        m.run_for(3)
        st = m.request("statement")
        assert st["last"] is None and st["current"]["month"] == "2026-01"
        m.run_for(300)
        jan = m.request("credit")
        m.run_for(600)                                   # 00:00 falls in here
        st = m.request("statement")
        last, cur = st["last"], st["current"]
        assert last["month"] == "2026-01" and cur["month"] == "2026-02"
        total = m.request("totals", fresh=True)["import_wh"]
        # the two months share out the meter's energy and debits exactly
        assert last["import_wh"] + cur["import_wh"] == total
        assert last["cost"] + cur["cost"] == m.request("credit")["debited"]
        assert last["cost"] == 2 * last["import_wh"]      # 2 minor units per Wh, nothing else charged
        assert jan["debited"] <= last["cost"] and 300 <= last["import_wh"] <= 340   # ~10 min at 2 kW
        assert [e for e in events(m, "statement")][0][2] == {"month": "2026-01"}
        # a power cut does not close it again nor lose it
        m.power_cut()
        m.run_for(5)
        assert m.request("statement")["last"] == last
        assert len(events(m, "statement")) == 0          # no new statement event after the reboot
    finally:
        m.close()


def test_no_statement_without_a_known_time(meters):
    m = meters({"ledger": {"opening_credit": 100000}}, time_valid=False)
    m.run_for(120)
    st = m.request("statement")
    assert st["last"] is None and st["current"] is None
    assert m.request("credit")["debited"] > 0            # it was metering and debiting all along
