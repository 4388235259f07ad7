"""The head-end's store as a utility runs it: private files, durable commits, numbered migrations, backup
then restore then carry on, the operators' audit, top-ups from every channel reconciled, and the uplink
sequence window several workers need. Store tests run on SQLite and on PostgreSQL (store_target)."""
import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from host_tools.errors import UsageError
from host_tools.headend import backup, envelope, reconcile, seqwindow, vending
from host_tools.headend.demo import make_fleet
from host_tools.headend.fakemeter import FakeMeter
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import SCHEMA_VERSION, Store

NOW = 1796601600            # 2026-12-07


@pytest.fixture
def fleet(tmp_path, store_target):
    csv_path, ks_path, rows = make_fleet(str(tmp_path), 2)
    store = Store(store_target)
    store.import_csv(csv_path)
    yield store, vending.load_keystore(ks_path), rows, tmp_path, ks_path
    store.close()


def meter_for(store, ks, row):
    return FakeMeter(row["meter_id"], bytes.fromhex(row["message_key_hex"]), row["broker_password"],
                     vending.decoder_key(ks, store.meter(row["meter_id"])))


def deliver(he, fm, now):
    """One round without a broker: claim what is due, hand it to the meter, ingest its answers."""
    for _msg_id, _topic, payload in he._claim(now):
        for _t, up in fm.handle_down(payload):
            he.ingest(fm.meter_id, up)


def cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", *argv], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))


# -- files, durability, migrations ------------------------------------------------------------------
def test_sqlite_store_and_its_journal_are_private_and_commit_with_synchronous_full(tmp_path):
    path = tmp_path / "he.db"
    store = Store(path)
    store.set_service("x", 1)
    for suffix in ("", "-wal", "-shm"):
        p = str(path) + suffix
        assert os.path.exists(p), p
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == 0o600, f"{p} is {oct(mode)}, not 0600"
    assert store.db.raw.execute("PRAGMA synchronous").fetchone()[0] == 2      # 2 = FULL
    with store.tx():
        pass
    assert store.db.raw.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()


def test_an_old_0644_database_is_closed_up_at_open(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_database_from_before_versioning_is_migrated_forward_and_keeps_its_data(tmp_path):
    from host_tools.headend.store import SCHEMA_V1
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    for sql in SCHEMA_V1:                     # what `meterkit headend` made before request_key existed
        con.execute(sql)
    con.execute("INSERT INTO meters (meter_id, pan, sgc, ti, krn, message_key_hex, imported) VALUES "
                "('m1', '600727000000010008', '123457', 1, 1, ?, 0)", ("00" * 32,))
    con.execute("INSERT INTO vends (meter_id, sgc, ti, krn, tid, token, what, quantity, msg_id, created) VALUES "
                "('m1', '123457', 1, 1, 42, '1', 'kwh', 10, 't-1', 0)")
    con.commit()
    con.close()
    store = Store(path)
    assert store.migrated == list(range(2, SCHEMA_VERSION + 1)) and store.schema_version() == SCHEMA_VERSION
    assert store.q1("SELECT tid, request_key FROM vends")["tid"] == 42
    assert store.meter("m1")["up_window"] == 0
    store.close()
    assert Store(path).migrated == []          # applied once each


def test_a_database_newer_than_this_meterkit_is_refused(store_target):
    Store(store_target).q("INSERT INTO schema_version (version, name, applied) VALUES (?,?,?)",
                          (SCHEMA_VERSION + 1, "future", 0))
    with pytest.raises(UsageError) as e:
        Store(store_target)
    assert "newer than this meterkit" in str(e.value)


# -- backup, restore, carry on ----------------------------------------------------------------------
def test_backup_then_restore_then_continue(fleet):
    store, ks, rows, tmp, _ = fleet
    row = rows[0]
    he = HeadEnd(store, "mqtt://127.0.0.1:1")
    fm = meter_for(store, ks, row)
    a = vending.vend_topup(store, ks, row["meter_id"], kwh="5", now=NOW)
    deliver(he, fm, NOW)
    saved = backup.backup(store.path, tmp / "he.backup")
    assert stat.S_IMODE(os.stat(saved["file"]).st_mode) == 0o600 and saved["bytes"] > 0
    b = vending.vend_topup(store, ks, row["meter_id"], kwh="7", now=NOW + 60)
    store.close()

    out = backup.restore(store.path, str(tmp / "he.backup"))
    assert out["schema_version"] == SCHEMA_VERSION and out["meters"] == 2
    store = Store(out["db"] if not out["db"].startswith("postgres") else fleet[0].path)
    vends = [v["msg_id"] for v in store.q("SELECT msg_id FROM vends ORDER BY id")]
    assert vends == [a["msg_id"]], f"after the restore the vends are {vends}, expected only {a['msg_id']}"
    done = store.q1("SELECT state, code FROM messages WHERE msg_id=?", (a["msg_id"],))
    assert (done["state"], done["code"]) == ("done", "accepted")
    # and it carries on: a new vend (a later minute) gets a TID the meter has not seen, and is credited
    he = HeadEnd(store, "mqtt://127.0.0.1:1")
    c = vending.vend_topup(store, ks, row["meter_id"], kwh="3", now=NOW + 120)
    assert c["tid"] > a["tid"] and c["tid"] >= b["tid"]
    deliver(he, fm, NOW + 120)
    r = store.q1("SELECT code FROM messages WHERE msg_id=?", (c["msg_id"],))
    assert r["code"] == "accepted", f"the meter answered {r['code']} after the restore"
    assert [m for m, _ in fm.credited] == [a["msg_id"], c["msg_id"]]
    store.close()


def test_restore_is_refused_while_serve_runs_and_for_foreign_files(fleet):
    store, ks, rows, tmp, _ = fleet
    backup.backup(store.path, tmp / "b")
    with pytest.raises(UsageError) as e:
        backup.restore(store.path, str(tmp / "b"), running=True)
    assert "stop `meterkit headend serve`" in e.value.hint
    junk = tmp / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UsageError) as e:
        backup.restore(store.path, str(junk))
    assert "not a head-end backup" in str(e.value)
    assert store.q1("SELECT COUNT(*) AS n FROM meters")["n"] == 2          # untouched


