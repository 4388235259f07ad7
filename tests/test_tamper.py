"""Tamper detection on the real firmware in the simulated world: a wire around the line terminals
(the neutral CT sees more current than the line shunt), swapped line terminals (export on a
consumption meter) and an opened terminal cover; reported once, kept across a reboot, optionally
disconnecting, cleared by the service command. Plus the tamper module's rules under CPython."""
import sys

import pytest

from host_tools.paths import FIRMWARE
from host_tools.sim.esp32.runner import SimMeter

sys.path.insert(0, str(FIRMWARE))
sys.path.insert(0, str(FIRMWARE.parent / "tests" / "shims"))
from metering import tamper  # noqa: E402
from fakeclock import FakeClock  # noqa: E402

PRICE = 2000000


def make(tamper_cfg=None, watts=2000, afe="ideal", seed=1):
    pp = {"tariff": {"mode": "money", "minor_per_major": 100,
                     "tariffs": [{"start": 0, "blocks": [{"price_per_mwh": PRICE}]}]},
          "ledger": {"opening_credit": 1000000}}
    if tamper_cfg is not None:
        pp["tamper"] = tamper_cfg
    load = {"kind": "constant", "name": "steady", "watts": watts, "pf": 1.0}
    m = SimMeter(seed=seed, profile=load, afe=afe, settings={"meter_period_s": 1, "prepaid": pp})
    m.run_for(2)
    return m


def tamper_events(m):
    return [e[3] for e in m.request("events")["events"] if e[2] == "tamper"]


@pytest.fixture
def meters():
    made = []

    def mk(*a, **kw):
        m = make(*a, **kw)
        made.append(m)
        return m
    yield mk
    for m in made:
        m.close()


def test_line_bypass_is_reported_once_after_the_hold_time_and_survives_a_reboot(meters):
    m = meters(afe="typical")
    m.run_for(120)
    assert tamper_events(m) == [] and m.request("credit")["tamper"] == []     # real AFE errors: no false alarm
    m.world.tamper(bypass=0.6)                    # 60 % of the current goes around the line shunt
    m.run_for(20)
    assert tamper_events(m) == []                 # not before the hold time (30 s)
    m.run_for(20)
    ev = tamper_events(m)
    assert len(ev) == 1 and ev[0]["kind"] == "imbalance" and ev[0]["side"] == "neutral"
    assert ev[0]["neutral_ma"] > 2 * ev[0]["line_ma"]
    m.run_for(120)
    assert len(tamper_events(m)) == 1             # once, not every poll
    v = m.request("credit")
    assert v["tamper"] == ["imbalance"] and v["supply"] == "closed"      # report only by default
    shown = []
    m.on_display = lambda lines: shown.append("\n".join(lines))
    m.run_for(60)                                 # the screens cycle: the warnings one says so
    assert any("Fraude: controle" in t for t in shown), shown[-3:]
    m.power_cut()
    m.run_for(60)
    assert m.request("credit")["tamper"] == ["imbalance"] and tamper_events(m) == []   # kept, not re-reported
    m.world.tamper(bypass=0.0)
    r = m.request("clear_tamper")
    assert r["cleared"] == ["imbalance"]
    m.run_for(60)
    assert m.request("credit")["tamper"] == [] and tamper_events(m) == []


def test_swapped_line_terminals_are_reported_as_reverse(meters):
    m = meters()
    m.world.tamper(line_reversed=True)
    m.run_for(30)                                 # 2 kW backwards: 2 Wh in 3.6 s
    ev = tamper_events(m)
    assert [e["kind"] for e in ev] == ["reverse"] and ev[0]["export_wh"] >= 2
    assert m.request("credit")["tamper"] == ["reverse"]
    # put right and cleared: re-armed from the export registered so far, also after a reboot
    m.world.tamper(line_reversed=False)
    m.request("clear_tamper")
    m.run_for(5)
    m.power_cut()
    m.run_for(30)
    assert tamper_events(m) == [] and m.request("credit")["tamper"] == []


def test_opened_cover_disconnects_when_the_utility_chose_so_and_clearing_reconnects(meters):
    m = meters(tamper_cfg={"disconnect": 1})
    assert m.world.relay_closed
    m.set_cover(True)
    m.run_for(3)
    assert [e["kind"] for e in tamper_events(m)] == ["cover"]
    assert not m.world.relay_closed and "TAMPER" in m.request("credit")["reasons"]
    m.power_cut()                                 # still open after a reboot
    m.run_for(5)
    assert not m.world.relay_closed
    m.set_cover(False)
    m.request("clear_tamper")
    m.run_for(3)
    assert m.world.relay_closed and m.request("credit")["tamper"] == []


def test_bad_tamper_settings_are_refused_and_the_defaults_kept(meters):
    m = meters(tamper_cfg={"hold_s": -1})
    evs = [e[3] for e in m.request("events")["events"] if e[2] == "config_invalid"]
    assert evs and evs[0]["key"] == "prepaid" and "hold_s" in evs[0]["error"]


# -- the rules, under CPython ---------------------------------------------------------------------------
class Reading:
    irms_ma = 0
    irms_n_ma = 0


class Meter:
    def __init__(self):
        self.reading = Reading()
        self.export_wh = 0


class Supply:
    def __init__(self):
        self.mask = 0

    def set_reason(self, r):
        self.mask |= r

    def clear_reason(self, r):
        self.mask &= ~r


def rig(**cfg):
    m, c, s, ev = Meter(), FakeClock(), Supply(), []
    return tamper.Tamper(m, c, lambda k, d: ev.append(d), s, None, cfg), m, c, s, ev


@pytest.mark.parametrize("line, neutral, flagged", [
    (10000, 10000, False), (10000, 8000, False), (10000, 7400, True), (7400, 10000, True),
    (400, 0, False),            # below min_ma: noise and anti-creep, not a tamper
    (0, 600, True),             # the whole current around the meter
])
def test_imbalance_rule(line, neutral, flagged):
    t, m, c, s, ev = rig()
    m.reading.irms_ma, m.reading.irms_n_ma = line, neutral
    for _ in range(40):
        t.poll()
        c.ms += 1000
    assert bool(ev) == flagged
    if flagged:
        assert ev[0]["side"] == ("neutral" if neutral > line else "line")


def test_a_chip_without_a_neutral_channel_never_flags_imbalance():
    t, m, c, s, ev = rig()
    m.reading.irms_ma, m.reading.irms_n_ma = 10000, None
    for _ in range(40):
        t.poll()
        c.ms += 1000
    assert ev == [], "imbalance flagged without a neutral reading: %r" % ev


def test_an_interrupted_imbalance_restarts_the_hold_time():
    t, m, c, s, ev = rig(hold_s=10)
    for i in range(30):
        m.reading.irms_ma, m.reading.irms_n_ma = (10000, 5000) if i % 8 else (10000, 10000)
        t.poll()
        c.ms += 1000
    assert ev == []


def test_unknown_or_negative_settings_raise():
    for cfg in ({"hold": 3}, {"min_ma": -1}, {"disconnect": True}):
        with pytest.raises(ValueError):
            rig(**cfg)
