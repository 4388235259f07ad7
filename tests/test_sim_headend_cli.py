"""The chain from the command line: `meterkit headend serve --broker-port`, `meterkit sim start --headend
DB --meters 2`, `meterkit headend topup --wait` answered by the simulated meters; the live view's
keypad; and the sim/head-end verbs' refusals (exit 2, one line, no traceback, nothing spent)."""
import json
import os
import pty
import signal
import time

import pytest

from cli_support import METERKIT, mk, start, start_meter
from cli_support import stop as _stop
from host_tools.headend.broker import free_port
from host_tools.sim.live import keys_from_text
from test_device_cli import _pty_reader

pytestmark = pytest.mark.timeout(400)


def _keystore(d):
    ks = d / "keystore.json"
    ks.write_text(json.dumps({"sgc": 123457, "kt": 2, "base_date": "14"}))
    return ks


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    ks = _keystore(d)
    db = d / "headend.db"
    port = free_port()
    serve = start("headend", "serve", "--db", str(db), "--broker-port", str(port))
    sim = None
    try:
        line = serve.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + serve.stderr.read()
        sim, info = start_meter("--headend", str(db), "--keystore", str(ks), "--meters", "2",
                                "--link", str(d / "meter.pty"), cwd=d)
        assert len(info.get("meters", [])) == 2, info
        yield {"db": str(db), "ks": str(ks), "info": info, "dir": d, "port": port}
    finally:
        if sim is not None:
            _stop(sim)
        _stop(serve)


def test_simulated_meters_join_the_head_end_and_are_topped_up_from_the_command_line(chain):
    ids = [m["meter_id"] for m in chain["info"]["meters"]]
    assert chain["info"]["broker"] == "mqtt://127.0.0.1:%d" % chain["port"]
    for mid in ids:
        p = mk("headend", "topup", mid, "--amount", "25", "--wait", "30", "--db", chain["db"], "--keystore",
               chain["ks"], "--json", timeout=150)
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout)
        assert out["state"] == "done" and out["code"] == "accepted", out
        assert out["attempts"] == 1, out      # sim start said ready once the meters were online
    # the credit arrived on the first meter: its service port says so
    for m in chain["info"]["meters"]:      # every meter's service port answers, not only the first's
        c = json.loads(mk("device", "-p", m["service_port"], "credit", "--json").stdout)
        assert c["topups"] >= 2500, (m, c)
    p = mk("headend", "meters", "--db", chain["db"])
    assert all(mid in p.stdout for mid in ids) and "online" in p.stdout and "2 meter(s)" in p.stdout, p.stdout


def test_topup_human_output_says_amount_and_answer(chain):
    mid = chain["info"]["meters"][1]["meter_id"]
    p = mk("headend", "topup", mid, "--amount", "5", "--wait", "30", "--db", chain["db"], "--keystore", chain["ks"],
           timeout=150)
    assert p.returncode == 0 and "5.00 MRU for meter" in p.stdout and "answered: accepted" in p.stdout, p.stdout
    assert "of currency" not in p.stdout


