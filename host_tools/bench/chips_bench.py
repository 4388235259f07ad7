"""Per metering chip (`make bench`): the same firmware for 30 simulated days (1-minute polls, household
load, ideal front end) against each chip model (`sim_30d_wall_seconds` and the error against the
world's truth), the worst
error after `meterkit calibrate` over seeded meters (class 1 at every IEC point), and the 32-bit live
heap of the chip's driver (its module and one instance after a poll, on npm's 32-bit MicroPython).

Keys: chip_<name>_sim_30d_wall_seconds, chip_<name>_sim_30d_ideal_error_pct,
chip_<name>_calibrated_worst_error_pct, chip_<name>_calibrated_passed (meters passing of those run),
chip_<name>_heap_32bit_driver_live_bytes; for the BL0942 also the pass count on the `typical` front end
(±1 degree phase), which a chip without a phase register cannot correct."""
import json
import tempfile
from pathlib import Path

from host_tools.paths import BUILD
from host_tools.sim import run as simrun

CHIPS = ("atm90e26", "bl0942", "ade7953")
# The front end each chip's meters are built with: the BL0942 has no phase register, so its boards
# need matched filters (boards/esp32_bl0942/README.md).
AFE = {"atm90e26": "typical", "bl0942": "shunt_matched", "ade7953": "typical"}
SEEDS = (1, 2, 3, 4)

# One chip's driver on a bus that answers nothing (MISO high, no UART bytes): import, build, start
# (which fails: no chip), poll; what stays on the heap after a collection is the driver's cost (its
# module, its instance and buffers; the contract and the registry, which every chip shares, are
# loaded before the count).
_DRIVER_CODE = r"""
import gc, sys, json
class Bus:
    def transfer(self, buf, n):
        for i in range(len(buf)):
            buf[i] = 0xFF
    def exchange(self, tx, rx):
        return 0
class Clock:
    def ticks_ms(self): return 0
    def ticks_diff(self, a, b): return a - b
    def sleep_ms(self, ms): pass
import metering.chip
from metering import registry
info = json.load(open('/app/metering.json'))
gc.collect()
before = gc.mem_alloc()
chip = registry.make_chip(info, Bus(), Clock(), info['calibration'])
try:
    chip.start()
except metering.chip.ChipError:
    pass
chip.probe()
chip.poll()
gc.collect()
print('DRIVER32 %d' % (gc.mem_alloc() - before))
"""

def metering_of(chip):
    from host_tools.sim.esp32.runner import chip_metering
    return chip_metering("sim", chip)


def driver_heap_32bit(chip):
    """Bytes the chip's driver (module + instance after start and poll) holds on the 32-bit heap."""
    from host_tools.bench import wasm32
    from host_tools.sim.esp32.fwbuild import build_tree
    wasm32.node()
    with tempfile.TemporaryDirectory(prefix="chip32-", dir=str(BUILD) if BUILD.exists() else None) as d:
        work = Path(d)
        t = work / "tree"
        src = build_tree("sim", mpy=True)
        (t / "metering").mkdir(parents=True)
        for p in (src / "metering").rglob("*.mpy"):
            dst = t / p.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(p.read_bytes())
        (t / "metering.json").write_text(json.dumps(metering_of(chip)))
        proc = wasm32.run(t, _DRIVER_CODE, work, 4 * 1024 * 1024, timeout=300)
        for line in proc.stdout.splitlines():
            if line.startswith("DRIVER32 "):
                return int(line.split()[1])
        raise RuntimeError("the 32-bit driver run printed nothing:\n%s\n%s" % (proc.stdout[-1500:], proc.stderr[-1500:]))


def calibrated(chip, afe, seeds=SEEDS):
    """(worst |error| % over every point of every meter that passed, meters passed)."""
    from host_tools.calibrate.bench.sim import SimBench
    from host_tools.calibrate.lab import run_lab
    from host_tools.calibrate.target import SimService
    from host_tools.sim.esp32.runner import SimMeter
    worst, passed = 0.0, 0
    for seed in seeds:
        m = SimMeter(seed=seed, afe=afe, profile="constant", settings={"meter_period_s": 1}, chip=chip)
        try:
            m.run_for(1)
            res = run_lab(SimService(m), SimBench(m, seed=seed), "1", write_report=False)
        finally:
            m.close()
        if res["passed"]:
            passed += 1
            worst = max(worst, res["worst_error_pct"])
    return round(worst, 4), passed


def run_chip(chip, seeds=SEEDS):
    """One chip's keys (see the module docstring)."""
    import sys
    out = {}
    ideal = simrun.run(days=30, seed=11, period_s=60, chip=chip, afe="ideal")
    out["chip_%s_sim_30d_wall_seconds" % chip] = ideal["wall_seconds"]
    out["chip_%s_sim_30d_ideal_error_pct" % chip] = ideal["error_pct"]
    out["chip_%s_sim_30d_ideal_gap_wh" % chip] = round(ideal["true_import_wh"] - ideal["meter_import_wh"], 4)
    sys.stderr.write("%s: 30 days in %.1f s\n" % (chip, ideal["wall_seconds"]))
    worst, passed = calibrated(chip, AFE[chip], seeds)
    out["chip_%s_calibrated_worst_error_pct" % chip] = worst
    out["chip_%s_calibrated_passed" % chip] = "%d/%d on %s" % (passed, len(seeds), AFE[chip])
    out["chip_%s_heap_32bit_driver_live_bytes" % chip] = driver_heap_32bit(chip)
    if chip == "bl0942":
        _, passed = calibrated("bl0942", "typical", seeds)
        out["chip_bl0942_calibrated_passed_typical_front_end"] = "%d/%d" % (passed, len(seeds))
    return out


def run():
    out = {}
    for chip in CHIPS:
        out.update(run_chip(chip))
    return out
