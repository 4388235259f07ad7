"""The same firmware core behaviour under the real MicroPython interpreter with a 96 KB heap cap."""
from mpyrun import run_micropython

CLOCK = r'''
class Clock:
    def __init__(self, ms): self.ms = ms; self.time_valid = True
    def ticks_ms(self): return self.ms & 0x3FFFFFFF
    def ticks_add(self, t, d): return (t + d) & 0x3FFFFFFF
    def ticks_diff(self, a, b): return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    def time(self): return 1767571200 + self.ms // 1000
    def sleep_ms(self, ms): self.ms += ms
    def sleep_until(self, t):
        d = self.ticks_diff(t, self.ticks_ms())
        self.ms += d if d > 0 else 0
        return False
'''


def test_scheduler_period_across_ticks_wrap_under_micropython():
    out = run_micropython(CLOCK + r'''
from sched import Scheduler
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
    out = run_micropython(CLOCK + r'''
from metering.chips import atm90e26 as drv
from metering.meter import Meter
print(hex(drv.checksum([0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422])))
print(hex(drv.checksum([0x6720, 0x7A13, 0x7530, 0, 0, 0, 0, 0, 0, 0])))
print(drv.sign_magnitude(0x83E8), drv.twos16(0xFFFE))
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
print(m.import_wh * m.den + m.import_rem == total * 1000, m.import_rem < m.den)
''')
    assert out.split() == ["0x55cb", "0x6bb9", "-1000", "-2", "True", "True"]


def test_service_port_and_config_under_micropython():
    out = run_micropython(r'''
import json
from service.port import ServicePort
import config
class S:
    def __init__(self): self.i = [b'{"id": 1, "cmd": "ping"}\nbad\n' + b'y' * 2000 + b'\n']; self.o = b''
    def read(self): return self.i.pop(0) if self.i else None
    def write(self, d): self.o += d
s = S()
p = ServicePort(s, 256)
p.command("ping", lambda r: {"pong": True})
p.poll()
for line in s.o.split(b"\n")[:3]:
    r = json.loads(line)
    print(r["ok"], "pong" in r)
print(config.validate("meter_period_s", 60))
try:
    config.validate("meter_period_s", 0)
except ValueError as e:
    print("refused")
''')
    assert out.split() == ["True", "True", "False", "False", "False", "False", "60", "refused"]
