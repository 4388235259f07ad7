"""What the customer's pages compute from readings: energy per day and month from register differences at
UTC boundaries, the period before beside it, days left from the last week's spend, the tariff split."""
import datetime
import json
import os

import pytest

from host_tools.agency import usage
from host_tools.agency.settings import Settings, Tariff
from host_tools.headend.demo import make_fleet
from host_tools.headend.store import Store

UTC = datetime.timezone.utc


@pytest.fixture
def store(tmp_path):
    csv_path, _, rows = make_fleet(str(tmp_path / "f"), 1)
    s = Store(os.path.join(tmp_path, "he.db"))
    s.import_csv(csv_path)
    s.meter_id = rows[0]["meter_id"]
    yield s
    s.close()


def _reading(store, ts, wh, credit):
    raw = {"t": "reading", "ts": ts, "import_wh": wh, "credit": credit, "supply": "closed"}
    with store.tx() as db:
        db.execute("INSERT INTO readings (meter_id, ts, import_wh, credit, supply, raw) VALUES (?,?,?,?,?,?)",
                   (store.meter_id, ts, wh, credit, "closed", json.dumps(raw)))


def test_days_and_months_are_register_differences_at_utc_boundaries(store):
    t0 = int(datetime.datetime(2026, 3, 30, tzinfo=UTC).timestamp())
    # 1 kWh per hour from 30 March 00:00 to 2 April 12:00, one reading an hour
    for h in range(0, 24 * 3 + 13):
        _reading(store, t0 + h * 3600, h * 1000, 100000 - h * 500)
    now = t0 + (24 * 3 + 12) * 3600 + 600
    days = dict((d, wh) for d, wh, _ in usage.daily(store, store.meter_id, now, 3))
    # 31 March: the register at the last reading at or before 1 April 00:00 minus the one at 31 March 00:00
    assert days["2026-03-31"] == 24000 and days["2026-04-01"] == 24000 and days["2026-04-02"] == 12000
    months = dict((m, wh) for m, wh, _ in usage.monthly(store, store.meter_id, now, 2))
    assert months["2026-04"] == 36000 and months["2026-03"] is None      # no reading before March
    h = usage.home(store, store.meter_id, now)
    assert h["today_wh"] == 12000 and h["month_wh"] == 36000
    # credit falls 500 an hour: 12,000 a day; 100,000 - 84 x 500 = 58,000 left -> 4.8 days
    assert h["days_left"] == round(58000 / 12000, 1)


def test_the_period_before_is_beside_each_day(store):
    t0 = int(datetime.datetime(2026, 5, 1, tzinfo=UTC).timestamp())
    for d in range(0, 9):
        _reading(store, t0 + d * 86400 - 1, d * 2000 if d < 5 else 8000 + (d - 4) * 3000, 0)
    rows = usage.daily(store, store.meter_id, t0 + 8 * 86400 + 10, 4)
    # today (the 4th) has no reading since midnight yet: 0
    assert [r[1] for r in rows] == [3000, 3000, 3000, 0] and [r[2] for r in rows] == [2000, 2000, 2000, 3000]


def test_tariff_split_by_block_and_no_history_no_estimate(store):
    t = Tariff(blocks=((100_000, 590), (300_000, 1010), (None, 1430)), standing_minor_per_month=20000)
    assert t.split(50_000) == [("0-100 kWh", 50_000, 29500)]
    assert t.split(350_000) == [("0-100 kWh", 100_000, 59000), ("100-300 kWh", 200_000, 202000),
                                ("300- kWh", 50_000, 71500)]
    assert usage.home(store, store.meter_id, 1.8e9) == {"reading": None, "today_wh": None, "month_wh": None,
                                                        "days_left": None}


@pytest.mark.parametrize("text, minor", [("12", 1200), ("12.5", 1250), ("12,50", 1250), (" 0.07 ", 7), (".5", 50)])
def test_amounts_parse_to_minor_units(text, minor):
    assert Settings().parse_money(text) == minor


@pytest.mark.parametrize("text", ["", "abc", "1.234", "-1", "1e3", "12.5.0"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(ValueError):
        Settings().parse_money(text)
