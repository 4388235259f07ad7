"""The worked example table in docs/credit.md, replayed: the documentation and the code cannot drift."""
from fractions import Fraction

from credit import civil
from credit.ledger import Ledger
from credit.policy import Policy
from credit.tariff import Schedule


def test_worked_example_in_docs_matches_the_modules():
    s = Schedule({"max_split_s": 3600, "tariffs": [{
        "blocks": [{"upto_kwh": 100, "price_per_mwh": 150000}, {"price_per_mwh": 400000}],
        "tou": [{"days": list(range(7)), "from_hour": 18, "to_hour": 23, "mult_bp": 15000}],
        "standing_per_day": 1000, "tax_bp": 1600}]})
    led = Ledger({"emergency_amount": 2000, "emergency_threshold": 1000, "debt_share_bp": 5000}, s)
    pol = Policy({"friendly": [{"days": [0, 1, 2, 3, 4, 5], "start": "18:00", "end": "11:00"}]})
    rows = []

    def row(t, debited):
        rows.append((debited, led.credit, led.debt, led.em_owed, led.mtd_wh, Fraction(led.fine, led.den),
                     pol.cut_for_credit(led.credit, t, True)))

    t = civil.unix(2026, 11, 23, 12)
    assert led.topup(20000)["credit"] == 20000
    led.debit(0, t, True)
    for (d, hh), wh in (((23, 17), 95000), ((23, 18), 10000), ((24, 10), 2000), ((24, 11), 500)):
        t = civil.unix(2026, 11, d, hh, 30 if (d, hh) in ((23, 17), (23, 18)) else 0)
        row(t, led.debit(wh, t, True))
    assert rows == [
        (16795, 3205, 0, 0, 95000, Fraction(5, 6), False),
        (4399, 0, 1194, 0, 105000, Fraction(1, 6), False),
        (1677, 0, 2871, 0, 107000, Fraction(1, 3), False),
        (280, 0, 3151, 0, 107500, Fraction(2, 3), True),
    ]
    assert led.take_emergency() == (2000, "")
    assert led.topup(10000) == {"amount": 10000, "emergency": 2000, "debt": 3151, "credit": 4849, "ref": None}
    assert (led.credit, led.debt, led.em_owed) == (6849, 0, 0)
    assert led.topups - led.debited == 6849 and led.check() is None
