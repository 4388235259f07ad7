"""`meterkit sim profile`: where the time of a simulated day goes, in both processes.

The simulator (CPython) and the firmware (MicroPython) run in lockstep over the link, so a day costs
the simulator's frame handling, the firmware's interpretation and one round trip per frame that needs
an answer. This runs one meter as `meterkit sim run` does and reports: link frames by kind, processor
seconds of each process (the firmware's read from /proc while it runs), wall seconds, and the firmware
scheduler's own account of each job (runs and milliseconds, from `status`)."""
import collections
import os
import resource
import threading
import time

from host_tools.sim.esp32 import link as L

_KINDS = {getattr(L, n): n for n in ("HELLO", "ADVANCE", "SPI", "UART_W", "UART_R", "GPIO_W", "GPIO_R",
                                      "FLASH_R", "FLASH_W", "FLASH_E", "WDT", "RESET", "DISPLAY", "KEY_R",
                                      "STATS", "TIME_SET", "METER_UART", "DISPLAY_PLAN")}


def _proc_cpu(pid):
    """User + system seconds of a running process, or None once it has gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_day(days=1.0, seed=1, display=True, period_s=60):
    """Run `days` like `meterkit sim run` (display on unless `display` is False); return the breakdown."""
    from host_tools.sim import run as simrun
    from host_tools.sim.esp32 import runner as R

    counts = collections.Counter()
    fw_cpu = {}
    orig_handle = R.SimMeter._handle
    orig_boot = R.SimMeter.boot
    stop = threading.Event()

    def handle(self, ftype, p, stop_at_ms):
        counts[_KINDS.get(ftype, str(ftype))] += 1
        return orig_handle(self, ftype, p, stop_at_ms)

    def boot(self):
        out = orig_boot(self)
        pid = self.proc.pid

        def sample():
            while not stop.is_set():
                v = _proc_cpu(pid)
                if v is None:
                    return
                fw_cpu[pid] = v
                time.sleep(0.02)
        threading.Thread(target=sample, daemon=True).start()
        return out

    status = {}
    orig_request = R.SimMeter.request

    def request(self, cmd, *a, **k):
        out = orig_request(self, cmd, *a, **k)
        if cmd == "status":
            status.update(out)
        return out

    R.SimMeter._handle, R.SimMeter.boot, R.SimMeter.request = handle, boot, request
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    try:
        res = simrun.run(days=days, seed=seed, period_s=period_s, settings=None if display else {"ui": 0})
    finally:
        stop.set()
        R.SimMeter._handle, R.SimMeter.boot, R.SimMeter.request = orig_handle, orig_boot, orig_request
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    jobs = status.get("jobs") or {}
    return {
        "days": days,
        "display": display,
        "wall_seconds": round(wall, 2),
        "simulator_cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2),
        "firmware_cpu_seconds": round(sum(fw_cpu.values()), 2),
        "link_frames": sum(counts.values()),
        "frames_by_kind": dict(counts.most_common()),
        "jobs": {name: {"runs": v[0], "ms": v[1]} for name, v in sorted(jobs.items())},
        "scheduler_ticks": res.get("scheduler_ticks"),
    }


def register_sim(simsub):
    p = simsub.add_parser("profile", help="where a simulated day's time goes: frames by kind, CPU of both "
                                          "processes, firmware jobs")
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--headless", action="store_true", help="no display (settings ui=0)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args):
    import json
    if not 0 < args.days <= 366:
        raise SystemExit("meterkit sim profile: --days must be more than 0 and at most 366")
    out = profile_day(days=args.days, seed=args.seed, display=not args.headless)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print("%g simulated day(s), display %s: %.2f s wall, simulator %.2f s CPU, firmware %.2f s CPU, %d link frames"
          % (out["days"], "on" if out["display"] else "off", out["wall_seconds"], out["simulator_cpu_seconds"],
             out["firmware_cpu_seconds"], out["link_frames"]))
    print("frames: " + ", ".join("%s %d" % kv for kv in out["frames_by_kind"].items()))
    print("firmware jobs: " + ", ".join("%s %d runs %d ms" % (n, j["runs"], j["ms"]) for n, j in out["jobs"].items()))
    return 0