def test_events_and_reconcile_read_in_money_and_json_stays_exact(chain):
    mid = chain["info"]["meters"][0]["meter_id"]
    p = mk("headend", "topup", mid, "--amount", "25", "--wait", "30", "--db", chain["db"], "--keystore", chain["ks"],
           timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    p = mk("headend", "events", mid, "--db", chain["db"])
    assert p.returncode == 0, p.stderr
    vended = [ln for ln in p.stdout.splitlines() if " vended " in ln]
    assert vended and "amount 25.00 MRU" in vended[-1] and "quantity" not in p.stdout, p.stdout
    topup = [ln for ln in p.stdout.splitlines() if " topup " in ln]
    assert topup and "amount 25.00 MRU" in topup[-1] and "channel remote" in topup[-1], p.stdout
    result = [ln for ln in p.stdout.splitlines() if " result " in ln]
    assert result and "added 25.00 MRU" in result[-1] and "first yes" in result[-1], p.stdout
    for raw in ("{'", "True", "None", "2500000"):
        assert raw not in p.stdout, (raw, p.stdout)
    j = json.loads(mk("headend", "events", mid, "--db", chain["db"], "--json").stdout)
    v = [e for e in j["events"] if e["kind"] == "vended"][-1]
    assert v["data"]["quantity"] == 2500000 and v["data"]["what"] == "currency", v
    p = mk("headend", "reconcile", mid, "--db", chain["db"])
    assert " MRU" in p.stdout and "vended " in p.stdout, p.stdout
    j = json.loads(mk("headend", "reconcile", mid, "--db", chain["db"], "--json").stdout)
    assert isinstance(j["meters"][0]["vended_minor"], int)


def test_statements_with_no_readings_are_said_in_words(chain, tmp_path):
    mid = chain["info"]["meters"][0]["meter_id"]
    # a copy of the registry with no readings at all
    import sqlite3
    copy = tmp_path / "copy.db"
    src = sqlite3.connect(chain["db"])
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM readings")
    dst.execute("DELETE FROM messages")
    dst.commit()
    dst.close()
    p = mk("headend", "statements", mid, "--db", str(copy))
    assert p.returncode == 0 and "no statements for meter" in p.stdout, p.stdout


def test_malformed_set_time_is_refused_and_spends_no_sms_counter(chain):
    mid = chain["info"]["meters"][0]["meter_id"]
    for bad in (["unix=abc"], [], ["unix=5"], ["unix=1767571200", "extra=1"]):
        p = mk("headend", "sms-command", mid, "set_time", *bad, "--db", chain["db"])
        assert p.returncode == 2 and "set_time" in p.stderr and "Traceback" not in p.stderr, (bad, p.stderr)
    p = mk("headend", "command", mid, "set_time", "--db", chain["db"])
    assert p.returncode == 2 and "set_time needs unix" in p.stderr
    p = mk("headend", "sms-command", mid, "set_time", "unix=1767571200", "--db", chain["db"], "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["seq"] == 1, p.stdout   # nothing was spent before


@pytest.mark.parametrize("argv,needle", [
    (["headend", "topup", "X", "--amount", "nan"], "not a positive amount"),
    (["headend", "topup", "X", "--kwh", "0"], "not a positive amount"),
    (["headend", "topup", "X", "--amount", "1", "--wait", "nan"], "--wait"),
    # past the largest STS amount: the limit is said in the token's own unit (money here, not kWh)
    (["headend", "topup", "X", "--amount", "99999"], "amount 99999 currency units outside 0..182.01624 currency units"),
    (["headend", "topup", "X", "--kwh", "9999999"], "amount 9999999 kWh outside 0..1820162.4 kWh"),
])
def test_head_end_refusals_exit_2_without_traceback(chain, argv, needle):
    argv = list(argv)
    argv[2] = chain["info"]["meters"][0]["meter_id"]
    p = mk(*argv, "--db", chain["db"], "--keystore", chain["ks"])
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("argv,needle", [
    (["sim", "start", "--speed", "0"], "--speed"), (["sim", "start", "--speed", "-5"], "--speed"),
    (["sim", "start", "--speed", "nan"], "--speed"),
    (["sim", "run", "--days", "-1"], "--days"), (["sim", "run", "--days", "0"], "--days"),
    (["sim", "run", "--days", "1", "--fault", "bogus@10"], "unknown fault kind"),
    (["sim", "run", "--days", "1", "--fault", "silent@-5"], "bad fault"),
    (["sim", "start", "--broker", "mqtt://127.0.0.1:1"], "--headend"),
    (["sim", "start", "--headend", "/nonexistent/he.db"], "no head-end database"),
    (["headend", "serve", "--broker-port", "0", "--db", "/tmp/never-made.db"], "not a port"),
])
def test_sim_refusals_exit_2_without_traceback(argv, needle):
    p = mk(*argv)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, (p.returncode, p.stderr)


def test_sim_start_ended_by_sighup_removes_its_link(tmp_path):
    link = tmp_path / "m.pty"
    proc, _ = start_meter("--link", str(link))
    try:
        assert link.is_symlink()
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc, signal.SIGKILL)
    assert not link.exists() and not link.is_symlink()


def test_keys_typed_in_the_live_view_map_to_the_keypad():
    assert keys_from_text("12\r") == ["1", "2", "ENTER"]
    assert keys_from_text("e\rr\x7fn?") == ["EMERG", "ENTER", "RECONNECT", "BACK", "NEXT"]
    assert keys_from_text("]1[") == ["]", "1", "["]       # choose the meter the keypad is on


def _token_events(port):
    ev = json.loads(mk("device", "-p", str(port), "events", "--json").stdout or "{}")
    return [e[2] for e in ev.get("events", []) if "token" in e[2]]


def test_a_token_typed_in_the_live_view_reaches_the_chosen_meter(tmp_path):
    link = tmp_path / "m.pty"
    first, second = tmp_path / "m-1.pty", tmp_path / "m-2.pty"
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(COLUMNS="200", LINES="100")
        os.execv(METERKIT, [METERKIT, "sim", "start", "--meters", "2", "--link", str(link)])
    read_until, seen = _pty_reader(fd)
    try:
        read_until(b"[ ] other meter", timeout=90)
        os.write(fd, b"]12345678901234567890\r")      # the second meter's keypad
        got = []
        for _ in range(40):
            got = _token_events(second)
            if got:
                break
            read_until(None, timeout=0.5)      # keep the live view's output drained
        assert got, "no token event on the second meter after typing a token"
        assert _token_events(first) == [], "the first meter got the keys"
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                read_until(None, timeout=0.2)
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_meters_join_a_head_end_on_postgresql_as_on_a_sqlite_file(store_target, tmp_path):
    # `sim start --headend` took only an existing SQLite file: a PostgreSQL head-end could not be joined
    from host_tools.headend.store import Store
    from host_tools.sim.join import HeadendJoin
    Store(store_target).close()                      # the head-end's store, as `headend serve` makes it
    join = HeadendJoin(store_target, str(_keystore(tmp_path)), "mqtt://127.0.0.1:1883")
    try:
        rows = join.prepare(2)
        assert join.broker == ("127.0.0.1", 1883)
        ids = {r["meter_id"] for r in join.store.meters()}
        assert {r["meter_id"] for r in rows} <= ids and len(rows) == 2, (rows, ids)
    finally:
        join.close()


def test_a_head_end_database_that_does_not_exist_is_refused(tmp_path):
    from host_tools.errors import UsageError
    from host_tools.sim.join import HeadendJoin
    with pytest.raises(UsageError, match="no head-end database"):
        HeadendJoin(str(tmp_path / "none.db"), str(_keystore(tmp_path)), "mqtt://127.0.0.1:1883")
