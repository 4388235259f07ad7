"""The test doubles' own behaviour: the one fake clock (tests/mpy_support/fakeclock.py), on CPython and
under MicroPython, and the comms doubles (tests/comms_support.py)."""
from comms import mqttpkt as pkt
from comms_support import FakeModem, split_packets
from fakeclock import FakeClock
from mpyrun import expect, run_micropython, run_reported


def test_fake_clock_ticks_wrap_like_micropython():
    c = FakeClock(ms=(1 << 30) - 5)
    start = c.ticks_ms()
    c.advance(10)
    assert c.ticks_ms() == 5, c.ticks_ms()
    assert c.ticks_diff(c.ticks_ms(), start) == 10, c.ticks_diff(c.ticks_ms(), start)
    assert c.ticks_diff(c.ticks_add(start, 20), c.ticks_ms()) == 10


def test_fake_clock_set_time_moves_unix_time_only_and_makes_it_valid():
    c = FakeClock(ms=5000, time_valid=False)
    c.set_time(1795602600)
    c.advance(2000)
    assert (c.time(), c.ticks_ms(), c.time_valid, c.set_calls) == (1795602602, 7000, True, [1795602600])


def test_fake_clock_sleep_until_stops_at_input():
    c = FakeClock()
    c.input_at.append(400)
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True and c.ms == 400, c.ms
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False and c.ms == 1400, c.ms


def test_fake_clock_is_the_same_under_micropython():
    out = run_micropython("""
from fakeclock import FakeClock
c = FakeClock(ms=(1 << 30) - 5, epoch=1800000000)
s = c.ticks_ms()
c.advance(10)
print(c.ticks_ms(), c.ticks_diff(c.ticks_ms(), s), c.time())
""")
    assert out.split() == ["5", "10", str(1800000000 + ((1 << 30) + 5) // 1000)], out


def test_split_packets_keeps_incomplete_tail():
    whole = pkt.publish("a/b", b"x" * 200, 1, 7) + pkt.simple(pkt.PINGRESP)
    pkts, rest = split_packets(whole[:-1])
    assert len(pkts) == 1 and rest == whole[-2:-1], (pkts, rest)


def test_fake_modem_answers_echo_then_not_after_ate0():
    c = FakeClock()
    m = FakeModem(c)
    m.set_power(True)
    c.advance(600)
    m.read()
    m.write(b"AT\r")
    assert m.read() == b"AT\r\r\nOK\r\n"
    m.write(b"ATE0\r")
    m.read()
    m.write(b"AT+CSQ\r")
    assert m.read() == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_a_micropython_report_failure_names_each_value_that_differs():
    got, out = run_reported('report("credit", 120)\nreport("supply", "open")\nreport("raw", b"\\x01")\n')
    assert got == {"credit": 120, "supply": "open", "raw": "b'\\x01'"}, got
    try:
        expect(got, {"credit": 120, "supply": "closed", "tamper": []}, out)
    except AssertionError as e:
        msg = str(e)
    else:
        raise AssertionError("expect() accepted values that differ")
    assert "supply: got 'open', want 'closed'" in msg and "tamper: got '<not reported>', want []" in msg, msg
    assert "credit" not in msg.split("--- output")[0], msg
