"""Monthly statements for customers: per meter and calendar month (UTC), energy from the readings (the
meter's own statement when it sent one and the readings say nothing), cost by tariff block plus the
standing charge; sent once per meter and month on the customer's channels after the month has closed
and from 09:00 UTC (nobody is messaged at midnight)."""
import datetime

from host_tools.agency import i18n
from host_tools.headend import reports

SEND_FROM_HOUR = 9


def for_meter(store, settings, meter_id):
    """[{month, wh, split, cost, meter_cost, topups, readings}], newest first."""
    out = []
    for s in reports.monthly_statements(store, meter_id):
        wh = s.get("import_wh")
        own = s.get("meter_statement") or {}
        if wh is None and own:
            wh = own.get("import_wh")
        split = settings.tariff.split(wh or 0)
        cost = sum(c for _, _, c in split) + settings.tariff.standing_minor_per_month
        out.append({"month": s["month"], "wh": wh, "split": split, "cost": cost, "meter_cost": own.get("cost"),
                    "topups": s.get("topups_accepted", 0), "readings": s.get("readings", 0)})
    return list(reversed(out))


def month_wh(store, meter_id, now, back=1):
    """Energy of the month `back` months before now's, from the register at its two boundaries (two
    indexed look-ups, not the meter's whole history); None without readings on both sides."""
    from host_tools.agency import usage
    a = usage.register_at(store, meter_id, usage.month_start(now, back))
    b = usage.register_at(store, meter_id, usage.month_start(now, back - 1))
    return None if a is None or b is None else max(0, b - a)


_last_round = {}


def send_due(store, settings, notifier, every_s=300):
    """Send last month's statement to every customer who has not had it; returns how many were sent.
    Looks at most every `every_s` seconds (the worker calls it every round)."""
    t = settings.clock()
    if t - _last_round.get(store.path, -1e18) < every_s:
        return 0
    _last_round[store.path] = t
    now = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    if now.hour < SEND_FROM_HOUR:
        return 0
    first = now.replace(day=1)
    last_month = (first - datetime.timedelta(days=1)).strftime("%Y-%m")
    sent = 0
    rows = store.q("SELECT cm.meter_id, c.* FROM customer_meters cm JOIN customers c ON c.id=cm.customer_id "
                   "WHERE NOT EXISTS (SELECT 1 FROM statement_deliveries d WHERE d.meter_id=cm.meter_id AND d.month=?)",
                   (last_month,))
    for c in rows:
        wh = month_wh(store, c["meter_id"], t)
        if wh is None:
            continue
        cost = sum(x for _, _, x in settings.tariff.split(wh)) + settings.tariff.standing_minor_per_month
        lang = i18n.lang_of(c["language"])
        text = i18n.sms(lang, "statement", month=last_month, meter=c["meter_id"][-6:], kwh="%.1f" % (wh / 1000),
                        cost=settings.money(cost), cur=settings.currency)
        went = notifier.to_customer(c, "statement", text, subject="Relevé %s" % last_month)
        with store.tx() as db:
            db.execute("INSERT INTO statement_deliveries (meter_id, month, customer_id, channels, sent) VALUES "
                       "(?,?,?,?,?) ON CONFLICT (meter_id, month) DO NOTHING",
                       (c["meter_id"], last_month, c["id"], ",".join(went), settings.clock()))
        sent += 1
    return sent
