"""The technician's tools against a realtime simulated meter on a pty: `meterkit device` requests
rendered in units, `meterkit console` driven through a pty, `meterkit monitor`, `meterkit devs` and
`--port auto`, and a port error said once."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from cli_support import METERKIT, mk, start_meter, stop


@pytest.fixture(scope="module")
def meter(tmp_path_factory):
    d = tmp_path_factory.mktemp("meter")
    link = d / "meter1.pty"
    proc, info = start_meter("--seed", "3", "--link", str(link), cwd=d)
    try:
        assert info["service_port"] == str(link)
        yield {"port": str(link), "dir": d}
    finally:
        stop(proc)


def _pty_reader(fd):
    """read_until(needle): read the pty until `needle` shows, or fail saying what was seen."""
    seen = {"out": b""}

    def read_until(needle, timeout=30, start=0):
        """needle None: just drain what comes within `timeout`. `start`: look only at what came after
        that many bytes (a reply to the latest line, not an earlier one)."""
        end = time.monotonic() + timeout
        while (needle is None or needle not in seen["out"][start:]) and time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    seen["out"] += os.read(fd, 65536)
                except OSError:
                    break
        if needle is not None:
            assert needle in seen["out"][start:], "did not see %r in:\n%s" % (
                needle, seen["out"][start:][-3000:].decode(errors="replace"))
    return read_until, seen


def test_readings_are_shown_in_units_in_a_stable_order(meter):
    p = mk("device", "-p", meter["port"], "readings")
    assert p.returncode == 0, p.stderr
    lines = [ln.split()[0] for ln in p.stdout.splitlines() if ln.strip()]
    assert lines[:2] == ["voltage", "current"], p.stdout
    assert " V" in p.stdout and " Hz" in p.stdout and "urms_cv" not in p.stdout
    again = mk("device", "-p", meter["port"], "readings")
    assert [ln.split()[0] for ln in again.stdout.splitlines() if ln.strip()] == lines


def test_credit_is_money_and_json_stays_exact(meter):
    p = mk("device", "-p", meter["port"], "credit")
    assert p.returncode == 0 and "MRU" in p.stdout and "conserved" in p.stdout, p.stdout
    j = json.loads(mk("device", "-p", meter["port"], "credit", "--json").stdout)
    assert isinstance(j["credit"], int) and "id" not in j


def test_a_refused_token_exits_non_zero_and_says_why(meter):
    p = mk("device", "-p", meter["port"], "token", "1234", "5678", "9012", "3456", "7890")
    assert p.returncode == 1 and "REFUSED" in p.stdout, (p.returncode, p.stdout)
    bad = mk("device", "-p", meter["port"], "token", "12")
    assert bad.returncode == 2 and "not a token" in bad.stderr and "Traceback" not in bad.stderr


def test_relay_and_set_time_in_factory_mode(meter):
    p = mk("device", "-p", meter["port"], "relay", "open", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["supply"] == "open", p.stdout + p.stderr
    p = mk("device", "-p", meter["port"], "relay", "close", "--json")
    assert json.loads(p.stdout)["supply"] == "closed"
    p = mk("device", "-p", meter["port"], "set-time", "1780000000", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["time"] == 1780000000
    bad = mk("device", "-p", meter["port"], "set-time", "yesterday")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


def test_event_details_and_settings_read_as_words_and_units(meter):
    mk("device", "-p", meter["port"], "relay", "open", "--json")
    mk("device", "-p", meter["port"], "relay", "close", "--json")
    p = mk("device", "-p", meter["port"], "events")
    assert p.returncode == 0 and "safe mode no" in p.stdout and "open yes" in p.stdout, p.stdout
    for raw in ("True", "False", "None", "{"):
        assert raw not in p.stdout, (raw, p.stdout)
    p = mk("device", "-p", meter["port"], "config")
    assert p.returncode == 0, p.stderr
    rows = {re.split(r"\s{2,}", ln.strip())[0]: ln for ln in p.stdout.splitlines() if ln.strip()}
    assert "MRU" in rows["opening credit"] and "MRU/kWh" in rows["block 1"], p.stdout
    assert "commit at least every" in rows and "commit after" in rows and "commit" not in rows, p.stdout
    assert "tariff 1" in rows and "{" not in p.stdout and "[" not in p.stdout, p.stdout
    j = json.loads(mk("device", "-p", meter["port"], "config", "--json").stdout)
    assert j["settings"]["prepaid"]["commit_s"] > 0 and isinstance(j["settings"]["prepaid"]["tariff"]["tariffs"], list)


def test_console_session_through_a_pty(meter, tmp_path):
    hist = tmp_path / "hist"
    pid, fd = pty.fork()
    if pid == 0:   # the child: the console, as a person runs it in a terminal
        os.environ["COLUMNS"] = "120"
        os.execv(METERKIT, [METERKIT, "console", "-p", meter["port"], "--history", str(hist)])
    read_until, seen = _pty_reader(fd)
    try:
        read_until(b"> ")
        os.write(fd, b"credit\n")
        read_until(b"MRU")
        os.write(fd, b"1234 5678 9012 3456 7890\n")
        read_until(b"REFUSED")
        os.write(fd, b"relay sideways\n")
        read_until(b"error: relay needs open or close")
        os.write(fd, b"quit\n")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert b"connected to unprovisioned" in seen["out"]
    assert "credit" in hist.read_text() and "quit" in hist.read_text()


def test_console_recalls_a_line_with_the_up_arrow_and_completes_a_request_with_tab(meter, tmp_path):
    """As a person types: `tot` + Tab completes to `totals` (the meter answers with its energy), the
    up arrow recalls that line and Enter sends it again (answered again); the history of an earlier
    session is recalled too."""
    hist = tmp_path / "hist"
    hist.write_text("status\n")                   # a line from an earlier session
    pid, fd = pty.fork()
    if pid == 0:   # the child: the console, as a person runs it in a terminal
        os.environ.update(COLUMNS="120", TERM="xterm")
        os.execv(METERKIT, [METERKIT, "console", "-p", meter["port"], "--history", str(hist)])
    read_until, seen = _pty_reader(fd)
    try:
        read_until(b"> ")
        mark = len(seen["out"])
        os.write(fd, b"tot\t")                       # Tab: the one request starting `tot`
        read_until(b"totals", start=mark)
        os.write(fd, b"\r")
        read_until(b"imported", start=mark)          # the meter's totals, rendered
        read_until(b"> ", start=len(seen["out"]) - 2)
        mark = len(seen["out"])
        os.write(fd, b"\x1b[A")                      # up arrow: the line just sent
        read_until(b"totals", start=mark)
        os.write(fd, b"\r")
        read_until(b"imported", start=mark)          # answered again: the recalled line was sent
        read_until(b"kWh", start=mark)
        read_until(b"> ", start=len(seen["out"]) - 2)
        mark = len(seen["out"])
        os.write(fd, b"\x1b[A\x1b[A")                # twice: the earlier session's line
        read_until(b"status", start=mark)
        os.write(fd, b"\r")
        read_until(b"uptime", start=mark)            # the meter's status reply
        os.write(fd, b"quit\r")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    # the history: the earlier session's line, then this one's (a line repeated at once is kept once)
    assert hist.read_text().splitlines()[-4:] == ["status", "totals", "status", "quit"], hist.read_text()


def test_monitor_streams_readings_and_events_as_json_lines(meter):
    p = mk("monitor", "-p", meter["port"], "--count", "2", "--interval", "0.2", "--json")
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert p.returncode == 0 and len([x for x in lines if "readings" in x]) == 2, p.stdout
    assert all(20000 < x["readings"]["urms_cv"] < 26000 for x in lines if "readings" in x)


def test_devs_lists_the_simulated_meter_and_port_auto_picks_it(meter):
    p = mk("devs", "--json", cwd=str(meter["dir"]))
    ports = json.loads(p.stdout)["ports"]
    assert any(c["port"].endswith("meter1.pty") and c["meter"] for c in ports), ports
    p = mk("device", "-p", "auto", "ping", "--json", cwd=str(meter["dir"]))
    assert p.returncode == 0 and json.loads(p.stdout)["board"] == "sim", p.stderr


def test_port_auto_with_no_meter_and_a_missing_port_are_said_once(tmp_path):
    p = mk("device", "-p", "auto", "ping", cwd=str(tmp_path))
    assert p.returncode == 3 and "found no meter" in p.stderr
    p = mk("device", "--port", str(tmp_path / "nope"), "ping")
    assert p.returncode == 3 and p.stderr.count("nope") == 1 and p.stderr.lower().count("no such file") == 1, p.stderr


def test_version_and_short_flags():
    p = mk("--version")
    assert p.returncode == 0 and p.stdout.startswith("meterkit ")
    p = mk("calibrate", "--help")
    assert "-b BENCH" in p.stdout and "-p PORT" in p.stdout


def test_defaults_live_in_the_working_folder_or_the_data_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("METERKIT_DATA", "METERKIT_HEADEND_DB")}
    p = subprocess.run([METERKIT, "headend", "meters"], capture_output=True, text=True, cwd=str(work), env=env,
                       timeout=60)
    assert p.returncode == 2 and str(work / "headend.db") in p.stderr, p.stderr
    data = tmp_path / "data"
    data.mkdir()
    p = subprocess.run([METERKIT, "headend", "meters"], capture_output=True, text=True, cwd=str(work),
                       env=dict(env, METERKIT_DATA=str(data)), timeout=60)
    assert str(data / "headend.db") in p.stderr, p.stderr
    p = subprocess.run([METERKIT, "calibrate", "-b", "sim", "--json"], capture_output=True, text=True,
                       cwd=str(work), env=env, timeout=300)
    rep = json.loads(p.stdout)["report"]
    assert rep["json"].startswith(str(work / "certificates")), rep
    assert (work / "lab-signing-key.pem").exists() and (work / "lab-register.sqlite").exists()
