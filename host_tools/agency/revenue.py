"""Revenue by day or month (UTC): money paid, vended and confirmed credited by meters, and their
differences (paid but not yet vended, vended but not yet credited), refunds and arrears recovered: as the
meters report them (`debt_recovered`, from any top-up: a purchase here, a keypad or SMS token), plus what
the agency took at payment time before arrears went to the meters (old rows' `arrears_minor`)."""
import datetime

from host_tools.agency.arrears import recovered_by_period

COLUMNS = ("period", "payments", "paid_minor", "vended_minor", "credited_minor", "arrears_minor",
           "refunded_minor", "paid_not_vended_minor", "vended_not_credited_minor")


def _period(ts, by):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return d.strftime("%Y-%m-%d" if by == "day" else "%Y-%m")


def revenue(store, by="day"):
    if by not in ("day", "month"):
        raise ValueError("by day or month")
    rows = store.q("SELECT amount_minor, arrears_minor, state, paid_at FROM payments WHERE paid_at IS NOT NULL")
    out = {}
    for p in rows:
        k = _period(p["paid_at"], by)
        r = out.setdefault(k, dict.fromkeys(COLUMNS, 0))
        r["period"] = k
        r["payments"] += 1
        r["paid_minor"] += p["amount_minor"]
        energy = p["amount_minor"] - p["arrears_minor"]
        if p["state"] in ("vended", "credited", "refund_pending", "refunded"):
            r["vended_minor"] += energy
            r["arrears_minor"] += p["arrears_minor"]
        if p["state"] == "credited":
            r["credited_minor"] += energy
        if p["state"] == "refunded":
            r["refunded_minor"] += p["amount_minor"]
        if p["state"] == "paid":
            r["paid_not_vended_minor"] += p["amount_minor"]
        if p["state"] == "vended":
            r["vended_not_credited_minor"] += energy
    for k, v in recovered_by_period(store, lambda ts: _period(ts, by)).items():
        r = out.setdefault(k, dict.fromkeys(COLUMNS, 0))
        r["period"] = k
        r["arrears_minor"] += v
    return [out[k] for k in sorted(out)]
