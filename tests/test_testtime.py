"""`make test` records its own time (host_tools/testtime.py) and `make bench` carries it."""
import json
import subprocess
import sys

from host_tools import testtime


def test_the_suite_time_is_recorded_with_the_outcome_and_carried_into_the_bench(tmp_path):
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    (tmp_path / "test_bad.py").write_text("def test_bad():\n    assert 1 + 1 == 3\n")
    rec = tmp_path / "make_test.json"
    assert testtime.run(["-q", "-p", "no:cacheprovider", str(tmp_path / "test_ok.py")], record=rec) == 0
    got = json.loads(rec.read_text())
    assert got["passed"] is True and got["exit_status"] == 0 and got["wall_seconds"] > 0, got
    assert got["cpu_seconds"] > 0 and got["commit"], got
    fig = testtime.bench_figures(rec)
    assert fig["make_test_wall_seconds"] == got["wall_seconds"] and fig["make_test_passed"] is True
    assert testtime.run(["-q", "-p", "no:cacheprovider", str(tmp_path / "test_bad.py")], record=rec) == 1
    assert json.loads(rec.read_text())["passed"] is False
    assert testtime.bench_figures(tmp_path / "absent.json") == {}


def test_the_module_exits_with_pytests_status(tmp_path):
    (tmp_path / "test_bad.py").write_text("def test_bad():\n    assert False\n")
    p = subprocess.run([sys.executable, "-c", "import sys; from host_tools import testtime; "
                        "sys.exit(testtime.run(['-q', '-p', 'no:cacheprovider', sys.argv[1]], "
                        "record=__import__('pathlib').Path(sys.argv[2])))",
                        str(tmp_path / "test_bad.py"), str(tmp_path / "rec.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "failed, status 1" in p.stdout
