"""Factory line throughput: build the application once, then flash simulated ESP32s (each its own
`meterkit sim esp32` process on a pty) one at a time and four at once; report boards per hour.
The simulated ROM answers at pty speed, so this measures the host side (esptool, compression, MD5,
our orchestration), not a real board's 115200-baud link."""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.build.builder import build
from host_tools.flash import imagegen, parttable
from host_tools.flash.flasher import flash_many
from host_tools.paths import board_dir

BOARD = "esp32_atm90e26"
APP_BYTES = 1_500_000  # about a MicroPython ESP32 app with the meter frozen in (fits a 1.5 MB OTA slot)
ROUNDS = 2             # boards per port in each measurement


def real_size_firmware():
    """A valid combined image (bootloader, the board's own partition table, a 1.5 MB app) built with
    esptool's image classes: what the line flashes, at its real size."""
    table = parttable.from_csv((board_dir(BOARD) / "partitions.csv").read_text())
    return imagegen.combined(app_size=APP_BYTES, entries=table)


def _start_sims(tmp, n):
    procs = []
    for i in range(n):
        p = subprocess.Popen([sys.executable, "-m", "host_tools.cli", "sim", "esp32", "--link", str(tmp / f"esp{i}"),
                              "--flash", str(tmp / f"flash{i}.bin"), "--index", str(i), "--json"],
                             stdout=subprocess.PIPE, text=True)
        json.loads(p.stdout.readline())  # ready
        procs.append(p)
    return procs


def _stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=10)


def _boards_per_hour(tmp, parallel, firmware, image):
    procs = _start_sims(tmp, parallel)
    try:
        ports = [str(tmp / f"esp{i}") for i in range(parallel)]
        t0 = time.monotonic()
        for _ in range(ROUNDS):
            results = flash_many(ports, BOARD, firmware, image, show_progress=False)
            bad = [r for r in results if not r["ok"]]
            if bad:
                raise RuntimeError(f"flashing failed during the benchmark: {bad[0]['port']}: {bad[0]['error']}")
        elapsed = time.monotonic() - t0
    finally:
        _stop(procs)
    return round(3600 * parallel * ROUNDS / elapsed, 1)


def run():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.monotonic()
        m = build(BOARD, tmp / "build", frozen=True)
        build_s = time.monotonic() - t0
        fw = tmp / "firmware.bin"
        fw.write_bytes(real_size_firmware())
        image = tmp / "build" / "fs.img"
        fw_size = fw.stat().st_size
        one = _boards_per_hour(tmp, 1, fw, image)
        four = _boards_per_hour(tmp, 4, fw, image)
    return {
        "factory_build_seconds": round(build_s, 2),
        "factory_build_files": len(m["files"]),
        "factory_firmware_bytes": fw_size,
        "factory_flash_boards_per_hour_1": one,
        "factory_flash_boards_per_hour_4_parallel": four,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
