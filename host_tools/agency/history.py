"""Synthetic reading history for the demo and the benchmark (so charts and estimates have a past): one
reading every `step_s` for `days` days before `end`, a household-like daily rhythm with seasons, credit
falling with use (at `price_minor_per_kwh`) and rising at top-ups of 200.00 when it runs low, ending at
`credit` (so the meter's first real reading follows on). Rows are marked {"synthetic": true}."""
import json
import math
import random


def seed_history(store, meter_id, end, days=400, step_s=3600, seed=1, end_wh=0, credit=8000,
                 price_minor_per_kwh=500):
    rng = random.Random(seed)
    n = int(days * 86400 // step_s)
    # energy per step, oldest first, then registers counted back from end_wh
    steps = []
    for k in range(n):
        ts = int(end - (n - k) * step_s)
        hour = (ts % 86400) / 3600.0
        day = ts / 86400.0
        season = 1.0 + 0.35 * math.cos(2 * math.pi * (day % 365.25) / 365.25)
        rhythm = 0.4 + 0.9 * math.exp(-((hour - 20) / 2.5) ** 2) + 0.5 * math.exp(-((hour - 7) / 1.5) ** 2)
        steps.append((ts, int(rng.uniform(0.7, 1.3) * 300 * season * rhythm * step_s / 3600)))
    # registers and credit counted back from the end, so the history meets the meter's present
    regs, credits = [0] * n, [0] * n
    reg, c = end_wh, credit
    for k in range(n - 1, -1, -1):
        regs[k], credits[k] = reg, c
        wh = steps[k][1]
        reg -= wh
        c += wh * price_minor_per_kwh // 1000
        if c > 24000:
            c -= 20000            # before this hour, a top-up of 200.00
    rows = []
    for (ts, wh), reg, c in zip(steps, regs, credits):
        raw = {"t": "reading", "ts": ts, "import_wh": reg, "export_wh": 0, "credit": c, "debt": 0, "p_w": wh,
               "supply": "closed", "reasons": "", "tamper": [], "synthetic": True}
        rows.append((meter_id, ts, reg, 0, c, 0, wh, "closed", json.dumps(raw, sort_keys=True)))
    with store.tx() as db:
        db.executemany("INSERT INTO readings (meter_id, ts, import_wh, export_wh, credit, debt, p_w, supply, raw)"
                       " VALUES (?,?,?,?,?,?,?,?,?)", rows)
    return len(rows)
