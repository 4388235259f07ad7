"""Arrears on the running meter's prepaid core (firmware/prepaid/core.py) under the real MicroPython
interpreter with a heap cap, on a littlefs RAM flash: a load is committed with its reference (the same
reference twice loads once, across a reboot too), the invariant holds after it, top-ups recover the share,
the supply stays closed with arrears owed, and a power cut at every flash write of a load leaves the
meter with the load done once or not at all - never twice, never half (debt without its reference)."""
import json

from mpyrun import run_micropython
from test_store_powercut_mpy import HARNESS

# The rig of the store's power-cut tests (a formatted RAM flash at /fl, cut/reboot/restore, the sweep) and
# the few parts of a board and a meter the prepaid core needs.
RIG = HARNESS + r'''
from fakeclock import FakeClock
from prepaid.core import Prepaid
from metering.chip import Readings


class Pin:
    def __init__(self, v=0):
        self.v = v
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class Meter:
    def __init__(self):
        self.reading = Readings()
        self.import_wh = self.import_rem = self.export_wh = self.export_rem = 0
        self.den = 1
        self.listeners = []
    def poll(self):
        pass


class Events:
    def __init__(self):
        self.counts = {}
        self.seen = []
    def emit(self, kind, data=None):
        self.seen.append((kind, data))


class Board:
    info = {"relay": {"pulse_ms": 60}, "pins": {}}
    def __init__(self, clock):
        self.clock = clock
        self.pins = {}
    def pin(self, name):
        if name not in self.pins:
            self.pins[name] = Pin()
        return self.pins[name]
    def reset(self):
        raise RuntimeError("reset")     # the meter restarts: this boot's code runs no further


CFG = {"ledger": {"opening_credit": 3000, "debt_share_bp": 2500}}


def boot(clock=None):
    clock = clock or FakeClock()
    ev = Events()
    p = Prepaid(Board(clock), Meter(), Store(MP + "/st"), ev, CFG)
    return p, ev
'''


def _result(out):
    rows = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(rows) == 1, out
    return rows[0]


def test_a_load_is_committed_once_per_ref_recovered_by_top_ups_and_never_opens_the_supply():
    code = RIG + r'''
rig = Rig(16)
p, ev = boot()
p.poll()
closed0 = p.supply.closed
first = p.load_debt(5000, "arr-1")
again = p.load_debt(5000, "arr-1")
led = p.ledger
after_load = [led.credit, led.debt, led.arrears, led.cleared, led.check()]
p.poll()
closed1 = p.supply.closed
p2, ev2 = boot()          # a reboot: the load and its reference come back from flash
led2 = p2.ledger
reboot = [led2.credit, led2.debt, led2.arrears, led2.cleared, led2.check()]
third = p2.load_debt(5000, "arr-1")
split = p2.topup(4000, "sts:9")
rec = [e[1] for e in ev2.seen if e[0] == "debt_recovered"]
p2.poll()
result({"first": first, "again": again, "third": third, "after_load": after_load, "reboot": reboot,
        "closed": [closed0, closed1, p2.supply.closed], "split": [split["debt"], split["credit"]],
        "after_topup": [led2.credit, led2.debt, led2.arrears, led2.check()], "recovered": rec})
'''
    r = _result(run_micropython(code, heap="384k"))
    assert (r["first"], r["again"], r["third"]) == (True, False, False), r
    assert r["after_load"] == [3000, 5000, 5000, 5000, None], r
    assert r["reboot"] == r["after_load"], r
    assert r["closed"] == [True, True, True], "arrears opened the supply: %r" % r
    assert r["split"] == [1000, 3000], r
    assert r["after_topup"] == [6000, 4000, 4000, None], r
    assert r["recovered"] == [{"amount": 1000, "left": 4000, "ref": "sts:9", "arrears": 1000,
                               "arrears_left": 4000}], r


def test_a_power_cut_at_every_flash_write_of_a_load_loads_it_once_or_not_at_all():
    code = RIG + r'''
rig = Rig(16)
p, ev = boot()
p.topup(1000, "t0")
del p, ev
gc.collect()
snap = rig.snapshot()
bad = []
def act():
    p, ev = boot()
    p.load_debt(2500, "arr-9", 2000)
    if rig.dev.dead:
        raise OSError(5)    # the power died inside the load, whatever the dying flash let the code do
def chk():
    p, ev = boot()
    led = p.ledger
    state = "new" if led.debt == 2500 else "old" if led.debt == 0 else "half"
    if led.check() is not None or (state == "new") != ("arr-9" in p.debt_refs) or state == "half":
        bad.append([led.debt, led.arrears, led.check(), p.debt_refs])
    p.load_debt(2500, "arr-9", 2000)     # the head-end redelivers: loaded exactly once in the end
    if (led.debt, led.arrears, led.cleared, led.arr_bp) != (2500, 2500, 2500, 2000) or led.check() is not None:
        bad.append(["after retry", led.debt, led.arrears, led.cleared])
    return "old" if state == "old" else "new"
counts = sweep(rig, snap, act, chk, erases=True)
counts["bad"] = bad
result(counts)
'''
    r = _result(run_micropython(code, heap="384k", timeout=600))
    assert r["total"] > 0 and r["cuts"] == r["total"] and r["uncut"] == 0, r
    assert r["bad"] == [], r["bad"]
    assert r["old"] > 0 and r["new"] > 0 and r["new"] + r["old"] == r["cuts"], r
