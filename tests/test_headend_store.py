"""Head-end logic without a broker: vending never reuses a TID, uplink checks (stale, forged, malformed),
ingest of readings/events/statements, monthly statements, import validation."""
import json
import threading

import pytest

from host_tools.errors import UsageError
from host_tools.fwimport import firmware_module
from host_tools.headend import envelope, reports, vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakemeter import FakeMeter
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store

sts = firmware_module("tokens.sts")


@pytest.fixture
def fleet(tmp_path, store_target):
    """Two meters imported into a store on SQLite, then on PostgreSQL (every test here runs on both)."""
    csv_path, ks_path, rows = make_fleet(str(tmp_path), 2)
    store = Store(store_target)
    store.import_csv(csv_path)
    yield store, vending.load_keystore(ks_path), rows, tmp_path
    store.close()


def test_vended_tids_unique_and_increasing_within_one_minute(fleet):
    store, ks, rows, _ = fleet
    mid = rows[0]["meter_id"]
    got = [vending.vend_topup(store, ks, mid, kwh="1", now=1767571200) for _ in range(20)]
    tids = [g["tid"] for g in got]
    assert tids == sorted(set(tids)) and len(tids) == 20
    dk = vending.decoder_key(ks, store.meter(mid))
    decoded = [sts.decode(dk, g["token"]) for g in got]
    assert all(t.crc_ok for t in decoded) and [t.tid for t in decoded] == tids


