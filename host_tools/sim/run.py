"""Accelerated runs of a simulated meter (`meterkit sim run`): N days in lockstep, then the meter's own
totals and events compared with the world's truth."""
import time

import math

from host_tools.errors import UsageError
from host_tools.sim.esp32.runner import SimMeter

DAY_MS = 86400000

# Enough opening credit that the supply stays on: metering runs and live views are about metering.
# Prepaid behaviour has its own scenarios (credit runs out, friendly periods, power cuts).
METERING_PREPAID = {"ledger": {"opening_credit": 100000000}}


def parse_faults(specs):
    """["silent@3600+120", "garbage@7200+60", "reset@9000"] -> [(t_ms, kind, duration_ms)]"""
    out = []
    for s in specs or ():
        try:
            kind, rest = s.split("@", 1)
            if "+" in rest:
                at, dur = rest.split("+", 1)
            else:
                at, dur = rest, "0"
            at_s, dur_s = float(at), float(dur)
            if not (math.isfinite(at_s) and math.isfinite(dur_s)) or at_s < 0 or dur_s < 0:
                raise ValueError
            out.append((int(at_s * 1000), kind, int(dur_s * 1000)))
        except ValueError:
            raise UsageError("bad fault %r" % s, hint="write KIND@SECONDS[+DURATION], e.g. silent@3600+120") from None
        if kind not in ("silent", "garbage", "reset"):
            raise UsageError("unknown fault kind %r" % kind, hint="use silent, garbage or reset")
    return out


def schedule_faults(world, faults):
    for t_ms, kind, dur in faults:
        if kind == "reset":
            world.schedule(t_ms, lambda w: w.chip_fault("reset"))
        else:
            world.schedule(t_ms, lambda w, k=kind: w.chip_fault(k))
            world.schedule(t_ms + dur, lambda w: w.chip_fault(None))


def run(days=1.0, seed=1, profile="household", afe="typical", grid="stable", period_s=60, heap=None,
        faults=(), settings=None, progress=None, mpy=True, chip=None):
    """Run a meter for `days` simulated days; return the result dict (see `meterkit sim run`)."""
    st = {"meter_period_s": period_s, "prepaid": METERING_PREPAID}
    if settings:
        st.update(settings)
    t0 = time.monotonic()
    m = SimMeter(seed=seed, profile=profile, afe=afe, grid=grid, settings=st, heap=heap, mpy=mpy, chip=chip)
    try:
        schedule_faults(m.world, parse_faults(faults) if faults and isinstance(faults[0], str) else faults)
        end = int(days * DAY_MS)
        step = max(DAY_MS // 4, 1)
        t = 0
        while t < end:
            t = min(end, t + step)
            m.run_until(t)
            if progress:
                progress(t, end)
        totals = m.request("totals")
        status = m.request("status")
        events = m.request("events")
        w = m.world
        den = totals["rem_den"]
        imp = totals["import_wh"] + totals["import_rem"] / den
        exp = totals["export_wh"] + totals["export_rem"] / den
        true_imp = w.true_import_wh
        res = {
            "seed": seed,
            "days": days,
            "sim_seconds": w.now_ms / 1000.0,
            "wall_seconds": round(time.monotonic() - t0, 3),
            "true_import_wh": round(true_imp, 4),
            "true_export_wh": round(w.true_export_wh, 4),
            "meter_import_wh": round(imp, 4),
            "meter_export_wh": round(exp, 4),
            "error_pct": round((imp - true_imp) / true_imp * 100.0, 4) if true_imp else 0.0,
            "firmware_heap_peak_bytes": status["heap_peak"],
            "firmware_heap_limit_bytes": status["heap_total"],
            "firmware_heap_live_bytes": status.get("heap_live"),
            "events": dict(sorted(events["counts"].items())),
            "meter_polls": status["polls"],
            "scheduler_ticks": status["loop_ticks"],
            "boots": m.boots,
            "link_frames": m.stats["frames"],
            "meter_period_s": period_s,
            "chip": m.world.chip_name,
            "profile": profile if isinstance(profile, str) else "custom",
            "afe": afe if isinstance(afe, str) else "custom",
            "afe_params": m.world.afe.params,
        }
        return res
    finally:
        m.close()


WALL_FIELDS = ("wall_seconds",)
