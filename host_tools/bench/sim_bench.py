"""Simulator and firmware benchmarks: wall time of a 30-day accelerated run at a 1-minute metering
period (display on) and the year it extrapolates to, where a simulated day's time goes (link frames by
kind, the CPU of both processes: `meterkit sim profile`), the firmware's heap peak and superloop
iterations per wall second. `make bench-long` (`run_long`) runs the year itself and bisects the lowest
heap cap at which a 30-day run completes (about 25 min here together)."""
from host_tools.errors import SimulationError
from host_tools.sim import run as simrun


def _completes(heap_kb, days=30):
    try:
        r = simrun.run(days=days, seed=11, afe="ideal", period_s=60, heap="%dk" % heap_kb)
    except SimulationError:
        return False
    # A run that only "completed" by crash-rebooting does not count.
    return r["boots"] == 1 and abs(r["error_pct"]) < 0.01


def min_heap_cap_kb(lo=48, hi=256):
    """Bisect the lowest -X heapsize (KB) at which a 30-day run completes without a reboot."""
    if not _completes(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _completes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def run():
    from host_tools.sim.profile import profile_day
    month = simrun.run(days=30, seed=11, period_s=60)
    day = profile_day(days=1, seed=1)
    out = {
        "sim_30d_wall_seconds": month["wall_seconds"],
        "sim_year_wall_seconds_est": round(month["wall_seconds"] * 365 / 30, 1),
        "sim_30d_error_pct": month["error_pct"],
        "firmware_heap_peak_bytes": month["firmware_heap_peak_bytes"],
        "firmware_heap_limit_bytes": month["firmware_heap_limit_bytes"],
        "scheduler_ticks_per_second": round(month["scheduler_ticks"] / month["wall_seconds"], 1),
        "sim_day_wall_seconds": day["wall_seconds"],
        "sim_day_simulator_cpu_seconds": day["simulator_cpu_seconds"],
        "sim_day_firmware_cpu_seconds": day["firmware_cpu_seconds"],
        "sim_day_frames": day["link_frames"],
    }
    # every kind the link knows, 0 when none was sent (bench.json keeps keys from earlier runs: a kind
    # no longer sent must not keep its old count)
    from host_tools.sim.profile import _KINDS
    for kind in _KINDS.values():
        out["sim_day_frames_%s" % kind] = day["frames_by_kind"].get(kind, 0)
    return out


def run_long():
    year = simrun.run(days=365, seed=11, period_s=60)
    return {
        "sim_year_wall_seconds": year["wall_seconds"],
        "sim_year_error_pct": year["error_pct"],
        "sim_year_firmware_heap_peak_bytes": year["firmware_heap_peak_bytes"],
        "firmware_min_heap_cap_kb": min_heap_cap_kb(),
    }
