"""The simulated SIMCom modem driven by a scripted AT client in virtual time, the way the runner drives
it: boot and registration over time, network time, the transparent TCP bridge to a real MQTT broker
(CONNECT/CONNACK through it), +++/ATO, drops, coverage loss, hang + power cycle, reboot, garbage, delay."""
import random
import socket
import threading

import pytest

from host_tools.headend.broker import EmbeddedBroker
from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
from host_tools.sim.modem import make_modem
from host_tools.sim.modem.smsc import SMSC

EPOCH = 1767571200   # 2026-01-05 00:00:00 UTC
FINAL = ("OK", "ERROR", "CONNECT", "CONNECT 115200", "CONNECT FAIL", "NO CARRIER", "SHUT OK", "CLOSE OK")


class ATClient:
    """A scripted firmware: writes AT lines, advances virtual time, collects what the modem says."""

    def __init__(self, seed=1, **kw):
        self.now = 0
        kw.setdefault("smsc", SMSC())
        self.m = make_modem(random.Random(seed), clock=lambda: self.now, epoch_s=EPOCH, **kw)
        self.rx = bytearray()

    def advance(self, ms, step=20):
        end = self.now + ms
        while self.now < end:
            nxt = self.m.next_event_ms()
            t = min(end, self.now + step)
            if nxt is not None and self.now < nxt < t:
                t = nxt
            self.now = t
            self.m.poll(t, wait_s=0.5 if self.m.expecting_reply() else 0.0)
            while self.m.has_data():
                self.rx += self.m.read(256)

    def settle(self, wall_s=0.3):
        """Let real sockets catch up (a server in another thread) without moving virtual time much."""
        import time
        end = time.monotonic() + wall_s
        while time.monotonic() < end:
            time.sleep(0.01)
            self.advance(1)

    def take(self):
        out, self.rx = bytes(self.rx), bytearray()
        return out

    def lines(self):
        return [ln.strip() for ln in self.take().decode("latin-1").split("\r\n") if ln.strip()]

    def wait_for(self, text, timeout_ms=20000):
        """Advance until `text` appears in what the modem sent; returns everything up to then."""
        end = self.now + timeout_ms
        while self.now < end:
            self.advance(20)
            i = self.rx.find(text.encode("latin-1"))
            if i >= 0:
                upto = bytes(self.rx[:i + len(text)])
                del self.rx[:i + len(text)]
                return upto.decode("latin-1")
        raise AssertionError(f"{text!r} not seen by {self.now} ms; got {bytes(self.rx)!r}")

    def at(self, cmd, timeout_ms=20000, final=FINAL):
        self.take()
        self.m.from_firmware(cmd.encode("latin-1") + b"\r")
        end = self.now + timeout_ms
        while self.now < end:
            self.advance(10)
            lines = [ln for ln in self.rx.decode("latin-1").split("\r\n") if ln]
            if any(ln in final or ln.startswith("+CMS ERROR") for ln in lines) and self.rx.endswith(b"\r\n"):
                return self.lines()
        raise AssertionError(f"no final result for {cmd!r}: {bytes(self.rx)!r}")

    def boot(self):
        while not self.m.ready:
            self.advance(100)
        self.advance(100)
        self.take()
        assert self.at("ATE0")[-1] == "OK"
        for _ in range(100):
            if "+CREG: 0,1" in self.at("AT+CREG?"):
                return
            self.advance(500)
        raise AssertionError("never registered")

    def send_raw(self, data):
        self.m.from_firmware(data)


@pytest.fixture(scope="module")
def amqtt_broker():
    b = EmbeddedBroker().start()
    yield b
    b.stop()


