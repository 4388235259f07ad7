"""`meterkit build`: reproducible littlefs images holding the compiled application, mountable by
littlefs-python and by MicroPython itself, whose .mpy files run under the real interpreter."""
import json
import shutil
from pathlib import Path

import pytest
from mpyrun import run_micropython

from host_tools.build import mpycheck
from host_tools.build.builder import build
from host_tools.build.image import read_image
from host_tools.cli import main

ROOT = Path(__file__).resolve().parent.parent

FAKE = {
    "firmware/app.py": "from metering import meter\n\ndef run():\n    return meter.total() + 1\n",
    "firmware/metering/__init__.py": "",
    "firmware/metering/meter.py": "from micropython import const\n_BASE = const(40)\n\ndef total():\n    return _BASE + 1\n",
    "firmware/metering/fastsum.py": (
        "import micropython\n\n@micropython.native\ndef add3(a, b, c):\n    return a + b + c\n"),
    "firmware/main.py": "import app\nprint(app.run())\n",
    "firmware/defaults.json": '{"friendly_hours": [18, 6]}\n',
    "boards/sim/board.py": "class Board:\n    name = 'fake-sim'\n",
}


def make_tree(root, files=FAKE):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "boards/sim").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "boards/sim/board.json", root / "boards/sim/board.json")
    return root


