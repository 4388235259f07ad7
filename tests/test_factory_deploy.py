"""`meterkit deploy`: the built application copied with mpremote (in-process, resume semantics) onto
the real MicroPython interpreter sitting behind a pty, then imported and run there."""
import json

import pytest
from mpremote.transport_serial import SerialTransport

from host_tools.build.builder import build
from host_tools.cli import main
from host_tools.deploy.ptyrepl import MicroPythonOnPty
from test_factory_build import make_tree


@pytest.fixture
def running_board(tmp_path):
    dev = tmp_path / "device"
    dev.mkdir()
    with MicroPythonOnPty(tmp_path / "tty", cwd=dev) as mp:
        yield mp, dev


def board_exec(port, code):
    t = SerialTransport(port)
    try:
        t.enter_raw_repl(soft_reset=False)
        out = t.exec(code)
        t.exit_raw_repl()
        return out.decode()
    finally:
        t.close()


def test_deploy_copies_the_app_and_it_runs_on_the_board(tmp_path, running_board, capsys):
    mp, dev = running_board
    src = make_tree(tmp_path / "src")
    build("sim", tmp_path / "build", source_root=src, versions={})
    rc = main(["deploy", "--port", mp.link, "--build-dir", str(tmp_path / "build"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert sorted(out["copied"]) == sorted(p.relative_to(tmp_path / "build/app").as_posix()
                                           for p in (tmp_path / "build/app").rglob("*") if p.is_file())
    assert (dev / "metering/meter.mpy").read_bytes() == (tmp_path / "build/app/metering/meter.mpy").read_bytes()
    # the interpreter is still the same process (no soft reset) and runs the deployed bytecode
    assert board_exec(mp.link, "import app\nprint(app.run(), app.__file__)").split() == ["42", "app.mpy"]
    assert mp.proc.poll() is None


def test_redeploy_skips_unchanged_files_and_copies_changed_ones(tmp_path, running_board, capsys):
    mp, _dev = running_board
    src = make_tree(tmp_path / "src")
    build("sim", tmp_path / "build", source_root=src, versions={})
    assert main(["deploy", "--port", mp.link, "--build-dir", str(tmp_path / "build"), "--json"]) == 0
    (src / "firmware/metering/meter.py").write_text("def total():\n    return 99\n")
    build("sim", tmp_path / "build", source_root=src, versions={})
    capsys.readouterr()
    assert main(["deploy", "--port", mp.link, "--build-dir", str(tmp_path / "build"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["copied"] == ["metering/meter.mpy"]
    assert "app.mpy" in out["unchanged"]
    assert board_exec(mp.link, "from metering import meter\nprint(meter.total())").strip() == "99"


def test_deploy_to_a_missing_port_says_so(tmp_path, capsys):
    src = make_tree(tmp_path / "src")
    build("sim", tmp_path / "build", source_root=src, versions={})
    rc = main(["deploy", "--port", str(tmp_path / "absent-port"), "--build-dir", str(tmp_path / "build"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3 and "cannot open the port" in out["error"]
    # said once: the port named once, with the reason (mpremote's own text names it again)
    assert out["error"].count("absent-port") == 1 and "no such file or directory" in out["error"], out
    rc = main(["deploy", "-p", str(tmp_path / "absent-port"), "--build-dir", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("absent-port") == 1 and err.count("\n") == 1, err


def test_deploy_port_auto_picks_the_one_meter(tmp_path, capsys, monkeypatch):
    from host_tools.device import ports
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [])
    monkeypatch.chdir(tmp_path)
    src = make_tree(tmp_path / "src")
    build("sim", tmp_path / "build", source_root=src, versions={})
    rc = main(["deploy", "-p", "auto", "--build-dir", str(tmp_path / "build"), "--json"])
    assert rc == 3 and "--port auto found no meter" in json.loads(capsys.readouterr().out)["error"]
    dev = tmp_path / "device"
    dev.mkdir()
    with MicroPythonOnPty(tmp_path / "board.meter", cwd=dev) as mp:
        rc = main(["deploy", "-p", "auto", "--build-dir", str(tmp_path / "build"), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out["port"].endswith("board.meter") and out["copied"], out
        assert mp.proc.poll() is None
    assert (dev / "app.mpy").exists()


def test_deploy_without_a_build_says_how_to_make_one(tmp_path, capsys):
    rc = main(["deploy", "--port", "/dev/null", "--build-dir", str(tmp_path / "none"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and "meterkit build" in out["hint"]
