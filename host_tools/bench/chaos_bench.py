"""The chaos year (`meterkit sim chaos`): several meters through a long stretch of simulated days in which
every fault the simulator has strikes at random, with the independent checks. A year of several meters
takes hours on 2 busy cores, so `make bench` (`run`) runs 1 day of 3 meters and `make bench-long`
(`run_long`) 10 days of 3 meters (CHAOS_BENCH_DAYS and CHAOS_BENCH_METERS override either), each with a
line per simulated day, and reports the rate (meter-days per wall second) from which a year's cost
follows; `CHAOS_BENCH_DAYS=365 python -m host_tools.bench.chaos_bench` runs the year.

Keys: chaos_days, chaos_meters, chaos_seed, chaos_faults_total, chaos_faults_<kind>, chaos_violations,
chaos_recovery_max_s, chaos_max_unbilled_wh_per_cut, chaos_cuts_checked, chaos_payments_paid,
chaos_payments_credited, chaos_meter_days_per_wall_s, chaos_wall_s, chaos_year_wall_s_est."""
import json
import os
import sys
import time

from host_tools.chaos.run import run as chaos


def run_long():
    return run(10)


def run(days=1):
    days = float(os.environ.get("CHAOS_BENCH_DAYS", days))
    meters = int(os.environ.get("CHAOS_BENCH_METERS", "3"))
    seed = int(os.environ.get("CHAOS_BENCH_SEED", "1"))
    t0 = time.monotonic()
    said = [0]

    def progress(done, total):
        day = int(done // 86400)
        if day > said[0]:
            said[0] = day
            print("   day %d of %g, %.0f s" % (day, days, time.monotonic() - t0), flush=True)
    rep = chaos(days=days, meters=meters, seed=seed, per_day=6.0, progress=progress,
                log=lambda text: sys.stderr.write(text + "\n"))
    out = {"chaos_days": days, "chaos_meters": meters, "chaos_seed": seed,
           "chaos_faults_total": rep["faults_total"], "chaos_violations": len(rep["violations"]),
           "chaos_recovery_max_s": rep["recovery_max_s"],
           "chaos_max_unbilled_wh_per_cut": rep["max_unbilled_wh_per_cut"],
           "chaos_cuts_checked": rep["cuts_checked"],
           "chaos_payments_paid": rep["payments"]["paid"], "chaos_payments_credited": rep["payments"]["credited"],
           "chaos_wall_s": rep["wall_s"]}
    for k, n in rep["faults"].items():
        out["chaos_faults_%s" % k] = n
    rate = days * meters / rep["wall_s"] if rep["wall_s"] else None
    out["chaos_meter_days_per_wall_s"] = round(rate, 3) if rate else None
    out["chaos_year_wall_s_est"] = round(365 * meters / rate) if rate else None
    if rep["violations"]:
        path = os.path.join("build", "chaos-violations.json")
        os.makedirs("build", exist_ok=True)
        with open(path, "w") as f:
            json.dump(rep["violations"], f, indent=1)
        out["chaos_violations_file"] = path
    return out


if __name__ == "__main__":
    print(json.dumps(run(10), indent=1, sort_keys=True))
