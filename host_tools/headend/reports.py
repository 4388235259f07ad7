"""Monthly statements from the readings a meter reported: energy imported per calendar month (UTC) as
the difference of the register between the last reading of the month and the last one before it, with
the tokens accepted that month and the meter's own statement beside it when it sent one."""
import datetime


def _month(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m")


def monthly_statements(store, meter_id):
    store.meter(meter_id)
    rows = store.q("SELECT ts, import_wh FROM readings WHERE meter_id=? AND import_wh IS NOT NULL ORDER BY ts",
                   (meter_id,))
    months = {}
    prev_end = None
    for r in rows:
        m = _month(r["ts"])
        if m not in months:
            months[m] = {"month": m, "start_wh": prev_end if prev_end is not None else r["import_wh"],
                         "readings": 0}
        months[m]["end_wh"] = r["import_wh"]
        months[m]["readings"] += 1
        prev_end = r["import_wh"]
    topups = {}
    for r in store.q("SELECT done_at FROM messages WHERE meter_id=? AND kind='token' AND code='accepted'", (meter_id,)):
        topups[_month(r["done_at"])] = topups.get(_month(r["done_at"]), 0) + 1
    own = {r["month"]: dict(r) for r in store.q("SELECT * FROM statements WHERE meter_id=?", (meter_id,))}
    out = []
    for m in sorted(set(months) | set(own)):
        s = months.get(m, {"month": m, "start_wh": None, "end_wh": None, "readings": 0})
        s["import_wh"] = (s["end_wh"] - s["start_wh"]) if s["start_wh"] is not None else None
        s["topups_accepted"] = topups.get(m, 0)
        if m in own:
            s["meter_statement"] = {k: own[m][k] for k in ("import_wh", "cost", "topups")}
        out.append(s)
    return out
