"""`meterkit headend ...` as an operator runs it: serve with the embedded broker (URL printed), import,
topup --wait answered by a meter, meters/events --json, and clear errors."""
import json
import os
import re
import subprocess
import sys

import pytest

from host_tools.headend import vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakemeter import FakeMeter, FakeMeterPool
from host_tools.headend.store import Store


def meterkit(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


@pytest.fixture
def fleet(tmp_path):
    csv_path, ks_path, rows = make_fleet(str(tmp_path), 2)
    db = str(tmp_path / "he.db")
    r = meterkit("headend", "import", csv_path, "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imported"] == 2
    return db, ks_path, rows


def test_serve_topup_wait_meters_events_end_to_end(fleet):
    db, ks_path, rows = fleet
    serve = subprocess.Popen([sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", db,
                              "--duration-s", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        m = re.search(r"mqtt://127\.0\.0\.1:(\d+)", line)
        assert m, line + serve.stderr.read()
        store = Store(db)
        ks = vending.load_keystore(ks_path)
        fm = FakeMeter(rows[0]["meter_id"], bytes.fromhex(rows[0]["message_key_hex"]), rows[0]["broker_password"],
                       vending.decoder_key(ks, store.meter(rows[0]["meter_id"])))
        pool = FakeMeterPool("127.0.0.1", int(m.group(1)), [fm])
        assert pool.start() == 1
        try:
            r = meterkit("headend", "topup", rows[0]["meter_id"], "--kwh", "7.5", "--keystore", ks_path,
                         "--db", db, "--wait", "20", "--json")
        finally:
            pool.stop()
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["state"] == "done" and out["code"] == "accepted" and out["quantity"] == 75
        assert len(fm.credited) == 1
        r = meterkit("headend", "meters", "--db", db, "--json")
        ms = {x["meter_id"]: x for x in json.loads(r.stdout)["meters"]}
        assert ms[rows[0]["meter_id"]]["undelivered"] == 0 and ms[rows[1]["meter_id"]]["status"] == "unknown"
        assert ms[rows[0]["meter_id"]]["status"] in ("online", "offline")
        r = meterkit("headend", "events", rows[0]["meter_id"], "--db", db, "--json")
        kinds = [e["kind"] for e in json.loads(r.stdout)["events"]]
        assert kinds.index("vended") < kinds.index("result")
    finally:
        serve.terminate()
        serve.wait(10)


def test_topup_without_service_queues_and_wait_explains(fleet):
    db, ks_path, rows = fleet
    r = meterkit("headend", "topup", rows[1]["meter_id"], "--amount", "25.50", "--keystore", ks_path, "--db", db,
                 "--json")
    assert r.returncode == 0 and "serve" in json.loads(r.stdout)["note"]
    r = meterkit("headend", "topup", rows[1]["meter_id"], "--kwh", "1", "--keystore", ks_path, "--db", db,
                 "--wait", "0.5", "--json")
    assert r.returncode == 3
    err = json.loads(r.stdout)
    assert "no result" in err["error"] and "not running" in err["hint"]


def test_unknown_meter_and_impossible_amount_are_usage_errors(fleet):
    db, ks_path, rows = fleet
    r = meterkit("headend", "topup", "600727000000000000", "--kwh", "1", "--keystore", ks_path, "--db", db, "--json")
    assert r.returncode == 2 and "unknown meter" in json.loads(r.stdout)["error"]
    r = meterkit("headend", "topup", rows[0]["meter_id"], "--kwh", "-4", "--keystore", ks_path, "--db", db)
    assert r.returncode == 2 and "-4" in r.stderr      # the vending library says why
    r = meterkit("headend", "events", "nope", "--db", db)
    assert r.returncode == 2 and "unknown meter" in r.stderr


def test_unreachable_broker_is_a_device_error(tmp_path):
    from host_tools.headend.broker import free_port
    port = free_port()
    r = meterkit("headend", "serve", "--broker", f"mqtt://127.0.0.1:{port}", "--db", str(tmp_path / "u.db"),
                 "--duration-s", "1")
    assert r.returncode == 3
    assert "unreachable" in r.stderr and "mosquitto" in r.stderr


# -- signed SMS commands ---------------------------------------------------------------------------------
def test_sms_command_signs_with_the_meter_key_and_a_fresh_seq_each_time(fleet):
    import hashlib
    import hmac
    db, _, rows = fleet
    mid, key = rows[0]["meter_id"], bytes.fromhex(rows[0]["message_key_hex"])
    outs = []
    for args in (["relay_open"], ["set_time", "unix=1767571200"]):
        r = meterkit("headend", "sms-command", mid, *args, "--db", db, "--json")
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert [o["seq"] for o in outs] == [1, 2]
    for o, body in zip(outs, ("relay_open", "set_time unix=1767571200")):
        mac = hmac.new(key, f"{mid}\n{o['seq']}\n{body}".encode(), hashlib.sha256).hexdigest()[:8]
        assert o["text"] == f"CMD {o['seq']} {body} {mac}"
    # another meter has its own counter; plain output is just the text to send
    r = meterkit("headend", "sms-command", rows[1]["meter_id"], "get_readings", "--db", db)
    assert r.returncode == 0 and r.stdout.startswith("CMD 1 get_readings ")
    r = meterkit("headend", "events", mid, "--db", db, "--json")
    assert [e["data"]["seq"] for e in json.loads(r.stdout)["events"] if e["kind"] == "sms_command"] == [1, 2]


def test_sms_command_matches_the_protocol_documents_vector():
    from host_tools.headend import smscmd
    key = bytes(range(32))
    assert smscmd.sign(key, "000000000000001234", 12, "relay_close") == "CMD 12 relay_close f3fd0c20"


@pytest.mark.parametrize("args, words", [
    (["600727000000099999", "relay_open"], "unknown meter"),
    (["{m}", "fw_offer"], "cannot be sent by SMS"),
    (["{m}", "set_time", "unix"], "bad argument"),
    (["{m}", "set_time", "unix=1 2"], "bad argument"),
    # arguments a command does not take are refused before anything is signed (this once reached
    # the 160-character limit; no command's own arguments come near it now)
    (["{m}", "set_time"] + ["k%d=%s" % (i, "9" * 20) for i in range(8)], "takes no argument k0"),
])
def test_sms_command_bad_input_is_a_clear_error(fleet, args, words):
    db, _, rows = fleet
    r = meterkit("headend", "sms-command", *[a.format(m=rows[0]["meter_id"]) for a in args], "--db", db)
    assert r.returncode != 0 and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, words", [
    (["{m}", "reboot"], "unknown command"),
    (["{m}", "set_config", "--args", "{not json"], "not JSON"),
    (["{m}", "set_config", "--args", "[1]"], "JSON object"),
    (["{m}", "set_config", "--args-file", "/nonexistent.json"], "cannot read"),
    (["600727000000099999", "get_readings"], "unknown meter"),
])
def test_command_bad_input_is_a_clear_error(fleet, argv, words):
    db, _, rows = fleet
    r = meterkit("headend", "command", *[a.replace("{m}", rows[0]["meter_id"]) for a in argv], "--db", db)
    assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_command_is_queued_signed_for_delivery(fleet):
    db, _, rows = fleet
    r = meterkit("headend", "command", rows[0]["meter_id"], "set_config", "--args",
                 '{"prepaid": {"supply": {"max_power_w": 3000}}}', "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "queued" and out["msg_id"].startswith("c-")
    body = json.loads(Store(db).q1("SELECT body FROM messages WHERE msg_id=?", (out["msg_id"],))["body"])
    assert body == {"t": "cmd", "id": out["msg_id"], "cmd": "set_config",
                    "args": {"prepaid": {"supply": {"max_power_w": 3000}}}}
