"""`make demo` / `meterkit demo`: the real firmware in a simulated household for one scripted day,
accelerated (a day in about a minute), with the live view and a summary at the end."""
import sys
import time

from host_tools.cli import emit

DAY_S = 86400


# The demo meter: 4 MRU of credit at 5 MRU/kWh (0.8 kWh), friendly credit in the evening and at night,
# a low-credit warning at 5 MRU, emergency credit of 5 MRU.
DEMO_PREPAID = {
    "ledger": {"opening_credit": 400, "emergency_amount": 500},
    "policy": {"friendly": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "19:00", "end": "07:00"}],
               "low_credit": 500},
}


def _topup_at(t_ms, amount, ref):
    def act(w):
        act.meter.service.request("topup", amount=amount, ref=ref)
    return t_ms, act


def script(m):
    """What happens during the demo day (virtual seconds from midnight)."""
    w = m.world
    # A top-up of 50 MRU arrives at 15:00 through the service port (a vending agent's handheld).
    t, act = _topup_at(15 * 3600 * 1000, 5000, "demo-1")
    act.meter = m
    w.schedule(t, act)
    # The metering chip stops answering for two minutes at 10:00, answers garbage at 13:00,
    # and resets (losing its calibration) at 16:00: each is detected, reported and recovered.
    w.schedule(10 * 3600 * 1000, lambda w: w.chip_fault("silent"))
    w.schedule(10 * 3600 * 1000 + 120000, lambda w: w.chip_fault(None))
    w.schedule(13 * 3600 * 1000, lambda w: w.chip_fault("garbage"))
    w.schedule(13 * 3600 * 1000 + 60000, lambda w: w.chip_fault(None))
    w.schedule(16 * 3600 * 1000, lambda w: w.chip_fault("reset"))


def run_demo(seconds=60.0, seed=7, quiet=False, as_json=False):
    from host_tools.sim.live import serve
    t0 = time.monotonic()
    speed = DAY_S / seconds
    final, m = serve(seed=seed, profile="household", afe="ideal", grid="typical", speed=speed, period_s=5,
                     days=1.0, script=script, quiet=quiet or as_json,
                     settings={"prepaid": DEMO_PREPAID})
    den = final["rem_den"]
    meter_kwh = (final["import_wh"] + final["import_rem"] / den) / 1000
    true_kwh = m.world.true_import_wh / 1000
    summary = {
        "simulated_hours": round(m.world.now_ms / 3600000, 2),
        "wall_seconds": round(time.monotonic() - t0, 1),
        "meter_import_kwh": round(meter_kwh, 4),
        "true_import_kwh": round(true_kwh, 4),
        "error_pct": round((meter_kwh - true_kwh) / true_kwh * 100, 3) if true_kwh else 0.0,
        "events": final.get("events", {}),
        "boots": m.boots,
        "credit_end_mru": final.get("credit", {}).get("credit", 0) / 100 if isinstance(final.get("credit"), dict) else None,
    }
    return summary


def register(sub):
    p = sub.add_parser("demo", help="one simulated day of the real firmware in a household, with a live view")
    p.add_argument("--seconds", type=float, default=60.0, help="wall seconds for the simulated day (default 60)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    s = run_demo(args.seconds, args.seed, as_json=args.json)
    # Then the whole chain: a household meter with a modem runs out of credit, the relay opens, a
    # remote top-up from the head-end arrives over the simulated cellular link, the relay closes.
    from host_tools.sim.scenarios.chain_demo import run_chain
    if not args.json:
        print("\nThe remote top-up chain (head-end -> MQTT broker -> cellular modem -> meter)")
        sys.stdout.flush()
    chain = run_chain(live=not args.json)
    s["remote_topup"] = {k: chain.get(k) for k in ("ok", "latency_s", "headend_result", "relay_closed_again", "sms_receipt")}
    if args.json:
        emit(s, True)
    else:
        print("\nSummary of the simulated day")
        for k, v in s.items():
            print("  %-18s %s" % (k, v))
        sys.stdout.flush()
    return 0
