"""Tokens on the running (simulated) meter: OpenPAYGO tokens from the reference library credit a
meter provisioned with an OpenPAYGO key, once; STS and OpenPAYGO side by side."""
import secrets

from openpaygo import TokenType, generate_token

from host_tools.sim.esp32.runner import SimMeter

PAN = "600727000000000009"
OKEY = bytes.fromhex("bc41ec9530f6dac86b1a29ab82edc5fb")
START = 516959010


def test_openpaygo_tokens_from_the_reference_library_credit_the_meter_once():
    # Provisioned with a broker, the meter starts its cellular stack after the reboot below: that
    # needs the larger heap of a meter with a modem (see the README's memory notes).
    m = SimMeter(afe="ideal", profile="constant", heap="384k",
                 settings={"meter_period_s": 5, "prepaid": {"ledger": {"opening_credit": 100000}}})
    try:
        m.run_for(5)
        r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1,
                      base_date="14", sts_key=secrets.token_hex(16), message_key=secrets.token_hex(32),
                      service_key=secrets.token_hex(32), opaygo_key=OKEY.hex(), opaygo_starting_code=START,
                      broker={"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"})
        assert r["ok"], r
        count, tok = generate_token(secret_key=OKEY.hex(), count=1, value=7, token_type=TokenType.ADD_TIME,
                                    starting_code=START)
        before = m.request("credit")["topups"]
        out = m.request("token", digits=str(tok).zfill(9))
        assert out["result"] == "accepted" and out["system"] == "opaygo"
        assert m.request("credit")["topups"] - before == 7 * 100      # opaygo_unit: 1 MRU per unit
        again = m.request("token", digits=str(tok).zfill(9))
        assert again["result"] == "used"
        count, tok2 = generate_token(secret_key=OKEY.hex(), count=count, value=3, token_type=TokenType.ADD_TIME,
                                     starting_code=START)
        m.power_cut()                                 # the replay state survives a power cut
        m.run_for(5)
        r = m.request("token", digits=str(tok).zfill(9))
        assert r.get("result") == "used", r
        assert m.request("token", digits=str(tok2).zfill(9))["result"] == "accepted"
        assert m.request("credit")["topups"] - before == 10 * 100
    finally:
        m.close()


def test_sts_key_change_four_tokens_entered_one_by_one_across_a_power_cut():
    """The meter builds a decoder per token, so the sections waiting for their partners live in the
    saved token state: the set completes over four separate entries, even with a reboot in between."""
    import datetime

    from host_tools.vend import sts_encode
    old_key = secrets.token_bytes(16)
    new_key = secrets.token_bytes(16)
    m = SimMeter(afe="ideal", profile="constant", heap="384k",     # provisioned: its cellular stack starts
                 settings={"meter_period_s": 5, "prepaid": {"ledger": {"opening_credit": 100000}}})
    try:
        m.run_for(5)
        r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1, base_date="14",
                      sts_key=old_key.hex(), message_key=secrets.token_hex(32), service_key=secrets.token_hex(32),
                      broker={"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"})
        assert r["ok"], r
        secs = [f["token"] for f in sts_encode.key_change_tokens(old_key, new_key, 2, 2, 1, 255, False)]
        results = []
        for i, t in enumerate([secs[2], secs[0], secs[3], secs[1]]):
            results.append(m.request("token", digits=t)["result"])
            if i == 1:
                m.power_cut()                     # two sections held when the power goes
                m.run_for(5)
        assert results == ["key_change_waiting"] * 3 + ["accepted"], results

        def currency(key, minor):
            tid = sts_encode.tid_from_time(datetime.datetime.now(datetime.timezone.utc), "14") - 10
            return sts_encode.build(key, 0, 4, sts_encode.random_rnd(), tid,
                                    sts_encode.encode_amount(minor * 1000))["token"]
        before = m.request("credit")["topups"]
        assert m.request("token", digits=currency(old_key, 300))["result"] == "crc_error"
        assert m.request("token", digits=currency(new_key, 300))["result"] == "accepted"
        assert m.request("credit")["topups"] - before == 300
    finally:
        m.close()
