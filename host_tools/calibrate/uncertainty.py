"""The uncertainty budget of each test point (GUM: standard uncertainties combined in quadrature,
expanded with k = 2 for about 95 % coverage), all as relative values in % of the measured energy.

Components:
- reference class: the reference standard's class a %, a rectangular distribution: a / sqrt(3);
- source stability: the source's per-second deviations (voltage, current and phase bounds from the
  bench) change the power both the meter and the reference see; what is left is their effect within the
  gate's edges, rectangular and averaged over the gate's seconds: b / sqrt(3) / sqrt(seconds);
- resolution: each of the n sub-gates opens and closes on pulse edges detected to
  `edge_resolution_s`, so its duration is known to +-r (rectangular); over the whole measured time T:
  sqrt(n) * r / sqrt(3) / T;
- repeatability (type A): the spread of the point's consecutive sub-gates, s / sqrt(n)."""
import math

EDGE_RESOLUTION_S = 0.001     # the scanning head's edge detection (the simulated bench's: 1 ms)
COVERAGE_K = 2.0


def _stability_bound_pct(jitter, pf):
    if not jitter:
        return 0.0
    phi = math.acos(max(-1.0, min(1.0, abs(pf)))) if pf else 0.0
    phase = math.radians(jitter.get("phase_deg", 0.0)) * abs(math.tan(phi))
    return 100.0 * (jitter.get("volts_rel", 0.0) + jitter.get("amps_rel", 0.0) + phase)


def budget(point, bench_info, edge_resolution_s=EDGE_RESOLUTION_S):
    """{"components": {name: u %}, "combined_pct", "k", "expanded_pct"} for one test point."""
    ref_class = float(bench_info.get("reference_class_pct") or 0.0)
    secs = float(point.get("seconds") or 0.0)
    comp = {"reference class": ref_class / math.sqrt(3)}
    b = _stability_bound_pct(bench_info.get("source_jitter"), point.get("pf", 1.0))
    comp["source stability"] = b / math.sqrt(3) / math.sqrt(max(secs, 1.0))
    reps = [e for e in (point.get("repeat_errors_pct") or []) if e is not None]
    n = max(1, len(point.get("repeat_errors_pct") or []))
    comp["resolution"] = (100.0 * math.sqrt(n) * edge_resolution_s / secs) / math.sqrt(3) if secs > 0 else float("nan")
    if len(reps) >= 2:
        mean = sum(reps) / len(reps)
        s = math.sqrt(sum((e - mean) ** 2 for e in reps) / (len(reps) - 1))
        comp["repeatability"] = s / math.sqrt(len(reps))
    else:
        comp["repeatability"] = float("nan")
    known = [v for v in comp.values() if not math.isnan(v)]
    uc = math.sqrt(sum(v * v for v in known)) if known else float("nan")
    return {"components": {k: round(v, 5) if not math.isnan(v) else None for k, v in comp.items()},
            "combined_pct": round(uc, 5), "k": COVERAGE_K, "expanded_pct": round(COVERAGE_K * uc, 4),
            "repeats": len(reps)}