def test_vending_from_two_processes_worth_of_connections_never_reuses_a_tid(fleet):
    store, ks, rows, tmp = fleet
    mid = rows[1]["meter_id"]
    stores = [Store(store.path) for _ in range(4)]
    out = []

    def vend(s):
        for _ in range(10):
            out.append(vending.vend_topup(s, ks, mid, kwh="2", now=1767571200)["tid"])
    threads = [threading.Thread(target=vend, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 40 and len(set(out)) == 40


def test_tids_are_per_meter_and_key(fleet):
    store, ks, rows, _ = fleet
    a = vending.vend_topup(store, ks, rows[0]["meter_id"], kwh="1", now=1767571200)
    b = vending.vend_topup(store, ks, rows[1]["meter_id"], kwh="1", now=1767571200)
    assert a["tid"] == b["tid"]      # each meter's key has its own TID space
    store.q("UPDATE meters SET krn=2 WHERE meter_id=?", (rows[0]["meter_id"],))
    c = vending.vend_topup(store, ks, rows[0]["meter_id"], kwh="1", now=1767571200)
    assert c["tid"] == a["tid"]      # a new key revision starts afresh


@pytest.mark.parametrize("kw", [{"kwh": "0"}, {"kwh": "-3"}, {"kwh": "abc"}, {"kwh": "99999999"},
                                {"amount": "0"}, {}, {"kwh": "1", "amount": "1"}])
def test_impossible_amounts_refused_and_nothing_recorded(fleet, kw):
    store, ks, rows, _ = fleet
    with pytest.raises(UsageError):
        vending.vend_topup(store, ks, rows[0]["meter_id"], **kw)
    assert store.q1("SELECT COUNT(*) AS n FROM vends")["n"] == 0
    assert store.q1("SELECT COUNT(*) AS n FROM messages")["n"] == 0


def test_unknown_meter_error_says_how_to_list_meters(fleet):
    store, ks, _, _ = fleet
    with pytest.raises(UsageError) as e:
        vending.vend_topup(store, ks, "600727999999999999", kwh="1")
    assert "unknown meter" in str(e.value) and "headend meters" in e.value.hint


def ingest_setup(fleet):
    store, ks, rows, _ = fleet
    he = HeadEnd(store, "mqtt://127.0.0.1:1")       # never connected: ingest is called directly
    fm = FakeMeter(rows[0]["meter_id"], bytes.fromhex(rows[0]["message_key_hex"]))
    return store, he, fm, rows


def test_stale_and_repeated_uplinks_rejected_logged_and_not_acted_on(fleet):
    store, he, fm, rows = ingest_setup(fleet)
    mid = fm.meter_id
    first = fm.uplink({"t": "event", "seq": 1, "ts": 1, "kind": "low_credit", "data": {}})[1]
    assert he.ingest(mid, first) == "event"
    assert he.ingest(mid, first) == "rejected:stale"                     # replayed
    old = fm.uplink({"t": "event", "seq": 2, "ts": 2, "kind": "tamper", "data": {}}, seq=1)[1]
    assert he.ingest(mid, old) == "rejected:stale"
    kinds = [e["kind"] for e in store.events(mid)]
    assert kinds.count("low_credit") == 1 and "tamper" not in kinds
    rej = [e["data"] for e in store.events(mid) if e["kind"] == "uplink_rejected"]
    assert [r["why"] for r in rej] == ["stale", "stale"] and rej[1]["s"] == 1
    assert store.meter(mid)["up_seq"] == 1


def test_forged_uplinks_rejected(fleet):
    store, he, fm, rows = ingest_setup(fleet)
    mid = fm.meter_id
    forged = fm.uplink({"t": "result", "ref": "x", "code": "accepted"}, key=b"k" * 32)[1]
    assert he.ingest(mid, forged) == "rejected:bad_mac"
    other = FakeMeter(rows[1]["meter_id"], bytes.fromhex(rows[1]["message_key_hex"]))
    # a genuine message of meter B replayed on meter A's topic
    assert he.ingest(mid, other.uplink({"t": "event", "seq": 1, "ts": 1, "kind": "x", "data": {}})[1]) \
        == "rejected:bad_mac"
    env = json.loads(fm.uplink({"t": "event", "seq": 1, "ts": 1, "kind": "x", "data": {}})[1])
    env["p"] = env["p"].replace('"x"', '"y"')                       # tampered payload, old MAC
    assert he.ingest(mid, json.dumps(env).encode()) == "rejected:bad_mac"
    for junk in (b"not json", b"{}", b'{"m":"a","s":"1","p":"{}","h":""}', b"\xff\xfe"):
        assert he.ingest(mid, junk) == "rejected:malformed"
    assert store.meter(mid)["up_seq"] is None
    assert he.ingest("600727000000000000", b"{}") == "rejected:unknown_meter"


def test_readings_make_monthly_statements(fleet):
    store, he, fm, rows = ingest_setup(fleet)
    mid = fm.meter_id
    jan1, feb1 = 1767225600, 1769904000     # 2026-01-01, 2026-02-01 UTC
    for ts, wh in ((jan1 + 3600, 1000), (jan1 + 20 * 86400, 1500), (feb1 - 60, 2100), (feb1 + 86400, 2600)):
        assert he.ingest(mid, fm.uplink({"t": "reading", "ts": ts, "import_wh": wh, "credit": 1})[1]) == "reading"
    he.ingest(mid, fm.uplink({"t": "statement", "month": "2026-01", "import_wh": 1100, "cost": 990, "topups": 2})[1])
    st = reports.monthly_statements(store, mid)
    assert [(s["month"], s["import_wh"], s["readings"]) for s in st] == [("2026-01", 1100, 3), ("2026-02", 500, 1)]
    assert st[0]["meter_statement"] == {"import_wh": 1100, "cost": 990, "topups": 2}


def test_import_rejects_bad_records_whole(tmp_path):
    store = Store(tmp_path / "x.db")
    bad = tmp_path / "bad.csv"
    bad.write_text("meter_id,pan,serial,sgc,ti,krn,message_key_hex,broker_password\n"
                   "m1,600727000000010024,s,123457,1,1," + "00" * 32 + ",pw\n"
                   "m2,600727000000010024,s,123457,1,1,abcd,pw\n")
    with pytest.raises(UsageError) as e:
        store.import_csv(bad)
    assert "line 3" in str(e.value)
    assert store.q1("SELECT COUNT(*) AS n FROM meters")["n"] == 0
    missing = tmp_path / "missing.csv"
    missing.write_text("meter_id,pan\n1,2\n")
    with pytest.raises(UsageError) as e:
        store.import_csv(missing)
    assert "message_key_hex" in str(e.value)


def test_envelope_mac_covers_exact_bytes_of_direction_id_seq_and_inner_text():
    key = bytes(range(32))
    p = envelope.seal(key, "sim-1", 5, {"t": "cmd", "id": "a", "cmd": "get_readings", "args": {}})
    env = json.loads(p)
    import hashlib
    import hmac
    assert env["h"] == hmac.new(key, ("down\nsim-1\n5\n" + env["p"]).encode(), hashlib.sha256).hexdigest()
    assert envelope.check(key, p, 4, envelope.DOWN)[0] == 5


def test_meters_listing_shows_the_last_readings_tamper_flags(fleet):
    import subprocess
    import sys
    store, he, fm, rows = ingest_setup(fleet)
    mid = fm.meter_id
    he.ingest(mid, fm.uplink({"t": "reading", "ts": 1767571200, "import_wh": 5, "credit": 700, "supply": "closed",
                              "tamper": []})[1])
    he.ingest(mid, fm.uplink({"t": "reading", "ts": 1767572100, "import_wh": 6, "credit": 690, "supply": "closed",
                              "tamper": ["imbalance"]})[1])
    assert store.last_reading(mid)["tamper"] == ["imbalance"]
    db = store.path
    out = subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "meters", "--db", db, "--json"],
                         capture_output=True, text=True, timeout=60)
    ms = {m["meter_id"]: m for m in json.loads(out.stdout)["meters"]}
    assert ms[mid]["tamper"] == ["imbalance"] and ms[mid]["credit"] == 690
    text = subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "meters", "--db", db],
                          capture_output=True, text=True, timeout=60).stdout
    assert "TAMPER: imbalance" in text
