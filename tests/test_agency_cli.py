"""`meterkit agency serve|import|operator`: serves the app over a head-end database, loads customers and
accounts; bad input answers one line and a non-zero exit, never a traceback."""
import os
import subprocess
import sys
import time

import httpx

from host_tools.agency.server import free_port
from host_tools.headend.demo import make_fleet

CLI = [sys.executable, "-m", "host_tools.cli", "agency"]


def _run(*args, env=None, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_import_operator_and_serve(tmp_path):
    csv_path, ks, rows = make_fleet(str(tmp_path / "fleet"), 2)
    db = str(tmp_path / "he.db")
    subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "import", csv_path, "--db", db], check=True,
                   capture_output=True)
    cust = tmp_path / "customers.csv"
    cust.write_text("name,phone,meters,language,channels\nAmina,+22236111111,%s,ar,sms\n" % rows[0]["meter_id"])
    r = _run("import", str(cust), "--db", db, "--json")
    assert r.returncode == 0 and '"imported": 1' in r.stdout, r.stderr
    r = _run("operator", "chef", "--role", "admin", "--db", db, "--json", env={"METERKIT_OPERATOR_PASSWORD": "longenough1"})
    assert r.returncode == 0, r.stderr
    port = free_port()
    p = subprocess.Popen(CLI + ["serve", "--db", db, "--keystore", ks, "--bind", "127.0.0.1:%d" % port,
                                "--duration-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "agency serving on http://127.0.0.1:%d" % port in line, (line, p.stderr.read() if p.poll() else "")
        c = httpx.Client(base_url="http://127.0.0.1:%d" % port)
        assert c.post("/op/signin", data={"username": "chef", "password": "longenough1"}).status_code == 303
        assert rows[0]["meter_id"] in c.get("/op/fleet").text
        r = c.post("/signin", data={"phone": "+22236111111"})
        assert r.status_code == 303
        time.sleep(0.2)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
    assert "[sms to +22236111111]" in err and "رمزك" in err      # no gateway configured: printed, in Arabic
    assert p.returncode == 0


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    db = str(tmp_path / "none.db")
    plain = tmp_path / "old-keystore.json"       # a keystore from before the secure module
    plain.write_text('{"vending_key_hex": "%s", "kt": 2}' % ("ab" * 20))
    for args, text in ((["serve", "--db", db, "--bind", "nowhere"], "--bind 'nowhere' is not HOST:PORT"),
                       (["serve", "--db", db, "--bind", "127.0.0.1:1", "--keystore", str(plain)],
                        "holds the vending key in plain text"),
                       (["import", str(tmp_path / "x.csv"), "--db", db], "no head-end database"),
                       (["scenario", "--customers", "1", "--provider-faults", "2"], "--provider-faults must be")):
        r = _run(*args)
        assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    csv_path, ks, rows = make_fleet(str(tmp_path / "fleet"), 1)
    subprocess.run([sys.executable, "-m", "host_tools.cli", "headend", "import", csv_path, "--db", db], check=True,
                   capture_output=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone,meters\nX,12345,%s\n" % rows[0]["meter_id"])
    r = _run("import", str(bad), "--db", db)
    assert r.returncode == 2 and "line 2" in r.stderr and "international form" in r.stderr
    r = _run("operator", "x", "--db", db, env={"METERKIT_OPERATOR_PASSWORD": "short"})
    assert r.returncode == 2 and "at least 8 characters" in r.stderr
