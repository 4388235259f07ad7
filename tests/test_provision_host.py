"""Host side of provisioning without a meter: the keystore's checks, PANs, serial reservation across
parallel stations, the head-end export, and the errors a line operator meets before or without a
meter (a wrong keystore, a meter that does not answer), which must leave nothing written."""
import json
import os
import threading

import pytest

from host_tools.cli import main
from host_tools.errors import DeviceError, UsageError
from host_tools.headend.demo import CSV_COLUMNS as HEADEND_COLUMNS
from host_tools.provision import keystore
from host_tools.provision.line import provision
from host_tools.provision.records import RecordDB
from host_tools.vend import dkga04

GOOD = {"iin": "600727", "broker": {"host": "127.0.0.1", "port": 1883}}
TEST_VENDING_KEY_HEX = "abababababababab949494949494949401234567"   # the one in the session's SoftHSM token


def write_ks(tmp_path, obj):
    p = tmp_path / "ks.json"
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(p)


def test_pan_is_iin_serial_and_luhn_digit_matching_the_dkga04_vector():
    assert keystore.pan_for("600727", 0) == "600727000000000009"   # the DKGA04 vector's PAN
    pan = keystore.pan_for("600727", 12345)
    assert len(pan) == 18 and pan.startswith("60072700000012345") and dkga04.normalise_pan(pan) == pan
    with pytest.raises(UsageError, match="more than the 11 digits"):
        keystore.pan_for("600727", 10 ** 11)


def test_keystore_defaults_and_fields(tmp_path):
    ks = keystore.load(write_ks(tmp_path, dict(GOOD, sgc="123457", ti=7)))
    assert ks["iin"] == "600727" and not any(isinstance(v, bytes) for v in ks.values()), ks
    # the keystore's vending key is the module's: DKGA04 there gives the published vector
    assert ks["vending_key"].decoder_key("123457", 1, 1, 2, "600727000000000009", "93").hex() == \
        "f94b6ed353c3bfdb113e2d3a7ea3c41d"
    assert (ks["krn"], ks["kt"], ks["ken"], ks["base_date"], ks["sgc"], ks["ti"]) == (1, 2, 255, "14", "123457", 7)


@pytest.mark.parametrize("obj, words", [
    ("{not json", "not JSON"),
    (dict(GOOD, vending_key_hex=TEST_VENDING_KEY_HEX), "vending key in plain text"),
    (dict(GOOD, hsm={"token": "no-such-token"}), "no token labelled 'no-such-token'"),
    (dict(GOOD, hsm={"token": "meterkit-test", "key": "no-such-key"}), "no vending key labelled 'no-such-key'"),
    (dict(GOOD, hsm={"pin": "1234"}), "unknown field"),
    (dict(GOOD, hsm={"module": "/nonexistent/libpkcs11.so"}), "does not exist"),
    ({k: v for k, v in GOOD.items() if k != "iin"}, "iin"),
    (dict(GOOD, broker={"port": 1883}), "broker"),
    (dict(GOOD, broker={"host": "h", "port": 0}), "port"),
    (dict(GOOD, base_date="99"), "base_date"),
    (dict(GOOD, krn=12), "krn"),
])
def test_a_wrong_keystore_is_refused_before_the_meter_is_touched(tmp_path, monkeypatch, obj, words):
    for name in ("METERKIT_HSM_TOKEN", "METERKIT_HSM_KEY"):     # the file's hsm section chooses, not the tests'
        monkeypatch.delenv(name, raising=False)
    master, slave = os.openpty()
    try:
        with pytest.raises(UsageError, match=words) as e:
            provision(os.ttyname(slave), write_ks(tmp_path, obj), sgc="1", ti=1, db=str(tmp_path / "r.sqlite"))
        assert e.value.hint
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)   # not one byte went to the meter
    finally:
        os.close(master)
        os.close(slave)
    assert not (tmp_path / "r.sqlite").exists()


def test_a_meter_that_does_not_answer_is_reported_and_nothing_is_recorded(tmp_path, capsys):
    master, slave = os.openpty()   # a port with nobody behind it
    try:
        rc = main(["provision", "--port", os.ttyname(slave), "--keystore", write_ks(tmp_path, GOOD), "--sgc", "123457",
                   "--ti", "1", "--db", str(tmp_path / "r.sqlite"), "--timeout", "0.5", "--json"])
    finally:
        os.close(master)
        os.close(slave)
    err = json.loads(capsys.readouterr().out)
    assert rc == 3 and "no reply" in err["error"] and "identity" in err["error"] and err["hint"]
    db = RecordDB(tmp_path / "r.sqlite")
    assert db.meters() == [] and db.reserve_serial() == 1   # no serial was used up either
    db.close()


def test_no_such_port_is_a_device_error(tmp_path):
    with pytest.raises(DeviceError, match="cannot open"):
        provision(str(tmp_path / "nope"), write_ks(tmp_path, GOOD), sgc="1", ti=1, db=str(tmp_path / "r.sqlite"))


def test_missing_sgc_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="supply group code"):
        provision("/dev/null", write_ks(tmp_path, GOOD), db=str(tmp_path / "r.sqlite"))


def test_parallel_stations_never_reserve_the_same_serial(tmp_path):
    got = []

    def station():
        db = RecordDB(tmp_path / "r.sqlite")
        for _ in range(10):
            got.append(db.reserve_serial())
        db.close()
    RecordDB(tmp_path / "r.sqlite").close()
    threads = [threading.Thread(target=station) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 41))


def test_export_writes_the_head_end_columns(tmp_path, capsys):
    db = RecordDB(tmp_path / "r.sqlite")
    db.save({"serial": 5, "pan": keystore.pan_for("600727", 5), "meter_id": keystore.pan_for("600727", 5),
             "sgc": "123457", "ti": 1, "krn": 1, "message_key_hex": "ab" * 32, "service_key_hex": "cd" * 32,
             "broker_password": "pw-1", "selftest": None})
    db.close()
    assert main(["provision", "export", "--csv", "--db", str(tmp_path / "r.sqlite")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(HEADEND_COLUMNS)
    assert lines[1] == "600727000000000058,600727000000000058,5,123457,1,1,%s,pw-1" % ("ab" * 32)
    assert "cd" * 32 not in "\n".join(lines)   # the service key stays in the factory


def test_export_without_a_db_or_format_says_what_to_give(tmp_path, capsys):
    assert main(["provision", "export", "--db", str(tmp_path / "r.sqlite"), "--csv"]) == 2
    assert "no record DB" in capsys.readouterr().err
    assert main(["provision", "export"]) == 2
    assert "--csv" in capsys.readouterr().err
    assert main(["provision", "--keystore", "x"]) == 2
    assert "--port" in capsys.readouterr().err
