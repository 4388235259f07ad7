"""`meterkit vend sts|opaygo` and `meterkit token inspect`: --json output and refusals (non-zero exit,
clear message). Runs through host_tools.cli.main with only this verb module registered. `vend sts`
derives the decoder key in the session's SoftHSM token (conftest), which holds the vector's vending key."""
import json

import pytest

import host_tools.cli as cli
from tokens_support import OPAYGO_KEY_HEX, OPAYGO_START, PAN, STS_KEY_HEX, VENDING_KEY_HEX

STS = ["vend", "sts", "--sgc", "123457", "--ti", "1", "--krn", "1",
       "--kt", "2", "--base-date", "93", "--pan", PAN]   # the reference vectors are base date 93's


@pytest.fixture(autouse=True)
def only_vend(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "COMMANDS", ["host_tools.vend.cli"])
    monkeypatch.setenv("METERKIT_DATA", str(tmp_path))   # the TID store goes here, not into the checkout


def run(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_vend_sts_json_reference_token(capsys):
    rc, out, _ = run(capsys, STS + ["--kwh", "0.1", "--tid", "5871660", "--rnd", "5", "--json"])
    assert rc == 0
    obj = json.loads(out)
    assert obj["tokens"] == ["59386323472137426967"]
    f = obj["fields"][0]
    assert (f["class"], f["subclass"], f["rnd"], f["tid"], f["field"]) == (0, 0, 5, 5871660, 1)
    assert "crc" in f


def test_vend_sts_at_time_and_17_digit_pan_gets_luhn_digit(capsys):
    argv = STS[:-1] + [PAN[:17], "--kwh", "0.1", "--at", "2004-03-01T13:00", "--rnd", "5", "--json"]
    rc, out, _ = run(capsys, argv)
    obj = json.loads(out)
    assert rc == 0 and obj["pan"] == PAN and obj["token"] == "59386323472137426967"


def test_vend_sts_kwh_rounds_up_in_the_customers_favour(capsys):
    rc, out, _ = run(capsys, STS + ["--kwh", "1638.41", "--tid", "100", "--json"])
    assert json.loads(out)["fields"][0]["field"] == (1 << 14) | 1  # 1638.41 -> 1639 kWh (e=1)


@pytest.mark.parametrize("extra", [["--currency", "10"], ["--max-power-w", "4000"], ["--clear-credit"],
                                   ["--clear-tamper"]])
def test_vend_sts_management_and_currency_json(capsys, extra):
    rc, out, _ = run(capsys, STS + extra + ["--tid", "200", "--json"])
    assert rc == 0 and len(json.loads(out)["token"]) == 20


def test_vend_sts_key_change_prints_four_sections(capsys):
    rc, out, _ = run(capsys, STS + ["--key-change", "00" * 16, "--json"])
    obj = json.loads(out)
    assert rc == 0 and len(obj["tokens"]) == 4
    assert [f["subclass"] for f in obj["fields"]] == [3, 4, 8, 9]


def test_vend_sts_human_output(capsys):
    rc, out, _ = run(capsys, STS + ["--kwh", "0.1", "--tid", "5871660", "--rnd", "5"])
    assert rc == 0 and out.startswith("5938 6323 4721 3742 6967")


@pytest.mark.parametrize("extra,needle", [
    (["--kwh", "2000000", "--tid", "1"], "outside"),
    (["--kwh", "1", "--at", "1990-01-01T00:00"], "before the key's base date"),
    (["--kwh", "1", "--tid", str(1 << 24)], "beyond 24 bits"),
    (["--kwh", "1", "--at", "2026-01-01T00:00"], "beyond 24 bits"),
    (["--kwh", "abc", "--tid", "1"], "not a number"),
    (["--kwh", "1", "--tid", "1", "--rnd", "16"], "RND"),
    (["--key-change", "abcd"], "new key"),
])
def test_vend_sts_refusals_exit_nonzero_with_a_clear_message(capsys, extra, needle):
    rc, out, err = run(capsys, STS + extra + ["--json"])
    assert rc != 0
    assert needle in json.loads(out)["error"] and needle in err
    assert "hint" in json.loads(out)


@pytest.mark.parametrize("pan,needle", [("600727000000000008", "Luhn"), ("12345", "17 or 18 digits")])
def test_vend_sts_bad_pan_refused(capsys, pan, needle):
    argv = list(STS)
    argv[argv.index(PAN)] = pan
    rc, out, err = run(capsys, argv + ["--kwh", "1", "--tid", "1"])
    assert rc != 0 and needle in err and out == ""


def test_vend_sts_refuses_a_vending_key_on_the_command_line_and_says_where_it_lives(capsys):
    rc, out, err = run(capsys, STS + ["--vending-key", VENDING_KEY_HEX, "--kwh", "1", "--tid", "1"])
    assert rc == 2 and out == "", (rc, out)
    assert "no longer accepted" in err and "meterkit keys import" in err and "Traceback" not in err, err


def test_vend_sts_with_a_token_that_lacks_the_key_label_says_how_to_import(capsys):
    rc, out, err = run(capsys, STS + ["--key-label", "no-such-key", "--kwh", "1", "--tid", "1"])
    assert rc == 2 and out == "" and "no vending key labelled 'no-such-key'" in err and "keys import" in err, err


def test_vend_sts_with_a_wrong_pin_is_one_line(capsys, monkeypatch):
    from host_tools.keys import vendingkey
    vendingkey.close_all()       # no logged-in session left from an earlier test: the PIN is checked
    monkeypatch.setenv("METERKIT_HSM_PIN", "not-the-pin")
    rc, out, err = run(capsys, STS + ["--kwh", "1", "--tid", "1"])
    assert rc == 2 and out == "" and "wrong PIN" in err and "Traceback" not in err, err


def test_vend_opaygo_json_matches_reference(capsys):
    rc, out, _ = run(capsys, ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code",
                              str(OPAYGO_START), "--count", "1", "--value", "1", "--json"])
    assert rc == 0 and json.loads(out) == {"token": "588224011", "count": 2, "kind": "add",
                                           "extended": False, "value": 1}
    rc, out, _ = run(capsys, ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code",
                              str(OPAYGO_START), "--count", "1", "--value", "1", "--set", "--json"])
    assert json.loads(out)["token"] == "380589011"
    rc, out, _ = run(capsys, ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code",
                              str(OPAYGO_START), "--count", "1", "--value", "1", "--extended", "--json"])
    assert json.loads(out)["token"] == "247264959011"


