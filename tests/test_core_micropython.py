"""The same firmware core behaviour under the real MicroPython interpreter with a 96 KB heap cap."""
from mpyrun import expect, run_micropython, run_reported

CLOCK = r'''
from fakeclock import FakeClock as Clock
'''


def test_scheduler_period_across_ticks_wrap_under_micropython():
    out = run_micropython(CLOCK + r'''
from app.sched import Scheduler
c = Clock((1 << 30) - 2500)
s = Scheduler(c)
seen = []
s.every("a", 1000, lambda: seen.append(c.ms))
for _ in range(8):
    s.step()
print(sorted(set(b - a for a, b in zip(seen, seen[1:]))), len(seen))
''')
    assert out.split() == ["[1000]", "8"]


def test_checksums_and_energy_arithmetic_under_micropython():
    got, out = run_reported(CLOCK + r'''
from metering.chips import atm90e26 as drv
from metering.meter import Meter
report("checksum_metering", hex(drv.checksum([0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422])))
report("checksum_calibration", hex(drv.checksum([0x6720, 0x7A13, 0x7530, 0, 0, 0, 0, 0, 0, 0])))
report("sign_magnitude_0x83e8", drv.sign_magnitude(0x83E8))
report("twos16_0xfffe", drv.twos16(0xFFFE))
class Ev:
    def emit(self, k, d=None): pass
class Chip:                 # the contract's energy side only: 0.1-pulse counts at 3200 imp/kWh
    readings = None
    den = 32000
    wrap = 65536
m = Meter(Chip(), Clock(0), Ev(), 3200, 21528)
total = 0
import random
random.seed(5)
for i in range(5000):
    n = random.getrandbits(10)
    total += n
    m.add_counts(n, 0)
# exact: Wh * 32000 + rem == counts * 1000
report("registered", m.import_wh * m.den + m.import_rem)
report("counted", total * 1000)
report("remainder_below_den", m.import_rem < m.den)
''')
    expect(got, {"checksum_metering": "0x55cb", "checksum_calibration": "0x6bb9", "sign_magnitude_0x83e8": -1000,
                 "twos16_0xfffe": -2, "remainder_below_den": True}, out)
    assert got["registered"] == got["counted"] > 0, (got["registered"], got["counted"])   # exact, no drift


def test_service_port_and_config_under_micropython():
    got, out = run_reported(r'''
import json
from service.port import ServicePort
from app import settings as config
class S:
    def __init__(self): self.i = [b'{"id": 1, "cmd": "ping"}\nbad\n' + b'y' * 2000 + b'\n']; self.o = b''
    def read(self): return self.i.pop(0) if self.i else None
    def write(self, d): self.o += d
s = S()
p = ServicePort(s, 256)
p.command("ping", lambda r: {"pong": True})
p.poll()
for name, line in zip(("ping", "bad_json", "overlong"), s.o.split(b"\n")[:3]):
    r = json.loads(line)
    report(name, [r["ok"], "pong" in r])
report("meter_period_60", config.validate("meter_period_s", 60))
try:
    config.validate("meter_period_s", 0)
    report("meter_period_0", "accepted")
except ValueError as e:
    report("meter_period_0", "refused")
''')
    expect(got, {"ping": [True, True], "bad_json": [False, False], "overlong": [False, False],
                 "meter_period_60": 60, "meter_period_0": "refused"}, out)