def test_backup_and_restore_verbs_give_one_line_errors(tmp_path):
    db = tmp_path / "he.db"
    Store(db).close()
    r = cli("backup", "--db", str(db), str(tmp_path / "nowhere" / "x.db"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "x.csv").write_text("a,b\n")
    r = cli("restore", "--db", str(db), str(tmp_path / "x.csv"))
    assert r.returncode == 2 and "not a head-end backup" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nowhere").exists()


# -- audit ------------------------------------------------------------------------------------------
def test_every_verb_and_remote_command_is_audited_with_operator_and_result(fleet):
    store, ks, rows, tmp, ks_path = fleet
    mid = rows[0]["meter_id"]
    db = store.path
    assert cli("topup", "--db", db, mid, "--kwh", "2", "--keystore", ks_path, "--operator", "a.benali").returncode == 0
    assert cli("command", "--db", db, mid, "relay_open", env={"METERKIT_OPERATOR": "k.saidi"}).returncode == 0
    assert cli("topup", "--db", db, "600727999999999999", "--kwh", "2", "--keystore", ks_path,
               "--operator", "a.benali").returncode == 2
    assert cli("meters", "--db", db, "--operator", "bad name!").returncode == 2
    # the meter answers the command: the audit shows it beside the operator's entry
    he = HeadEnd(store, "mqtt://127.0.0.1:1")
    deliver(he, meter_for(store, ks, rows[0]), NOW + 10 ** 6)
    r = cli("audit", "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    got = [(e["operator"], e["action"], e["target"], e["result"], e.get("meter_answer"))
           for e in json.loads(r.stdout)["entries"]]
    assert got == [("a.benali", "topup", mid, "ok", "accepted"), ("k.saidi", "command", mid, "ok", "done"),
                   ("a.benali", "topup", "600727999999999999", "error", None)], got
    entries = json.loads(r.stdout)["entries"]
    assert entries[0]["args"]["kwh"] == "2" and "unknown meter" in entries[2]["detail"]["error"]
    assert all(e["at"] > 1.7e9 for e in entries)
    text = cli("audit", "--db", db, "--who", "k.saidi").stdout
    assert "relay_open" not in text and "k.saidi" in text and "meter answered done" in text


# -- top-ups from every channel ---------------------------------------------------------------------
def test_topups_from_every_channel_are_reconciled_against_the_vends(fleet):
    store, ks, rows, tmp, _ = fleet
    mid = rows[0]["meter_id"]
    he = HeadEnd(store, "mqtt://127.0.0.1:1")
    fm = FakeMeter(mid, bytes.fromhex(rows[0]["message_key_hex"]))
    remote = vending.vend_topup(store, ks, mid, amount="10", now=NOW)
    typed = vending.vend_topup(store, ks, mid, amount="5", now=NOW + 60)

    def topup(seq, **data):
        return fm.uplink({"t": "event", "kind": "topup", "seq": seq, "ts": NOW, "data": data})[1]
    assert he.ingest(mid, topup(1, ch="remote", tid=remote["tid"], amt=1000, unit="minor", ref=remote["msg_id"])) == "event"
    assert he.ingest(mid, topup(2, ch="keypad", tid=typed["tid"], amt=500, unit="minor")) == "event"
    assert he.ingest(mid, topup(3, ch="service", amt=2000, unit="minor")) == "event"
    # the same event again (a redelivery with a new envelope seq) is recorded once
    assert he.ingest(mid, topup(3, ch="service", amt=2000, unit="minor")) == "event"
    out = reconcile.reconcile(store, mid)
    m = out["meters"][0]
    assert m["topup_events"] == {"reported": 3, "matched": 2, "by_channel": {"remote": 1, "keypad": 1, "service": 1}}
    unvended = [x for x in out["mismatches"] if x["kind"] == "unvended_topup"]
    assert [(x["channel"], x["quantity"]) for x in unvended] == [("service", 2000)]
    assert out["ok"] is False
    kinds = {x["kind"] for x in out["mismatches"]}
    assert "topup_twice" not in kinds


# -- the uplink window for several workers ----------------------------------------------------------
def test_seq_window_accepts_each_seq_once_out_of_order_and_nothing_below_it():
    last, bits = seqwindow.accept(None, 0, 5, 8)
    last, bits = seqwindow.accept(last, bits, 7, 8)            # 6 still in flight on another worker
    last, bits = seqwindow.accept(last, bits, 6, 8)            # arrives late: accepted once
    assert last == 7
    for replay in (6, 7, 5):
        with pytest.raises(envelope.EnvelopeError):
            seqwindow.accept(last, bits, replay, 8)
    last, bits = seqwindow.accept(last, bits, 20, 8)
    with pytest.raises(envelope.EnvelopeError):
        seqwindow.accept(last, bits, 11, 8)                   # below the window: stale
    last, bits = seqwindow.accept(last, bits, 12, 8)
    with pytest.raises(envelope.EnvelopeError):                # window 0: strictly increasing
        seqwindow.accept(10, 0, 9, 0)
