"""Migration from post-paid, end to end on the real firmware (issue 15): a customer imported with arrears ->
the agency queues them through the head-end -> the simulated meter's ledger holds them as debt (supply
on) -> a purchase is vended whole and the meter recovers the configured share of it -> the agency's book,
the customer's home page and the revenue show what the meter reported. Real firmware (MicroPython unix
port) + AT-level modem model + broker + head-end, in virtual time."""
import csv
import io

import pytest

from host_tools.agency import registry, revenue
from host_tools.agency.agency import Agency
from host_tools.agency.settings import Settings
from host_tools.agency.web.customer import home_view
from host_tools.sim.scenarios.chain import Chain

pytestmark = pytest.mark.timeout(300)


def _csv(meter_id, arrears, share):
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(registry.CSV_COLUMNS)
    w.writerow(["Client Postpaye", "+22236001234", meter_id, "", "", "fr", "sms", 1, arrears, share])
    return out.getvalue()


def test_imported_arrears_reach_the_meter_and_a_purchase_recovers_the_share_there():
    with Chain(seed=6, settings={"meter_period_s": 5, "reading_period_s": 300,
                                 "prepaid": {"ledger": {"opening_credit": 2000, "debt_share_bp": 2500}}}) as ch:
        ag = Agency(ch.store, Settings(clock=ch.unix_now), None, ch.keystore)
        registry.import_csv(ch.store, _csv(ch.meter_id, 5000, 2000), ch.unix_now())
        cid = registry.owner_of(ch.store, ch.meter_id)
        customer = registry.customer(ch.store, cid)
        assert ag.work_once()["arrears"]["queued"] == 1
        load = ch.store.q1("SELECT * FROM arrears_loads WHERE meter_id=?", (ch.meter_id,))

        def book():
            ag.work_once()
            return ch.store.q1("SELECT * FROM arrears WHERE meter_id=?", (ch.meter_id,))

        assert ch.run(900, until=lambda: book()["reported_at"] is not None), "the meter never reported the load"
        assert ch.store.q1("SELECT state FROM arrears_loads WHERE id=?", (load["id"],))["state"] == "loaded"
        c = ch.credit()
        assert (c["debt"], c["arrears"], c["check"]) == (5000, 5000, None) and c["credit"] > 0, c
        assert c["supply"] == "closed", "arrears opened the supply: %r" % c
        assert book()["balance_minor"] == 5000
        # importing the same file again (a retried migration) loads nothing more on the meter
        registry.import_csv(ch.store, _csv(ch.meter_id, 5000, 2000), ch.unix_now())
        ag.work_once()
        assert ch.store.q1("SELECT COUNT(*) AS n FROM arrears_loads")["n"] == 1
        # a confirmed purchase of 40.00 (the provider side is tests/test_agency_payments.py): vended whole
        now = ch.unix_now()
        with ch.store.tx() as db:
            db.execute("INSERT INTO payments (customer_id, meter_id, amount_minor, arrears_minor, currency, request_key,"
                       " provider, state, created, updated, paid_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (cid, ch.meter_id, 4000, 0, "MRU", "k-1", "sim", "paid", now, now, now))
        pid = ch.store.q1("SELECT id FROM payments WHERE request_key='k-1'")["id"]
        assert ag.payments.deliver(pid)
        assert ch.run(900, until=lambda: ag.work_once() and
                      ch.store.q1("SELECT state FROM payments WHERE id=?", (pid,))["state"] == "credited")
        after = ch.credit()
        # 20 % of the 40.00 top-up recovered 8.00 of arrears on the meter; 32.00 became credit
        assert after["arrears"] == 4200 and after["debt"] == 4200 and after["check"] is None, after
        assert after["topups"] - c["topups"] == 4000, (c, after)
        assert ch.run(900, until=lambda: book()["balance_minor"] == 4200), "the recovery never reached the book"
        b = book()
        assert b["recovered_minor"] == 800 and b["original_minor"] == 5000, dict(b)
        v = home_view(ag, customer, ch.meter_id)
        assert "warn_debt" in v["warnings"] and v["arrears"] == 4200 and v["arrears_share"] == 2000, v
        assert v["debt"] >= 4200, v
        assert sum(r["arrears_minor"] for r in revenue.revenue(ch.store, "day")) == 800
        paid = [r for r in revenue.revenue(ch.store, "day") if r["paid_minor"]]
        assert [(r["paid_minor"], r["vended_minor"], r["credited_minor"]) for r in paid] == [(4000, 4000, 4000)], paid