@pytest.mark.parametrize("extra,needle", [(["--value", "996"], "outside"), (["--count", "-1"], "count"),
                                          (["--key", "zz"], "key")])
def test_vend_opaygo_refusals(capsys, extra, needle):
    argv = ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code", str(OPAYGO_START),
            "--count", "1", "--value", "1"]
    for i in range(0, len(extra), 2):
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
    rc, out, err = run(capsys, argv + ["--json"])
    assert rc != 0 and needle in json.loads(out)["error"]


def test_token_inspect_json_uses_firmware_decoding(capsys):
    rc, out, _ = run(capsys, ["token", "inspect", "--decoder-key", STS_KEY_HEX, "5938 6323 4721 3742 6967",
                              "--json"])
    obj = json.loads(out)
    assert rc == 0
    assert (obj["class"], obj["subclass"], obj["rnd"], obj["tid"], obj["field"], obj["crc_ok"]) == \
        (0, 0, 5, 5871660, 1, True)
    assert obj["kind"] == "credit/electricity" and obj["amount"] == 1


def test_token_inspect_wrong_key_exits_non_zero_with_crc_mismatch(capsys):
    rc, out, err = run(capsys, ["token", "inspect", "--decoder-key", "00" * 16, "59386323472137426967", "--json"])
    assert rc == 2 and json.loads(out)["error"] == "CRC mismatch: wrong key or mistyped digits"
    rc, out, err = run(capsys, ["token", "inspect", "--decoder-key", "00" * 16, "59386323472137426967"])
    assert rc == 2 and "CRC mismatch: wrong key or mistyped digits" in err and "credit" not in out


def test_two_tokens_in_the_same_minute_get_different_tids(capsys):
    at = ["--at", "2026-03-01T10:00"]
    now = [a for a in STS if a not in ("--base-date", "93")]
    tids = []
    for _ in range(3):
        rc, out, err = run(capsys, now + ["--kwh", "5"] + at + ["--json"])
        assert rc == 0, err
        tids.append(json.loads(out)["fields"][0]["tid"])
    assert tids[1] == tids[0] + 1 and tids[2] == tids[0] + 2, tids
    rc, out, err = run(capsys, now + ["--kwh", "5", "--tid", str(tids[0]), "--json"])
    assert rc == 0 and "not above the last one" in err


