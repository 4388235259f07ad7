"""Test helpers for the calibration lab: a meter made of the simulated world and chip alone (no
firmware process), answering the same service commands the firmware does (ping, cal_get, cal_set,
raw_read, raw_write). Fast, and independent of the firmware; the firmware-in-the-loop tests use
SimMeter. Plus the checks that this stand-in behaves like the firmware's commands."""
import json
import threading
import time
from contextlib import contextmanager

from host_tools.paths import board_dir
from host_tools.sim.world.chips import atm90e26 as chipmod
from host_tools.sim.world.world import World

CAL_ORDER = ("PLconstH", "PLconstL", "Lgain", "Lphi", "Ngain", "Nphi", "PStartTh", "PNolTh",
             "QStartTh", "QNolTh", "MMode")
ADJ_ORDER = ("Ugain", "IgainL", "IgainN", "Uoffset", "IoffsetL", "IoffsetN", "PoffsetL", "QoffsetL",
             "PoffsetN", "QoffsetN")


class ChipDirectMeter:
    """World + chip, driven like the firmware drives them; `call()` like ServiceClient.call()."""

    def __init__(self, seed=1, afe="typical", chip_params=None):
        self.info = json.loads((board_dir("sim") / "board.json").read_text())
        self.world = World(self.info, seed, "constant", afe, "stable")
        if chip_params:
            import random
            self.world.chip = chipmod.ATM90E26(random.Random(seed), chip_params)
            self.world._update_inputs()
        met = self.info["metering"]
        self.design = {k: met[k] for k in ("un_v", "ib_a", "imax_a", "f_hz", "meter_constant_imp_per_kwh",
                                            "front_end")}
        self.cal = dict(met["calibration"])
        self.stored = None
        self.calls = []
        self._start()

    def _start(self):
        c = self.world.chip
        c.poke("SoftReset", 0x789A)
        c.poke("FuncEn", 0x0030)
        c.poke("CalStart", 0x5678)
        vals = [self.cal[n] & 0xFFFF for n in CAL_ORDER]
        for n, v in zip(CAL_ORDER, vals):
            c.poke(n, v)
        c.poke("CS1", chipmod.checksum(vals))
        c.poke("AdjStart", 0x5678)
        vals = [self.cal[n] & 0xFFFF for n in ADJ_ORDER]
        for n, v in zip(ADJ_ORDER, vals):
            c.poke(n, v)
        c.poke("CS2", chipmod.checksum(vals))
        c.poke("CalStart", 0x8765)
        c.poke("AdjStart", 0x8765)

    def run_for(self, seconds):
        self.world.advance_to(self.world.now_ms + int(round(seconds * 1000)))

    def reboot(self):
        """Power cycle: the chip resets, the stored calibration (or the board's) comes back."""
        self.world.chip.power_on_reset()
        self.cal = dict(self.stored or self.info["metering"]["calibration"])
        self._start()

    def call(self, cmd, timeout=None, **args):
        self.calls.append(cmd)
        if cmd == "ping":
            return {"ok": True, "board": "sim", "version": "chip-direct", "calibrated": self.stored is not None}
        if cmd == "cal_get":
            return {"ok": True, "cal": dict(self.cal), "design": dict(self.design)}
        if cmd == "cal_set":
            for k, v in args["cal"].items():
                assert k in self.cal, k
                assert 0 <= v <= 0xFFFF, (k, v)
                if k == "Ugain":
                    assert not v & 0x8000
            self.cal.update(args["cal"])
            self._start()
            if args.get("persist", True):
                self.stored = dict(self.cal)
            return {"ok": True, "cal": dict(self.cal), "health": "ok"}
        if cmd == "raw_read":
            regs = args["regs"]
            buf = bytearray()
            for a in regs:
                assert not (0x40 <= a <= 0x45 or a == 0x01)
                buf += bytes((0x80 | a, 0, 0))
            self.world.chip.transfer(buf)
            return {"ok": True, "values": [(buf[3 * i + 1] << 8) | buf[3 * i + 2] for i in range(len(regs))]}
        if cmd == "raw_write":
            assert args["reg"] == 0x04
            self.world.chip.poke(0x04, args["value"])
            return {"ok": True}
        from host_tools.errors import DeviceError
        raise DeviceError("unknown command %r" % cmd)


@contextmanager
def polled(server):
    """Poll a BenchServer from a thread, as the simulator's loop would; close it afterwards."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            server.poll()
            time.sleep(0.0005)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield server
    finally:
        stop.set()
        th.join(2)
        server.close()


def test_chip_direct_meter_reads_the_design_point_at_nominal_gains():
    m = ChipDirectMeter(seed=1, afe="ideal")
    from host_tools.calibrate.bench.sim import SimBench
    b = SimBench(m, seed=1, jitter={"volts_rel": 0, "amps_rel": 0, "phase_deg": 0})
    b.set(230, 10, 1.0)
    b.run(1)
    urms, irms, pmean = m.call("raw_read", regs=[0x49, 0x48, 0x4A])["values"]
    assert abs(urms - 23000) <= 1 and abs(irms - 10000) <= 1 and abs(pmean - 2300) <= 1


def test_chip_direct_meter_keeps_stored_calibration_over_reboot():
    m = ChipDirectMeter(seed=1)
    m.call("cal_set", cal={"Lgain": 1234}, persist=False)
    m.reboot()
    assert m.cal["Lgain"] == 0
    m.call("cal_set", cal={"Lgain": 1234})
    m.reboot()
    assert m.cal["Lgain"] == 1234 and m.world.chip.peek(0x23) == 1234
