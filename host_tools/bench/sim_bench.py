"""Simulator and firmware benchmarks (issue 2): wall time of a 30-day and a one-year accelerated run at a
1-minute metering period, the firmware's heap peak, the lowest heap cap at which a 30-day run completes,
and superloop iterations per wall second."""
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


def run_bench():
    month = simrun.run(days=30, seed=11, period_s=60)
    year = simrun.run(days=365, seed=11, period_s=60)
    return {
        "sim_30d_wall_seconds": month["wall_seconds"],
        "sim_year_wall_seconds": year["wall_seconds"],
        "sim_year_error_pct": year["error_pct"],
        "firmware_heap_peak_bytes": max(month["firmware_heap_peak_bytes"], year["firmware_heap_peak_bytes"]),
        "firmware_heap_limit_bytes": year["firmware_heap_limit_bytes"],
        "firmware_min_heap_cap_kb": min_heap_cap_kb(),
        "scheduler_ticks_per_second": round(year["scheduler_ticks"] / year["wall_seconds"], 1),
    }


def run():
    return run_bench()