def test_default_base_date_is_14_in_vend_and_inspect(capsys):
    now = [a for a in STS if a not in ("--base-date", "93")]
    rc, out, _ = run(capsys, now + ["--kwh", "5", "--at", "2026-03-01T10:00", "--json"])
    obj = json.loads(out)
    assert obj["base_date"] == "14"
    from tokens import dkga04        # the firmware's own DKGA04 (software HMAC): an independent reference
    key = dkga04.decoder_key(bytes.fromhex(VENDING_KEY_HEX), "123457", 1, 1, 2, PAN, "14")
    rc, out, _ = run(capsys, ["token", "inspect", "--decoder-key", key.hex(), obj["token"], "--json"])
    got = json.loads(out)
    assert rc == 0 and got["time"].startswith("2026-03-01T10:00") and got["base_date"] == "14"


@pytest.mark.parametrize("extra,needle", [
    (["--kwh", "0"], "not a positive amount"), (["--currency", "0"], "not a positive amount"),
    (["--kwh", "nan"], "not a positive amount"), (["--currency", "inf"], "not a positive amount"),
    (["--kwh", "-1"], "not a positive amount"),
    (["--currency", "99999"], "currency units"), (["--max-power-w", "20000000"], " W"),
])
def test_zero_nan_and_limits_refused_in_the_tokens_unit(capsys, extra, needle):
    rc, out, err = run(capsys, STS + extra + ["--tid", "300"])
    assert rc == 2 and needle in err and "Traceback" not in err, err
    if "--currency" in extra and extra[1] == "99999":
        assert "kWh" not in err


def test_vend_sts_human_output_says_amount_and_date(capsys):
    rc, out, _ = run(capsys, STS + ["--kwh", "5", "--tid", "16000000"])
    assert rc == 0 and "5 kWh electricity credit" in out and "field" not in out and "2023" in out


def test_vend_opaygo_without_value_is_refused(capsys):
    argv = ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code", str(OPAYGO_START), "--count", "1"]
    rc, out, err = run(capsys, argv)
    assert rc == 2 and "needs --value" in err
    rc, out, err = run(capsys, argv + ["--value", "0"])
    assert rc == 2 and "adds nothing" in err
    rc, out, _ = run(capsys, argv + ["--sync", "--json"])   # sync and disable carry their own value
    assert rc == 0 and json.loads(out)["value"] == 999


def test_opaygo_inspect_decodes_value_and_count(capsys):
    rc, out, _ = run(capsys, ["vend", "opaygo", "--key", OPAYGO_KEY_HEX, "--starting-code", str(OPAYGO_START),
                              "--count", "4", "--value", "30", "--json"])
    tok = json.loads(out)
    rc, out, _ = run(capsys, ["token", "inspect", "--opaygo-key", OPAYGO_KEY_HEX, "--starting-code",
                              str(OPAYGO_START), "--count", "4", tok["token"], "--json"])
    got = json.loads(out)
    assert rc == 0 and (got["status"], got["value"], got["count"], got["type"]) == ("accepted", 30, tok["count"], "add")
    rc, out, err = run(capsys, ["token", "inspect", "--opaygo-key", "11" * 16, "--starting-code",
                                str(OPAYGO_START), "--count", "4", tok["token"]])
    assert rc == 2 and "wrong key" in err
    rc, out, _ = run(capsys, ["token", "inspect", "--opaygo-key", OPAYGO_KEY_HEX, "--starting-code",
                              str(OPAYGO_START), "--count", str(tok["count"]), tok["token"], "--json"])
    assert rc == 1 and json.loads(out)["status"] == "used"


@pytest.mark.parametrize("args,needle", [(["--decoder-key", "00" * 16, "1234"], "20 digits"),
                                         (["--decoder-key", "00", "59386323472137426967"], "decoder key")])
def test_token_inspect_refusals(capsys, args, needle):
    rc, out, err = run(capsys, ["token", "inspect"] + args + ["--json"])
    assert rc != 0 and needle in json.loads(out)["error"]
