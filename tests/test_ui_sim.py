"""The display and keypad in the simulated meter: a token typed on the keypad credits the meter once."""
import secrets

import pytest

from host_tools.sim.esp32.runner import SimMeter
from host_tools.keys.vendingkey import open_vending_key
from host_tools.vend.sts_encode import build, encode_amount

PAN = "600727000000000009"


@pytest.fixture
def meter():
    m = SimMeter(afe="ideal", profile="constant",
                 settings={"meter_period_s": 5, "prepaid": {"ledger": {"opening_credit": 100000}}})
    m.run_for(10)
    key = open_vending_key().decoder_key(sgc=123457, ti=1, krn=1, kt=2, pan=PAN, base_date="14")
    r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1, base_date="14",
                  sts_key=key.hex(), message_key=secrets.token_hex(32), service_key=secrets.token_hex(32),
                  broker={"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"})
    assert r["ok"], r
    yield m, key
    m.close()


def type_token(m, digits):
    for d in digits:
        m.press(d)
    m.press("ENTER")
    m.run_for(2)


def test_display_shows_credit_and_power(meter):
    m, _ = meter
    m.run_for(10)
    text = "\n".join(m.display_lines)
    assert len(m.display_lines) == 4 and all(len(x) == 20 for x in m.display_lines)
    assert "MRU" in text or "kWh" in text


def test_token_typed_on_the_keypad_is_applied_once(meter):
    m, key = meter
    before = m.request("credit")["credit"]
    # A currency token (subclass 4) for 10 MRU: 1,000,000 units of 0.00001.
    digits = build(key, 0, 4, 3, 6784520, encode_amount(1000000))["token"]
    type_token(m, digits)
    after = m.request("credit")
    assert after["credit"] - before >= 990       # 10 MRU, less what the load used meanwhile
    assert after["topups"] == 1000
    type_token(m, digits)                        # the same token again
    again = m.request("credit")
    assert again["topups"] == 1000
    assert "UTILISE" in " ".join(m.display_lines).upper() or "USED" in " ".join(m.display_lines).upper()
