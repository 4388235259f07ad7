"""The production layout: `meterkit build --frozen` writes a data-only file system (main.py, board.json,
defaults) and names the mode in its manifest; development builds say what they are. The simulated meter
runs the frozen layout with the application in a directory standing for `.frozen` AFTER the file
system on the search path (as on the ESP32), and nothing on the file system shadows it; a module that
were on the file system would (the search order is the chip's)."""
import json
import shutil
import subprocess
import sys

from host_tools.build.builder import build, frozen_module_names, shadowing
from host_tools.build.image import read_image
from host_tools.cli import main
from host_tools.paths import micropython_bin
from host_tools.sim.esp32.fwbuild import frozen_layout, search_path
from host_tools.sim.esp32.runner import SimMeter


def test_frozen_build_is_data_only_and_names_its_mode(tmp_path, capsys):
    assert main(["build", "--board", "esp32_atm90e26", "--frozen", "--out", str(tmp_path / "f"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "frozen"
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert m["mode"] == "frozen" and m["frozen_manifest"] == "boards/esp32_atm90e26/manifest.py"
    files = read_image((tmp_path / "f" / "fs.img").read_bytes(), 4096)
    assert set(files) <= {"/main.py", "/board.json", "/defaults.json"} and "/main.py" in files
    assert not [p for p in files if p.endswith((".mpy", ".py")) and p != "/main.py"]
    assert not shadowing(files, frozen_module_names("esp32_atm90e26"))


def test_a_production_image_carries_the_update_signing_keys_it_trusts(tmp_path, capsys):
    from host_tools.ota import keys
    # two keys (a manufacturer rolls its key over: the old and the new are both trusted for a while)
    assert main(["ota", "keygen", "--out", str(tmp_path / "maker-a.pem")]) == 0
    assert main(["ota", "keygen", "--out", str(tmp_path / "maker-b.pem")]) == 0
    pubs = [str(tmp_path / "maker-a.pub.pem"), str(tmp_path / "maker-b.pub.pem")]
    capsys.readouterr()
    argv = ["build", "--board", "esp32_atm90e26", "--frozen", "--out", str(tmp_path / "f"), "--json"]
    assert main(argv + ["--ota-key", pubs[0], "--ota-key", pubs[1]]) == 0
    assert not json.loads(capsys.readouterr().out)["warnings"]
    files = read_image((tmp_path / "f" / "fs.img").read_bytes(), 4096)
    trust = json.loads(files["/ota_trust.json"])
    assert trust == keys.trust_entry_file([keys.load_public(p) for p in pubs]), trust
    assert len(trust["keys"]) == 2
    # without a key the production build says the meter will refuse every update
    assert main(argv) == 0
    assert any("--ota-key" in w for w in json.loads(capsys.readouterr().out)["warnings"])
    # a file that is not a key is a one-line refusal, and nothing is written
    (tmp_path / "junk.pem").write_text("not a key")
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", *argv[:-1], "--out", str(tmp_path / "g"),
                        "--ota-key", str(tmp_path / "junk.pem")], capture_output=True, text=True)
    assert p.returncode == 2 and "not a PEM public key" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "g" / "fs.img").exists()


def test_development_build_says_so_and_names_its_mode(tmp_path, capsys):
    assert main(["build", "--board", "sim", "--out", str(tmp_path / "d"), "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["mode"] == "development" and "development mode" in cap.err
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["mode"] == "development"
    files = read_image((tmp_path / "d" / "fs.img").read_bytes(), 4096)
    assert "/app/composition.mpy" in files and "/board.mpy" in files, sorted(files)


def test_shadowing_names_files_and_folders_an_import_would_find_first():
    names = frozen_module_names("sim")
    assert {"app", "app.composition", "board", "comms", "comms.at", "metering.meter"} <= names and "main" not in names
    found = shadowing({"/prepaid.mpy": b"", "/app/0001.log": b"", "/comms/at.py": b"", "/main.py": b"",
                       "/settings.json": b"", "/board.json": b""}, names)
    assert found == ["/app", "/comms", "/prepaid.mpy"], found


def _import_origins(fs_dir, frozen_dir, names=None):
    """Import every frozen module under the meter's own search path; return {module: file it came from}."""
    names = names or sorted(n for n in frozen_module_names("sim"))
    probe = fs_dir / "probe_imports.py"
    probe.write_text("import sys\nfor n in %r:\n    m = __import__(n)\n    for p in n.split('.')[1:]:\n"
                     "        m = getattr(m, p)\n    print(n, getattr(m, '__file__', '?'))\n" % names)
    env = {"MICROPYPATH": search_path(fs_dir, frozen_dir), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([micropython_bin(), "-X", "heapsize=2m", str(probe)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def test_in_the_frozen_layout_every_app_module_comes_from_frozen(tmp_path):
    fs_src, frozen_dir = frozen_layout("sim")
    fs_dir = tmp_path / "fs"
    shutil.copytree(fs_src, fs_dir)
    origins = _import_origins(fs_dir, frozen_dir)
    assert len(origins) == len(frozen_module_names("sim"))
    stray = {n: f for n, f in origins.items() if not f.startswith(str(frozen_dir))}
    assert not stray, f"modules not imported from the frozen directory: {stray}"
    # the search order is the chip's: a module on the file system would win over the frozen one
    (fs_dir / "board.py").write_text("SHADOW = 1\n")
    assert _import_origins(fs_dir, frozen_dir, ["board"])["board"] == str(fs_dir / "board.py")


def test_a_simulated_meter_runs_the_frozen_layout(tmp_path):
    m = SimMeter(seed=3, frozen=True, workdir=tmp_path)
    try:
        assert sorted(p.name for p in m.fw_dir.iterdir() if p.suffix in (".py", ".mpy")) == ["main.py"]
        m.run_for(120)
        st = m.request("status")
        assert st["polls"] > 0, st
    finally:
        m.close()
