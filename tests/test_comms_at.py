"""The AT command engine: results and errors, URCs between a command and its result, the SMS
prompt, timeouts counted toward a hung modem, bounded lines, data mode and its end markers."""
from comms.at import ATEngine, Cmd, CONNECT, ESCAPE, LINE
from comms import dialect as dl
from comms_support import FakeClock


class Stream:
    def __init__(self):
        self.rx = []
        self.tx = b""

    def read(self):
        return self.rx.pop(0) if self.rx else None

    def write(self, b):
        self.tx += bytes(b)


def engine():
    clock = FakeClock()
    s = Stream()
    urcs = []
    e = ATEngine(s, clock, urcs.append)
    return e, s, clock, urcs


def test_ok_error_and_cme_codes():
    e, s, clock, _ = engine()
    a = e.send("AT")
    b = e.send("AT+CPIN?")
    c = e.send("AT+FOO")
    e.poll()
    assert s.tx == b"AT\r"  # one command at a time
    s.rx.append(b"\r\nOK\r\n")
    e.poll()
    assert a.ok and s.tx == b"AT\rAT+CPIN?\r"
    s.rx.append(b"\r\n+CME ERROR: 10\r\n")
    e.poll()
    assert b.result == "ERROR" and b.code == 10 and not b.ok
    s.rx.append(b"\r\nERROR\r\n")
    e.poll()
    assert c.result == "ERROR" and c.code is None


def test_urcs_between_command_and_result_are_dispatched_not_taken_as_response():
    e, s, clock, urcs = engine()
    c = e.send("AT+CSQ")
    e.poll()
    s.rx.append(b'\r\n+CMTI: "SM",3\r\n\r\n+CSQ: 17,99\r\n\r\n+CREG: 5\r\nRING\r\n\r\nOK\r\n')
    e.poll()
    assert c.ok and c.lines == ["+CSQ: 17,99"]
    assert urcs == ['+CMTI: "SM",3', "+CREG: 5", "RING"]
    assert dl.parse_csq(c) == -79


def test_response_with_same_name_as_urc_belongs_to_the_command():
    e, s, clock, urcs = engine()
    c = e.send("AT+CREG?")
    e.poll()
    s.rx.append(b"\r\n+CREG: 0,5\r\n\r\nOK\r\n")
    e.poll()
    assert urcs == [] and dl.parse_reg(c) == 5


def test_lines_split_across_reads_and_echo_ignored():
    e, s, clock, _ = engine()
    c = e.send("AT+COPS?")
    e.poll()
    for piece in (b"AT+CO", b"PS?\r\r\n+COPS: 0,0,\"Maur", b"itel\",7\r", b"\n\r\nO", b"K\r\n"):
        s.rx.append(piece)
        e.poll()
    assert c.ok and dl.parse_cops(c) == "Mauritel"


def test_sms_prompt_sends_payload_with_ctrl_z():
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT+CMGS=23", 60000, payload=b"0011"))
    e.poll()
    s.rx.append(b"\r\n> ")
    e.poll()
    assert s.tx.endswith(b"AT+CMGS=23\r0011\x1a")
    s.rx.append(b"\r\n+CMGS: 4\r\n\r\nOK\r\n")
    e.poll()
    assert c.ok and c.find("+CMGS:") == "4"


def test_timeouts_count_consecutively_and_reset_on_an_answer():
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT", 1000))
    e.poll()
    clock.advance(999)
    e.poll()
    assert not c.done()
    clock.advance(1)
    e.poll()
    assert c.result == "TIMEOUT" and e.silent == 1
    for i in (2, 3):                 # the engine's own probes time out in turn
        clock.advance(1000)
        e.poll()
        assert e.silent == i
    s.rx.append(b"OK\r\n")
    e.poll()
    assert e.silent == 0


def test_a_hung_modem_is_found_in_seconds_not_in_long_command_timeouts():
    """Regression: a modem that hung during the SMS outbox cost three 60 s AT+CMGS timeouts (182 s of
    simulated time) before the supervisor's hang limit of 3 power-cycled it."""
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT+CMGS=23", 60000, payload=b"0011"))
    later = e.send(Cmd("AT+CSQ"))
    e.poll()
    clock.advance(4999)
    e.poll()
    assert not c.done()
    clock.advance(1)             # a live modem prompts at once: no "> " in 5 s is a timeout
    e.poll()
    assert c.result == "TIMEOUT" and e.silent == 1
    assert s.tx.endswith(b"AT\r"), s.tx          # a bare AT, before the commands queued
    clock.advance(1000)
    e.poll()
    assert e.silent == 2 and later._sent is False
    clock.advance(1000)
    e.poll()
    assert e.silent == 3               # 7 s in all: the supervisor's hang limit power-cycles now
    s.rx.append(b"\r\nOK\r\n")         # or the modem was only slow: it answers the probe
    e.poll()
    assert e.silent == 0 and s.tx.endswith(b"AT+CSQ\r")


