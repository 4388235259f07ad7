"""The bearer behind the simulated modem (host_tools/sim/modem/linkprofile.py): on the `2g` profile a
known number of bytes crossing the data path takes the time its bandwidth and half the round trip say,
in virtual time, each way; on the default `lte` profile the bytes pass as they always did."""
import random

import pytest

from host_tools.sim.modem import linkprofile, make_modem

G2 = linkprofile.PROFILES["2g"]


class Pipe:
    """The broker's end of the bridge, in-process: what the modem sent (with the virtual time it was
    sent) and what the test pushes down."""

    def __init__(self, drive):
        self.drive = drive
        self.sent = []                 # (virtual ms, bytes)
        self.down = bytearray()

    def setblocking(self, flag):
        pass

    def setsockopt(self, *a):
        pass

    def send(self, data):
        self.sent.append((self.drive.now, bytes(data)))
        return len(data)

    def recv(self, n):
        if not self.down:
            raise BlockingIOError(11, "nothing waiting")
        out = bytes(self.down[:n])
        del self.down[:n]
        return out

    def close(self):
        pass


class Drive:
    """A scripted firmware in virtual time, stepping from one modem event to the next."""

    def __init__(self, link, seed=3):
        self.now = 0
        self.pipe = None
        self.rx = []                   # (virtual ms, bytes) as the firmware read them
        self.m = make_modem(random.Random(seed), "sim7600", broker=self, clock=lambda: self.now, epoch_s=0,
                            link=link)

    def connect(self):                 # the modem's broker interface
        self.pipe = Pipe(self)
        return self.pipe

    def until(self, t):
        while True:
            nxt = self.m.next_event_ms()
            step = t if nxt is None or nxt <= self.now or nxt > t else nxt
            self.now = max(self.now, step)
            self.m.poll(self.now)
            while self.m.has_data():
                self.rx.append((self.now, self.m.read(4096)))
            if self.now >= t:
                return

    def text(self):
        return b"".join(d for _, d in self.rx).decode("latin-1")

    def wait_for(self, what, limit_ms=30000):
        end = self.now + limit_ms
        while what not in self.text():
            assert self.now < end, "%r not seen: %r" % (what, self.text())
            self.until(self.now + 10)

    def at(self, cmd, final="OK"):
        self.rx = []
        self.m.from_firmware(cmd.encode() + b"\r")
        self.wait_for(final)

    def open_link(self):
        self.until(6000)
        self.at("ATE0")
        for _ in range(100):
            self.at("AT+CREG?")
            if "+CREG: 0,1" in self.text():
                break
            self.until(self.now + 500)
        self.at("AT+CIPMODE=1")
        self.at("AT+NETOPEN", "+NETOPEN: 0")
        t = self.now
        self.at('AT+CIPOPEN=0,"TCP","headend.example",1883', "CONNECT 115200")
        self.rx = []
        return self.now - t


def test_2g_profile_figures_are_the_gprs_class_10_ones():
    assert (G2.rtt_ms, G2.down_bps, G2.up_bps) == (650, 40000, 20000)
    assert not linkprofile.PROFILES["lte"].shaped and linkprofile.get(None) is linkprofile.PROFILES["lte"]
    with pytest.raises(ValueError):
        linkprofile.get("5g")


def test_uplink_bytes_reach_the_broker_after_their_airtime_and_half_the_round_trip():
    d = Drive("2g")
    d.open_link()
    t0 = d.now
    d.m.from_firmware(b"x" * 1000)          # 1000 bytes at 20 kbit/s: 400 ms on the air, then 325 ms
    d.until(t0 + 2000)
    times = [t for t, _ in d.pipe.sent]
    assert b"".join(b for _, b in d.pipe.sent) == b"x" * 1000
    assert times[0] == t0 + 326                   # the first byte: 0.4 ms + 325 ms, rounded up
    assert times[-1] == t0 + 1000 * 8000 // 20000 + 650 // 2


def test_downlink_bytes_reach_the_firmware_after_their_airtime_and_half_the_round_trip():
    d = Drive("2g")
    d.open_link()
    t1 = d.now
    d.pipe.down += bytes(range(256)) * 8      # 2048 bytes at 40 kbit/s: 409.6 ms, then 325 ms
    d.m.poll(t1)
    d.until(t1 + 2000)
    got = b"".join(b for _, b in d.rx)
    assert got == bytes(range(256)) * 8
    assert d.rx[0][0] == t1 + 428                 # the first 512-byte piece: 102.4 ms + 325 ms
    assert d.rx[-1][0] == t1 + 735                # all of it: ceil(409.6 + 325)


def test_a_round_trip_of_a_request_and_its_answer_takes_both_ways_airtime_and_the_rtt():
    d = Drive("2g")
    d.open_link()
    t0 = d.now
    d.m.from_firmware(b"q" * 60)              # a chunk request, about the size the meter sends
    while not d.pipe.sent or sum(len(b) for _, b in d.pipe.sent) < 60:
        d.until(d.now + 1)
    d.pipe.down += b"a" * 1400                # the chunk, answered at once by the far end
    d.m.poll(d.now)
    while sum(len(b) for _, b in d.rx) < 1400:
        d.until(d.now + 1)
    # 60 B up at 20 kbit/s (24 ms) + 1400 B down at 40 kbit/s (280 ms) + 650 ms round trip
    assert d.now - t0 == 24 + 280 + 650


def test_the_default_profile_adds_nothing_and_the_tcp_open_of_2g_adds_one_round_trip():
    lte = Drive(None)
    open_lte = lte.open_link()
    t0 = lte.now
    lte.m.from_firmware(b"x" * 1000)
    lte.until(t0 + 1)
    assert [t for t, _ in lte.pipe.sent] == [t0 + 1] and len(lte.pipe.sent[0][1]) == 1000
    lte.pipe.down += b"y" * 2048
    lte.m.poll(lte.now)
    assert lte.m.has_data() and lte.m.read(4096) == b"y" * 2048
    g2 = Drive("2g")
    assert g2.open_link() - open_lte == 650       # the same seeded draws; the handshake's round trip added


def test_what_was_in_the_air_is_lost_with_the_link():
    d = Drive("2g")
    d.open_link()
    d.m.from_firmware(b"x" * 100)
    d.m.drop_link()
    d.until(d.now + 2000)
    assert d.pipe.sent == []
