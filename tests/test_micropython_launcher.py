"""The MicroPython the tools start (host_tools.paths.micropython_bin): the launcher in build/ runs the
venv's unix port with its arguments, heap cap, exit status and output, as the console script does."""
import subprocess

from host_tools import paths


def test_the_launcher_runs_the_unix_port_with_its_arguments_heap_cap_and_exit_status(tmp_path):
    exe = paths.micropython_bin()
    assert exe.startswith(str(paths.BUILD)), "the fast launcher was not used: %s" % exe
    script = tmp_path / "s.py"
    script.write_text("import sys, gc\nprint(sys.implementation.name, sys.argv[1:], gc.mem_free() < 70000)\n"
                      "sys.exit(3)\n")
    r = subprocess.run([exe, "-X", "heapsize=64k", str(script), "a", "b"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.split() == ["micropython", "['a',", "'b']", "True"], r.stdout
    for cmd in (exe, str(paths.venv_bin("micropython"))):      # as the console script does (both on stdout)
        r = subprocess.run([cmd, "-c", "raise ValueError('x')"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "ValueError: x" in r.stdout + r.stderr, (cmd, r.returncode, r.stdout, r.stderr)


def test_the_environment_overrides_the_launcher(monkeypatch):
    monkeypatch.setenv("METER_MICROPYTHON", "/opt/mp/micropython")
    assert paths.micropython_bin() == "/opt/mp/micropython"