def test_a_prompted_command_gets_its_whole_timeout_after_the_prompt():
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT+CMGS=23", 60000, payload=b"0011"))
    e.poll()
    clock.advance(1000)
    s.rx.append(b"\r\n> ")
    e.poll()
    clock.advance(59999)
    e.poll()
    assert not c.done()
    s.rx.append(b"\r\n+CMGS: 4\r\n\r\nOK\r\n")
    e.poll()
    assert c.ok


def test_overlong_and_non_ascii_lines_are_dropped_and_counted():
    e, s, clock, urcs = engine()
    s.rx.append(b"A" * 600 + b"\r\n\x01\x02bad\r\n+CREG: 1\r\n")
    e.poll()
    assert e.stats["overlong"] == 1 and e.stats["garbage"] == 1
    assert urcs == ["+CREG: 1"]


def test_line_kind_takes_first_line_as_result():
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT+CIFSR", 5000, LINE))
    e.poll()
    s.rx.append(b"\r\n10.1.2.3\r\n")
    e.poll()
    assert c.ok and c.lines == ["10.1.2.3"]


def test_connect_enters_data_mode_and_bytes_after_it_go_to_the_sink():
    e, s, clock, _ = engine()
    got = []
    e.sink = got.append
    c = e.send(Cmd('AT+CIPSTART="TCP","h","1"', 5000, CONNECT))
    e.poll()
    s.rx.append(b"\r\nOK\r\n")
    e.poll()
    assert not c.done()  # SIM800: OK comes before CONNECT
    s.rx.append(b"\r\nCONNECT\r\n\x20\x02\x00\x00")
    e.poll()
    assert c.result == "CONNECT" and e.data_mode
    assert b"".join(got) == b"\x20\x02\x00\x00"
    e.write_data(b"\xc0\x00")
    assert s.tx.endswith(b"\xc0\x00")


def test_connect_fail_is_a_failure():
    e, s, clock, _ = engine()
    c = e.send(Cmd("AT+CIPSTART", 5000, CONNECT))
    e.poll()
    s.rx.append(b"\r\nCONNECT FAIL\r\n")
    e.poll()
    assert c.result == "CONNECT FAIL" and not e.data_mode


def _data_engine():
    e, s, clock, urcs = engine()
    got = []
    closed = []
    e.sink = got.append
    e.on_closed = lambda: closed.append(1)
    e.send(Cmd("ATO", 5000, CONNECT))
    e.poll()
    s.rx.append(b"\r\nCONNECT 115200\r\n")
    e.poll()
    return e, s, clock, urcs, got, closed


def test_closed_marker_split_across_reads_ends_data_mode():
    e, s, clock, urcs, got, closed = _data_engine()
    s.rx.append(b"\xd0\x00\r\nCLO")
    e.poll()
    assert b"".join(got) == b"\xd0\x00" and e.data_mode
    s.rx.append(b"SED\r\n\r\n+CMTI: \"SM\",1\r\n")
    e.poll()
    assert closed == [1] and not e.data_mode and urcs == ['+CMTI: "SM",1']
    assert b"".join(got) == b"\xd0\x00"


def test_held_back_possible_marker_is_released_when_nothing_follows():
    e, s, clock, urcs, got, closed = _data_engine()
    s.rx.append(b"\x40\x02\r\n")  # a PUBACK whose packet id is 0x0d0a
    e.poll()
    clock.advance(300)
    e.poll()
    assert b"".join(got) == b"\x40\x02\r\n" and e.data_mode and not closed


def test_escape_waits_for_guard_time_then_returns_to_command_mode():
    e, s, clock, urcs, got, closed = _data_engine()
    e.write_data(b"\xc0\x00")
    c = e.send(Cmd("+++", 2000, ESCAPE))
    q = e.send("AT+CMGL=4")
    e.poll()
    assert not s.tx.endswith(b"+++")  # no silence yet
    clock.advance(1000)
    e.poll()
    assert s.tx.endswith(b"+++")
    s.rx.append(b"\x30\x03\x00\x01a\r\nOK\r\n")  # data still arriving before the OK
    e.poll()
    assert c.ok and not e.data_mode and b"".join(got) == b"\x30\x03\x00\x01a"
    assert s.tx.endswith(b"AT+CMGL=4\r") and not q.done()


def test_commands_wait_while_in_data_mode():
    e, s, clock, urcs, got, closed = _data_engine()
    e.send("AT+CSQ")
    e.poll()
    assert b"AT+CSQ" not in s.tx


def test_cclk_with_quarter_hour_zone_gives_utc():
    # 2026-11-25 12:30:00 local at +08 quarters (+2 h) is 10:30:00 UTC.
    assert dl.parse_cclk('"26/11/25,12:30:00+08"') == 1795602600
    assert dl.parse_cclk('"26/11/25,08:30:00-08"') == 1795602600
    assert dl.parse_cclk('"80/01/06,00:00:00+00"') is None or dl.parse_cclk('"00/01/01,00:00:00+00"') is None
    assert dl.parse_cclk('"00/01/01,00:00:00+00"') is None
    assert dl.parse_cclk("garbage") is None
    assert dl.parse_cclk('"26/02/30,00:00:00+00"') is None
