"""UART0 of a simulated ESP32 has REPL semantics: while the application leaves keyboard interrupt on, a
Ctrl-C stops it and mpremote gets a REPL over the board's file system (until the armed watchdog resets
the board and the meter comes back); once the application has called `micropython.kbd_intr(-1)`, a
Ctrl-C and a raw-REPL request are only bytes to it: a provisioned meter keeps running, locked."""
import json
import subprocess
import time

import pytest
import serial

from host_tools.build.builder import build
from host_tools.build.image import make_image, read_image
from host_tools.device.client import ServiceClient
from host_tools.errors import DeviceError
from host_tools.flash import imagegen
from host_tools.paths import venv_bin
from host_tools.provision.line import provision
from host_tools.provision.simline import SimMeterProcess, flash_boards, heap_env

LOCKED_MAIN = b"import micropython\nmicropython.kbd_intr(-1)\nfrom app.guard import run\nrun()\n"
# An application without the guard (firmware/app/guard.py locks the console first): keyboard interrupt left
# on, watchdog armed - what the simulated ESP32 must stop on a Ctrl-C and then hand to mpremote.
OPEN_MAIN = (b"import board\nfrom app.startup import Startup\nfrom app.composition import App\nb = board.Board()\n"
             b"b.watchdog.start(8000)\nApp(b, Startup(b)).run()\n")

pytestmark = pytest.mark.timeout(300)


def mpremote(port, code, timeout=60):
    """mpremote's exit status and output; a run that never gets a raw REPL waits forever, so it is
    stopped after `timeout` seconds and counts as refused (returncode None)."""
    try:
        return subprocess.run([venv_bin("mpremote"), "connect", port, "resume", "exec", code],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, None, e.stdout or "", e.stderr or "")


def ping_within(port, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with ServiceClient(port, timeout=2) as c:
                return c.call("ping")
        except DeviceError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repl")
    build("sim", tmp / "build", versions={}, frozen=True)
    (tmp / "fw.bin").write_bytes(imagegen.combined())
    files = read_image((tmp / "build" / "fs.img").read_bytes(), 4096)
    files["/main.py"] = LOCKED_MAIN   # what the lock-down's main.py does first
    (tmp / "locked.img").write_bytes(make_image(files, 4096, 512))
    files["/main.py"] = OPEN_MAIN
    (tmp / "open.img").write_bytes(make_image(files, 4096, 512))
    for d in ("open", "locked"):
        (tmp / d).mkdir()
    open_flash = flash_boards(tmp / "open", 1, tmp / "fw.bin", tmp / "open.img")[0]
    locked_flash = flash_boards(tmp / "locked", 1, tmp / "fw.bin", tmp / "locked.img")[0]
    return tmp, open_flash, locked_flash


@pytest.mark.long
def test_ctrl_c_stops_an_app_that_allows_it_and_mpremote_gets_the_repl_until_the_watchdog(boards):
    tmp, flash, _ = boards
    meter = SimMeterProcess(flash, tmp / "meter-open", env=heap_env(tmp, None))
    try:
        ping_within(meter.port, 10)
        r = mpremote(meter.port, "import os; print(sorted(os.listdir()))")
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout.strip().replace("'", '"'))
        assert "main.py" in listed and "board.json" in listed, listed
        assert "KeyboardInterrupt" in (tmp / "meter-open" / "firmware.log").read_text()
        assert ping_within(meter.port, 30)["pong"]  # the watchdog reset the board: the meter is back
    finally:
        meter.stop()


@pytest.mark.long
def test_ctrl_c_and_raw_repl_change_nothing_once_the_app_disabled_keyboard_interrupt(boards):
    tmp, _, flash = boards
    ks = tmp / "keystore.json"
    ks.write_text(json.dumps({"iin": "600727", "base_date": "14",
                              "broker": {"host": "127.0.0.1", "port": 1883}}))
    meter = SimMeterProcess(flash, tmp / "meter-locked", env=heap_env(tmp, None))
    try:
        r = provision(meter.port, str(ks), sgc="123457", ti=1, operator="repl-test", db=str(tmp / "rec.sqlite"))
        with serial.Serial(meter.port, timeout=0.5) as ser:
            ser.write(b"\r\x03\x03")        # what mpremote sends to interrupt
            time.sleep(0.5)
            ser.write(b"\r\x01")            # raw REPL request
            time.sleep(0.5)
            got = ser.read(4096)
        assert b"raw REPL" not in got and b">>>" not in got, got
        # mpremote on a REPL that answers finishes in about a second; one that never gets the raw REPL
        # waits for ever, so 6 s tells them apart
        rm = mpremote(meter.port, "import os; print(os.listdir())", timeout=6)
        out = rm.stdout.decode() if isinstance(rm.stdout, bytes) else rm.stdout
        assert rm.returncode != 0 and "board.json" not in out, (rm.returncode, out)
        with serial.Serial(meter.port, timeout=0.5) as ser:
            ser.write(b"\n")  # end the line of junk the app was sent, as any line-protocol client resyncs
        with ServiceClient(meter.port, timeout=10) as c:
            ident = c.call("identity")
        assert ident["provisioned"] and not ident["factory_mode"] and ident["pan"] == r["pan"]
        log = (tmp / "meter-locked" / "firmware.log").read_text()
        assert "KeyboardInterrupt" not in log and not (tmp / "meter-locked" / "uart0-repl").exists()
    finally:
        meter.stop()