class EchoServer:
    """A TCP echo server on loopback: bytes through the bridge come back unchanged."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.received = bytearray()
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        while True:
            try:
                d = c.recv(4096)
            except OSError:
                return
            if not d:
                return
            self.received += d
            c.sendall(d)

    def close(self):
        self.srv.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def mqtt_connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x00\x00\x78"          # flags 0: clean_session false, keepalive 120 s
    body = var + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def open_sim7600_link(c, host="headend.example.net", port=1883):
    assert c.at('AT+CGDCONT=1,"IP","internet"')[-1] == "OK"
    assert c.at("AT+CIPMODE=1")[-1] == "OK"
    assert c.at("AT+NETOPEN")[-1] == "OK"
    c.wait_for("+NETOPEN: 0")
    return c.at(f'AT+CIPOPEN=0,"TCP","{host}",{port}')


def test_boot_urcs_then_registration_takes_seconds():
    c = ATClient()
    c.advance(1000)
    assert c.take() == b""                     # still booting: nothing yet
    c.wait_for("+CPIN: READY")
    c.wait_for("SMS DONE")
    assert c.at("AT")[-1] == "OK"
    t0 = c.now
    assert "+CREG: 0,2" in c.at("AT+CREG?")    # searching at first
    c.boot()
    assert 1000 < c.now - t0 < 20000
    assert "+CEREG: 0,1" in c.at("AT+CEREG?") and "+CGREG: 0,1" in c.at("AT+CGREG?")
    assert any(ln.startswith('+COPS: 0,0,"') for ln in c.at("AT+COPS?"))
    rssi = int(next(ln for ln in c.at("AT+CSQ") if ln.startswith("+CSQ:")).split()[1].split(",")[0])
    assert 0 <= rssi <= 31
    assert c.at("AT+BOGUS")[-1] == "ERROR"


def test_network_time_from_world_clock_in_quarter_hour_zone_zero():
    c = ATClient()
    c.wait_for("SMS DONE")
    c.at("ATE0")
    assert '+CCLK: "80/01/06' in c.at("AT+CCLK?")[0]   # no network time before registration
    c.boot()
    c.advance(65000)
    line = c.at("AT+CCLK?")[0]
    secs = c.now // 1000
    assert line == '+CCLK: "26/01/05,00:%02d:%02d+00"' % (secs // 60, secs % 60)


def test_echo_on_by_default_and_off_after_ate0():
    c = ATClient()
    c.wait_for("PB DONE")
    c.advance(100)
    c.take()
    c.send_raw(b"AT\r")
    c.advance(100)
    assert c.take().startswith(b"AT\r")
    c.at("ATE0")
    c.send_raw(b"AT\r")
    c.advance(100)
    assert c.take() == b"\r\nOK\r\n"


@pytest.mark.parametrize("broker_kind", ["amqtt", "mosquitto"])
def test_mqtt_connect_connack_through_transparent_bridge(broker_kind, amqtt_broker):
    if broker_kind == "mosquitto":
        if not mosquitto_path():
            pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
        broker = Mosquitto().start()
    else:
        broker = amqtt_broker
    try:
        c = ATClient(broker=("127.0.0.1", broker.port))
        c.boot()
        t0 = c.now
        assert open_sim7600_link(c, port=8883)[-1] == "CONNECT 115200"
        assert 100 <= c.now - t0
        assert c.m.connect_log == [("headend.example.net", 8883)]
        c.send_raw(mqtt_connect_packet("sim-42"))
        assert c.m.expecting_reply()             # lockstep runs wait for the broker's answer
        for _ in range(50):
            c.advance(20)
            if len(c.rx) >= 4:
                break
        assert c.take()[:4] == b"\x20\x02\x00\x00"        # CONNACK, accepted
        assert not c.m.expecting_reply()
        c.send_raw(b"\xc0\x00")                            # PINGREQ
        c.advance(20)
        for _ in range(50):
            c.advance(20)
            if c.rx:
                break
        assert c.take() == b"\xd0\x00"                     # PINGRESP
    finally:
        if broker_kind == "mosquitto":
            broker.stop()


def test_escape_needs_guard_time_and_ato_resumes_data():
    echo = EchoServer()
    try:
        c = ATClient(broker=("127.0.0.1", echo.port))
        c.boot()
        assert open_sim7600_link(c)[-1] == "CONNECT 115200"
        c.send_raw(b"abc+++def")                 # '+++' inside data: no guard time, so it is data
        c.settle()
        c.advance(1500)
        assert c.take() == b"abc+++def"
        c.advance(1100)
        c.send_raw(b"+++")
        c.advance(500)
        assert c.take() == b""                   # not yet: 1 s of silence must follow
        c.advance(700)
        assert c.take() == b"\r\nOK\r\n"
        assert c.at("AT+CSQ")[-1] == "OK"        # command mode while the link stays up
        assert c.at("ATO")[-1] == "CONNECT 115200"
        c.send_raw(b"xyz")
        c.settle()
        assert c.take() == b"xyz"
        assert bytes(echo.received) == b"abc+++defxyz"
        c.advance(1100)
        c.send_raw(b"+++")
        c.advance(1200)
        c.take()
        assert c.at("AT+CIPCLOSE=0")[-1] == "OK"
        c.advance(200)
        assert c.at("AT+NETCLOSE")[-1] == "OK"
    finally:
        echo.close()


def test_drop_link_and_far_end_close_show_closed():
    echo = EchoServer()
    try:
        c = ATClient(broker=("127.0.0.1", echo.port))
        c.boot()
        assert open_sim7600_link(c)[-1] == "CONNECT 115200"
        c.m.drop_link()
        c.advance(100)
        assert "CLOSED" in c.lines()
        assert c.at("AT")[-1] == "OK"            # back in command mode
        assert c.at('AT+CIPOPEN=0,"TCP","h",1')[-1] == "CONNECT 115200"
        c.settle()
        echo.close()                             # the server goes away
        c.settle()
        assert "CLOSED" in c.lines()
    finally:
        echo.close()


def test_coverage_loss_closes_network_unexpectedly_and_registration_recovers():
    echo = EchoServer()
    try:
        c = ATClient(broker=("127.0.0.1", echo.port))
        c.boot()
        assert open_sim7600_link(c)[-1] == "CONNECT 115200"
        c.m.set_coverage(False)
        c.advance(100)
        lines = c.lines()
        assert "CLOSED" in lines and "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" in lines
        assert "+CREG: 0,2" in c.at("AT+CREG?")
        assert "+CSQ: 99,99" in c.at("AT+CSQ")
        assert c.at("AT+NETOPEN")[-1] == "OK"
        c.wait_for("+NETOPEN: 1")                # no service: opening fails
        c.m.set_coverage(True)
        c.advance(9000)
        assert "+CREG: 0,1" in c.at("AT+CREG?")
    finally:
        echo.close()


def test_broker_unreachable_gives_connect_fail():
    from host_tools.headend.broker import free_port
    c = ATClient(broker=("127.0.0.1", free_port()))
    c.boot()
    assert open_sim7600_link(c)[-1] == "CONNECT FAIL"


def test_hang_until_power_cycle_through_power_pin():
    c = ATClient()
    c.boot()
    c.m.hang()
    c.send_raw(b"AT\r")
    c.advance(5000)
    assert c.take() == b""
    c.m.set_power(False)
    c.advance(500)
    c.send_raw(b"AT\r")
    c.advance(500)
    assert c.take() == b""                       # off
    c.m.set_power(True)
    c.wait_for("RDY")
    c.wait_for("SMS DONE")
    assert c.at("AT")[-1] == "OK"


def test_reset_pin_clears_hang_and_reboot_loses_link():
    echo = EchoServer()
    try:
        c = ATClient(broker=("127.0.0.1", echo.port))
        c.boot()
        c.m.hang()
        c.m.reset()
        c.boot()
        assert open_sim7600_link(c)[-1] == "CONNECT 115200"
        c.m.reboot()
        out = c.wait_for("SMS DONE")
        assert "RDY" in out
        assert c.at("AT")[-2:] == ["AT", "OK"]    # echo is back on after a reboot
        assert c.m._sock is None
    finally:
        echo.close()


def test_garbage_lines_injected_but_results_still_arrive():
    c = ATClient(seed=3)
    c.boot()
    c.m.set_garbage(1.0)
    raw = []
    for _ in range(5):
        raw += c.at("AT")
    assert raw.count("OK") == 5 and len(raw) > 5
    c.m.set_garbage(0)
    assert c.at("AT") == ["OK"]


def test_injected_delay_holds_answers_back():
    c = ATClient()
    c.boot()
    c.m.set_delay_ms(3000)
    c.send_raw(b"AT\r")
    c.advance(2500)
    assert c.take() == b""
    c.advance(1000)
    assert c.take() == b"\r\nOK\r\n"


def test_sim800_dialect_opens_tcp_with_cipstart(amqtt_broker):
    c = ATClient(dialect="sim800", broker=("127.0.0.1", amqtt_broker.port))
    c.boot()
    assert c.at("AT+CEREG?")[-1] == "ERROR"
    assert c.at('AT+CSTT="internet"')[-1] == "OK"
    assert c.at("AT+CIICR")[-1] == "OK"
    c.take()
    c.send_raw(b"AT+CIFSR\r")
    c.advance(200)
    assert c.lines()[0].startswith("10.")
    assert c.at("AT+CIPMODE=1")[-1] == "OK"
    assert c.at('AT+CIPSTART="TCP","headend.example.net","1883"')[-1] == "OK"
    c.wait_for("CONNECT\r\n")
    c.send_raw(mqtt_connect_packet("sim-800"))
    for _ in range(100):
        c.advance(20)
        if len(c.rx) >= 4:
            break
    assert c.take()[:4] == b"\x20\x02\x00\x00"
    c.m.set_coverage(False)
    c.advance(50)
    assert "+PDP: DEACT" in c.lines()
