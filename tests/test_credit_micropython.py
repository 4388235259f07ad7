"""The credit core under the real MicroPython interpreter (heap 96k): hand-worked tariff figures,
emergency and debt, friendly periods and warnings, and a long random run matching CPython exactly."""
from mpyrun import run_micropython

SCENARIO = r'''
from credit import civil
from credit.tariff import Schedule
from credit.ledger import Ledger
from credit.policy import Policy
TAR = {"max_split_s": 7200, "tariffs": [
    {"start": 0, "blocks": [{"upto_kwh": 100, "price_per_mwh": 150000}, {"price_per_mwh": 400000}],
     "tou": [{"days": [0, 1, 2, 3, 4, 5, 6], "from_hour": 18, "to_hour": 23, "mult_bp": 15000}],
     "standing_per_day": 1000, "tax_bp": 1600},
    {"start": civil.unix(2026, 12, 15), "blocks": [{"upto_kwh": 100, "price_per_mwh": 200000}, {"price_per_mwh": 500000}],
     "standing_per_day": 0, "tax_bp": 0}]}


class LCG:
    def __init__(self, seed):
        self.x = seed

    def next(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7fffffff
        return self.x % n


def long_run():
    s = Schedule(TAR)
    ev = []
    led = Ledger({"emergency_amount": 2000, "debt_share_bp": 5000}, s, lambda k, d: ev.append(k))
    pol = Policy({"friendly": [{"days": [0, 1, 2, 3, 4, 5], "start": "18:00", "end": "11:00"}],
                  "low_credit": 5000, "low_credit_hysteresis": 500, "low_days": 3}, lambda k, d: ev.append(k))
    rng = LCG(12345)
    t = civil.unix(2026, 11, 25)
    led.topup(20000)
    cuts = 0
    for i in range(20000):
        t += 30 + rng.next(90)
        whole = led.debit(rng.next(40), t, True)
        pol.record(whole, t, True)
        pol.check_warnings(led.credit)
        if pol.cut_for_credit(led.credit, t, True):
            cuts += 1
            if rng.next(3) == 0:
                led.take_emergency()
            else:
                led.topup(5000 + rng.next(20000))
        bad = led.check()
        if bad:
            print("BROKEN", bad)
            break
    print("den", s.den)
    print("totals", led.debited, led.topups, led.credit, led.debt, led.em_owed, led.fine, led.mtd_wh, cuts)
    print("events", ev.count("low_credit"), ev.count("emergency_taken"), ev.count("debt_recovered"))
'''


def test_hand_worked_figures_under_micropython():
    code = SCENARIO + r'''
s = Schedule(TAR)
led = Ledger({}, s)
led.topup(100000)
t = civil.unix(2026, 11, 10, 17, 30)
led.debit(0, t, True)
# 10 kWh 17:30-18:30: 5 x 1.50 + 5 x 2.25 = 18.75, +16 % = 21.75; standing 1h = 41.666.. x 1.16 = 48.33..
print("tou", led.debit(10000, t + 3600, True))
led2 = Ledger({}, s)
led2.debit(90000, civil.unix(2026, 11, 30, 23, 30), True)
# 60 kWh across the month end: (10 x 1.5 + 20 x 4 + 30 x 1.5) x 1.16 = 162.40 + standing 1h 48.33..
print("month", led2.debit(60000, civil.unix(2026, 12, 1, 0, 30), True))
led3 = Ledger({}, s)
led3.debit(50000, civil.unix(2026, 12, 14, 12), True)
print("change", led3.debit(80000, civil.unix(2026, 12, 16, 12), True))
'''
    out = run_micropython(code, heap="96k").split("\n")
    assert out[0] == "tou %d" % ((1875 * 116 + 41667 * 116 // 1000) // 100)
    assert out[1] == "month %d" % ((14000 * 116) // 100 + 4833 // 100)
    # Dec 14 12:00 -> Dec 16 12:00 (max_split 7200: one piece at the end, new tariff, no tax):
    # mtd 50 kWh: 50 x 2.00 + 30 x 5.00 = 250.00; standing: Dec 14 12h -> 15 00h = 0.5 day x 10 x 1.16 = 580
    assert out[2] == "change %d" % (25000 + 580)


def test_long_random_run_matches_cpython_exactly_and_conserves():
    code = SCENARIO + "long_run()\n"
    out = run_micropython(code, heap="96k")
    assert "BROKEN" not in out
    ns = {}
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, ns)
    assert out == buf.getvalue()
    totals = [int(x) for x in out.split("\n")[1].split()[1:]]
    debited, topups, credit, debt, owed = totals[:5]
    assert topups - debited == credit - debt - owed
    assert [int(x) for x in out.split("\n")[2].split()[1:]][0] > 0  # warnings fired
