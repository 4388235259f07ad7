"""The simulated factory line, for the end-to-end test and the benchmark: simulated ESP32s flashed
with esptool, then each booted as a simulated meter from its flash file (`meterkit sim start --json
--flash FILE`, a realtime subprocess) whose service pty the line tools talk to.

`heap` overrides the firmware's MicroPython heap (the simulator passes -X heapsize=96k) through a
small wrapper named by METER_MICROPYTHON; None keeps the simulator's own."""
import json
import os
import subprocess
import sys

from host_tools.errors import SimulationError
from host_tools.flash.flasher import flash_many
from host_tools.flash.layout import board_info
from host_tools.flash.rom_link import start_rom
from host_tools.paths import micropython_bin

BOARD = "sim"


def sim_board_on_esp32():
    """The sim board's flash layout on a simulated ESP32 chip (the sim board's own mcu is the unix port)."""
    return dict(board_info(BOARD), mcu="esp32")


def flash_boards(workdir, n, firmware, fs_image, first_index=0, flash_size=4 << 20, **opts):
    """Flash n simulated ESP32s (of `flash_size` bytes) at once; returns their flash files. Raises if
    any board failed. `opts` go to flash_many (seal=True: encrypted, eFuses burnt)."""
    flashes = [workdir / f"flash{first_index + i}.bin" for i in range(n)]
    roms = [start_rom(flashes[i], link=workdir / f"esp{first_index + i}", index=first_index + i,
                      flash_size=flash_size) for i in range(n)]
    try:
        results = flash_many([r.port for r in roms], sim_board_on_esp32(), firmware, fs_image, show_progress=False,
                             **opts)
    finally:
        for r in roms:
            r.stop()
    bad = [r for r in results if not r["ok"]]
    if bad:
        raise SimulationError(f"flashing failed: {bad[0]['port']}: {bad[0]['error']}", hint=bad[0].get("hint"))
    return flashes


def heap_env(workdir, heap):
    """Environment for `meterkit sim start` subprocesses, with the firmware heap set to `heap`."""
    env = dict(os.environ)
    if heap:
        w = workdir / "micropython-heap.sh"
        w.write_text('#!/bin/sh\nfirst=1\nfor a in "$@"; do\n  if [ $first = 1 ]; then set --; first=0; fi\n'
                     f'  case "$a" in heapsize=*) a="heapsize={heap}";; esac\n'
                     '  set -- "$@" "$a"\ndone\n'
                     f'exec {micropython_bin()} "$@"\n')
        w.chmod(0o755)
        env["METER_MICROPYTHON"] = str(w)
    return env


class SimMeterProcess:
    """A simulated meter booted from a flash file; `port` is its service pty. stop()/start() is a
    power cycle (the flash file keeps what the meter wrote)."""

    def __init__(self, flash, workdir, seed=1, env=None):
        self.args = [sys.executable, "-m", "host_tools.cli", "sim", "start", "--json", "--flash", str(flash),
                     "--seed", str(seed), "--workdir", str(workdir)]
        self.env = env
        self.proc = None
        self.port = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=self.env)
        line = self.proc.stdout.readline()
        try:
            info = json.loads(line)
        except ValueError:
            info = {}
        if "service_port" not in info:
            self.stop()
            raise SimulationError(f"the simulated meter did not start: {info.get('error') or line!r}",
                                  hint=info.get("hint") or "see its workdir's firmware.log")
        self.port = info["service_port"]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            for f in (self.proc.stdout, self.proc.stderr):
                f.close()