FIXED_VERSIONS = {"mpy_cross": "x", "micropython_unix": "x", "littlefs_python": "x"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("build")
    src = make_tree(base / "src")
    m = build("sim", base / "out", source_root=src)
    return src, base / "out", m


def test_same_tree_builds_byte_identical_image_and_manifest(built, tmp_path):
    src, out, first = built
    again = build("sim", tmp_path / "again", source_root=src, versions=first["versions"])
    assert (tmp_path / "again/fs.img").read_bytes() == (out / "fs.img").read_bytes()
    a = json.loads((out / "manifest.json").read_text())
    b = json.loads((tmp_path / "again/manifest.json").read_text())
    assert a == b


def test_changed_source_changes_image(built, tmp_path):
    src, out, _ = built
    other = make_tree(tmp_path / "src", dict(FAKE, **{"firmware/metering/meter.py": "def total():\n    return 1\n"}))
    build("sim", tmp_path / "o", source_root=other, versions=FIXED_VERSIONS)
    assert (tmp_path / "o/fs.img").read_bytes() != (out / "fs.img").read_bytes()


def test_image_mounts_back_with_every_file_and_manifest_hashes(built):
    _src, out, m = built
    image = (out / "fs.img").read_bytes()
    assert len(image) == 2097152  # vfs_size of the sim board: 512 blocks of 4096
    files = read_image(image, 4096)
    assert sorted(files) == sorted([
        "/app.mpy", "/metering/__init__.mpy", "/metering/meter.mpy", "/metering/fastsum.mpy",
        "/main.py", "/board.mpy", "/board.json", "/defaults.json"])
    assert files["/main.py"] == FAKE["firmware/main.py"].encode()  # main.py stays source
    assert files["/app.mpy"][:1] == b"M"  # an .mpy header
    import hashlib
    for path, data in files.items():
        assert m["files"][path]["sha256"] == hashlib.sha256(data).hexdigest(), path
    assert m["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert m["files"]["/metering/fastsum.mpy"]["kind"] == "native-host"
    assert m["files"]["/metering/meter.mpy"]["kind"] == "bytecode"
    assert set(m["versions"]) == {"mpy_cross", "micropython_unix", "littlefs_python"}


def test_built_mpy_files_import_and_run_under_micropython(built):
    _src, out, _ = built
    # MICROPYPATH only the unpacked image: nothing can come from firmware/ sources
    code = "import app\nfrom metering import fastsum\nprint(app.run(), fastsum.add3(1, 2, 3))\nprint(app.__file__)"
    got = run_micropython(code, heap="96k", env={"MICROPYPATH": str(out / "app")})
    lines = got.splitlines()
    assert lines[0] == "42 6"
    assert lines[1].endswith("app.mpy")


def test_micropython_mounts_the_image_itself_and_runs_main(built):
    _src, out, _ = built
    code = f"""
import os, sys
class Dev:
    def __init__(s, path):
        s.f = open(path, 'rb')
    def readblocks(s, b, buf, off=0):
        s.f.seek(b * 4096 + off)
        s.f.readinto(buf)
    def writeblocks(s, b, buf, off=0):
        raise OSError(30)
    def ioctl(s, op, arg):
        return 512 if op == 4 else 4096 if op == 5 else 0
os.mount(os.VfsLfs2(Dev({str(out / 'fs.img')!r})), '/img', readonly=True)
sys.path.insert(0, '/img')
print(sorted(os.listdir('/img')))
exec(open('/img/main.py').read())
"""
    got = run_micropython(code, heap="96k", env={"MICROPYPATH": ".frozen"})
    lines = got.splitlines()
    assert "app.mpy" in lines[0] and "metering" in lines[0]
    assert lines[-1] == "42"


def test_esp32_build_marks_native_code_for_xtensawin(tmp_path):
    src = make_tree(tmp_path / "src")
    (src / "boards/esp32_atm90e26").mkdir(parents=True)
    shutil.copy(ROOT / "boards/esp32_atm90e26/board.json", src / "boards/esp32_atm90e26/board.json")
    (src / "boards/esp32_atm90e26/board.py").write_text("class Board:\n    pass\n")
    m = build("esp32_atm90e26", tmp_path / "out", source_root=src, versions=FIXED_VERSIONS)
    assert m["files"]["/metering/fastsum.mpy"]["kind"] == "native-xtensawin"
    # the host refuses xtensa machine code: proof the right -march was used
    code = "try:\n    from metering import fastsum\n    print('loaded')\nexcept ValueError as e:\n    print('refused', e)"
    got = run_micropython(code, env={"MICROPYPATH": str(tmp_path / "out/app")})
    assert got.startswith("refused") and "arch" in got
    got = run_micropython("import app\nprint(app.run())", env={"MICROPYPATH": str(tmp_path / "out/app")})
    assert got.strip() == "42"  # bytecode built for the ESP32 also runs on the host


def test_missing_board_module_is_a_warning_and_missing_defaults_is_fine(tmp_path):
    files = {k: v for k, v in FAKE.items() if k not in ("boards/sim/board.py", "firmware/defaults.json")}
    src = make_tree(tmp_path / "src", files)
    m = build("sim", tmp_path / "out", source_root=src, versions=FIXED_VERSIONS)
    assert "/board.mpy" not in m["files"] and "/defaults.json" not in m["files"]
    assert any("board.py is missing" in w for w in m["warnings"])


def test_syntax_error_fails_build_and_leaves_previous_build_intact(built, tmp_path):
    src = make_tree(tmp_path / "src", dict(FAKE, **{"firmware/bad.py": "def f(:\n"}))
    out = tmp_path / "out"
    good = make_tree(tmp_path / "good")
    build("sim", out, source_root=good, versions=FIXED_VERSIONS)
    before = (out / "fs.img").read_bytes()
    from host_tools.errors import UsageError
    with pytest.raises(UsageError, match="bad.py"):
        build("sim", out, source_root=src, versions=FIXED_VERSIONS)
    assert (out / "fs.img").read_bytes() == before


def test_unknown_board_is_a_usage_error_exit_2(capsys, tmp_path):
    rc = main(["build", "--board", "nope", "--out", str(tmp_path / "o"), "--json"])
    assert rc == 2
    out = json.loads(capsys.readouterr().out)
    assert "nope" in out["error"] and "hint" in out
    assert not (tmp_path / "o").exists()


def test_build_cli_on_real_tree_prints_one_json_object(capsys, tmp_path):
    rc = main(["build", "--board", "sim", "--out", str(tmp_path / "o"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    files = read_image((tmp_path / "o/fs.img").read_bytes(), 4096)
    fw = [p.relative_to(ROOT / "firmware").as_posix() for p in (ROOT / "firmware").rglob("*.py")
          if "__pycache__" not in p.parts]
    for rel in fw:
        want = "/" + rel if rel == "main.py" else "/" + rel[:-3] + ".mpy"
        assert want in files, want
    assert out["files"] == len(files)


def test_mpycheck_reports_the_file_that_does_not_compile(tmp_path, capsys):
    src = make_tree(tmp_path / "src", dict(FAKE, **{"firmware/bad.py": "x = (1,\n"}))
    assert mpycheck.main([str(src)]) == 1
    out = capsys.readouterr().out
    assert "FAIL firmware/bad.py" in out and "FAIL firmware/app.py" not in out
    good = make_tree(tmp_path / "good")
    assert mpycheck.main([str(good)]) == 0
