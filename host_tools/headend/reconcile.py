"""Reconciliation of the head-end's books with the meters': every vend against its delivery result,
and the credit the head-end confirmed against the top-up register each meter reports in its readings.
Every difference is listed with its cause, so a utility sees money that is owed, pending or unexplained.

Units: a currency vend's quantity is in 0.00001 of the currency unit (STS); the meter's `topups`
register is in minor units (`minor_per_major` of them to the unit, 100 unless the tariff says
otherwise), so one minor unit is 100000 / minor_per_major vend units."""
import json

from host_tools.headend import topups


def _minor(what, quantity, minor_per_major):
    if what != "currency":
        return None
    return quantity * minor_per_major // 100000


def reconcile(store, meter_id=None, minor_per_major=100):
    """{"meters": [...], "mismatches": [...], "ok": bool} for one meter or all of them."""
    ids = [meter_id] if meter_id else [r["meter_id"] for r in store.q("SELECT meter_id FROM meters ORDER BY meter_id")]
    if meter_id:
        store.meter(meter_id)
    meters, mismatches = [], []
    for mid in ids:
        vends = store.q("SELECT v.tid, v.what, v.quantity, v.msg_id, v.created, m.state, m.code, m.detail, "
                        "m.attempts FROM vends v LEFT JOIN messages m ON m.msg_id=v.msg_id WHERE v.meter_id=? "
                        "ORDER BY v.id", (mid,))
        row = {"meter_id": mid, "vends": len(vends), "accepted": 0, "confirmed_by_used": 0, "pending": 0,
               "refused": 0, "vended_minor": 0, "accepted_minor": 0}
        for v in vends:
            minor = _minor(v["what"], v["quantity"], minor_per_major)
            row["vended_minor"] += minor or 0
            base = {"meter_id": mid, "msg_id": v["msg_id"], "tid": v["tid"], "what": v["what"],
                    "quantity": v["quantity"], "minor": minor}
            if v["state"] == "done" and v["code"] == "accepted":
                row["accepted"] += 1
                row["accepted_minor"] += minor or 0
                detail = json.loads(v["detail"] or "{}")
                if detail.get("confirmed_by") == "used":
                    row["confirmed_by_used"] += 1
                    mismatches.append(dict(base, kind="result_lost", cause="the first answer was lost; a "
                                           "redelivery was answered `used`, which confirms the credit"))
            elif v["state"] == "done":
                row["refused"] += 1
                mismatches.append(dict(base, kind="refused", code=v["code"],
                                       cause="the meter refused the token (%s): not credited; refund or re-vend"
                                             % v["code"]))
            else:
                row["pending"] += 1
                mismatches.append(dict(base, kind="pending", attempts=v["attempts"],
                                       cause="no result yet after %d deliveries: in flight or the meter is "
                                             "offline" % (v["attempts"] or 0)))
        first = store.q1("SELECT raw FROM readings WHERE meter_id=? ORDER BY ts ASC LIMIT 1", (mid,))
        last = store.last_reading(mid)
        reported = None
        if first and last:
            a = json.loads(first["raw"]).get("topups")
            b = last.get("topups")
            if isinstance(a, int) and isinstance(b, int):
                reported = b - a
        row["meter_topups_since_first_reading"] = reported
        row["topup_events"], extra = topups.reconcile_meter(store, mid, vends)
        mismatches.extend(extra)
        meters.append(row)
    return {"meters": meters, "mismatches": mismatches,
            "ok": not any(m["kind"] in ("refused", "pending", "unvended_topup", "topup_twice", "no_topup_event")
                          for m in mismatches)}


def register(sub, common):
    r = sub.add_parser("reconcile", help="vends against delivery results and the meters' own top-up "
                                         "registers; every difference with its cause")
    common(r)
    r.add_argument("meter", nargs="?", help="one meter (default: all)")
    r.add_argument("--minor-per-major", type=int, default=100, help="minor units per currency unit (default 100)")
    r.set_defaults(func=cmd_reconcile)


def cmd_reconcile(args):
    import sys
    from host_tools.cli import emit
    from host_tools.headend.cli import _store
    if not 1 <= args.minor_per_major <= 1000:
        from host_tools.errors import UsageError
        raise UsageError("--minor-per-major must be 1..1000", hint="100 for a currency with cents")
    out = reconcile(_store(args), args.meter, args.minor_per_major)
    if args.json:
        emit(out, True)
    else:
        from host_tools import render
        for m in out["meters"]:
            sys.stdout.write("%s  vends %d  accepted %d (%d confirmed by `used`)  refused %d  pending %d  "
                             "vended %s  accepted %s\n" % (
                                 m["meter_id"], m["vends"], m["accepted"], m["confirmed_by_used"], m["refused"],
                                 m["pending"], render.money(m["vended_minor"], args.minor_per_major),
                                 render.money(m["accepted_minor"], args.minor_per_major)))
        for x in out["mismatches"]:
            amount = (" (%s)" % render.token_amount(x["what"], x["quantity"])
                      if x.get("what") and x.get("quantity") is not None else "")
            sys.stdout.write("  %s %s TID %s%s: %s\n" % (x["kind"], x.get("msg_id") or "-", x["tid"], amount,
                                                         x["cause"]))
        if not out["mismatches"]:
            sys.stdout.write("no differences: every vend was credited once\n")
    return 0 if out["ok"] else 1
