"""A meter as the field meets it after the factory: provisioned (with an OpenPAYGO secret) by
`meterkit provision` on a `sim start` meter, whose self-test now passes its modem check; privileged
service requests and a recalibration authenticated from the record DB, refused in one line without it;
an OpenPAYGO token vended with the recorded secret accepted at the service port."""
import json
import os
import sqlite3

import pytest

from cli_support import mk, start_meter, stop

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def meter(tmp_path_factory):
    d = tmp_path_factory.mktemp("field")
    link = d / "meter.pty"
    proc, info = start_meter("--seed", "4", "--link", str(link), cwd=d)
    try:
        ks = d / "keystore.json"
        ks.write_text(json.dumps({"iin": "600727", "base_date": "14",
                                  "broker": {"host": "127.0.0.1", "port": 1883}}))
        db = d / "records.sqlite"
        p = mk("provision", "-p", str(link), "--keystore", str(ks), "--sgc", "123457", "--ti", "1", "--db", str(db),
               "--opaygo", "--json", timeout=240)
        assert p.returncode in (0, 1), p.stderr
        yield {"port": str(link), "db": str(db), "bench": info["bench"], "prov": json.loads(p.stdout), "dir": d}
    finally:
        stop(proc)


def test_self_test_of_a_sim_start_meter_passes_its_modem(meter):
    items = {i["item"]: i for i in meter["prov"]["selftest"]}
    assert items["modem"]["pass"], items["modem"]
    assert meter["prov"]["opaygo"] is True


def test_privileged_request_without_the_record_db_is_refused_in_one_line(meter, tmp_path):
    p = mk("device", "-p", meter["port"], "relay", "open", cwd=str(tmp_path), env={"METERKIT_DATA": str(tmp_path)})
    assert p.returncode == 3 and "left factory mode" in p.stderr and "--db" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_privileged_requests_authenticate_from_the_record_db(meter):
    p = mk("device", "-p", meter["port"], "relay", "open", "--db", meter["db"], "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["supply"] == "open", p.stderr
    p = mk("device", "-p", meter["port"], "relay", "close", "--db", meter["db"], "--json")
    assert json.loads(p.stdout)["supply"] == "closed"
    p = mk("device", "-p", meter["port"], "config", "--db", meter["db"], "--json")
    cfg = json.loads(p.stdout)
    assert cfg["provisioned"] is True and "IgainL" in cfg["calibration"], cfg
    assert "tariff" in cfg["settings"]["prepaid"] and cfg["settings"]["meter_period_s"] > 0, cfg["settings"]
    # for people: the provisioning time as a local date, not Unix seconds
    from host_tools import render
    at = cfg["provisioned_at"]
    for req in ("identity", "config"):
        p = mk("device", "-p", meter["port"], req, "--db", meter["db"])
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("provisioned at")]
        assert line and render.local_time(at) in line[0] and str(int(at)) not in p.stdout, p.stdout


def test_an_opaygo_token_made_with_the_recorded_secret_is_accepted(meter):
    row = sqlite3.connect(meter["db"]).execute("SELECT opaygo_key_hex, opaygo_starting_code FROM meters").fetchone()
    assert row[0] and len(row[0]) == 32
    tok = json.loads(mk("vend", "opaygo", "--key", row[0], "--starting-code", str(row[1]), "--count", "0",
                        "--value", "7", "--json").stdout)
    p = mk("device", "-p", meter["port"], "token", tok["token"], "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["result"] == "accepted", p.stdout + p.stderr


def test_a_provisioned_meter_is_recalibrated_with_the_record_db(meter, tmp_path):
    p = mk("calibrate", "-p", meter["port"], "-b", "sim:" + meter["bench"], "--json", cwd=str(meter["dir"]),
           env={"METERKIT_DATA": str(tmp_path)})
    assert p.returncode == 3 and "left factory mode" in p.stderr, p.stderr
    p = mk("calibrate", "-p", meter["port"], "-b", "sim:" + meter["bench"], "--db", meter["db"], "--json",
           cwd=str(meter["dir"]), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["passed"] and out["stored_in_meter"] and out["meter"] == meter["prov"]["meter_id"]
    assert out["certificate_number"].startswith("CAL-")
    p = mk("calibrate", "verify", os.path.dirname(out["report"]["json"]), cwd=str(meter["dir"]))
    assert p.returncode == 0 and "verified" in p.stdout, p.stdout + p.stderr


def test_calibrate_and_selftest_find_the_record_db_as_device_does(meter, tmp_path):
    """No --db: the record DB is $METERKIT_FACTORY_DB, else factory-records.sqlite in the data folder
    (as for `meterkit device`), so a provisioned meter is recalibrated and self-tested without naming it."""
    import shutil
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(meter["db"], data / "factory-records.sqlite")
    p = mk("selftest", "-p", meter["port"], "--json", env={"METERKIT_FACTORY_DB": meter["db"]})
    st = json.loads(p.stdout)
    assert p.returncode in (0, 1) and "error" not in st and {i["item"] for i in st["items"]} >= {"flash", "clock"}, \
        p.stdout + p.stderr
    p = mk("selftest", "-p", meter["port"], "--json", env={"METERKIT_DATA": str(data)})
    assert p.returncode in (0, 1) and "left factory mode" not in p.stdout + p.stderr, p.stdout + p.stderr
    p = mk("calibrate", "-p", meter["port"], "-b", "sim:" + meter["bench"], "--json", cwd=str(tmp_path),
           env={"METERKIT_DATA": str(data)}, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["passed"] and out["stored_in_meter"] and out["meter"] == meter["prov"]["meter_id"], out
    # the certificate is kept with the meter's record in the DB that was found
    assert list((data / "certificates" / out["meter"]).iterdir()), out


def test_an_older_record_db_gains_the_opaygo_columns_and_parallel_opens_agree(tmp_path):
    import threading

    from host_tools.provision.records import RecordDB
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(str(old))
    db.execute("CREATE TABLE meters (serial INTEGER PRIMARY KEY, pan TEXT UNIQUE NOT NULL, meter_id TEXT UNIQUE "
               "NOT NULL, board TEXT, firmware TEXT, image_sha256 TEXT, firmware_sha256 TEXT, sgc TEXT, ti INTEGER, "
               "krn INTEGER, kt INTEGER, ken INTEGER, base_date TEXT, message_key_hex TEXT NOT NULL, service_key_hex "
               "TEXT NOT NULL, broker_password TEXT NOT NULL, provisioned_at REAL, operator TEXT, selftest_passed "
               "INTEGER, selftest TEXT, runs INTEGER DEFAULT 1)")
    db.commit()
    db.close()
    errors = []

    def open_it():
        try:
            RecordDB(str(old)).close()
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=open_it) for _ in range(4)]   # four line stations at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    cols = {r[1] for r in sqlite3.connect(str(old)).execute("PRAGMA table_info(meters)")}
    assert {"opaygo_key_hex", "opaygo_starting_code"} <= cols
