"""The meter's provisioning commands under CPython with fakes: identity and keys written in one atomic
step and never read back, factory lock, challenge-response sessions, wrong-MAC rate limit, self-test."""
import hashlib
import hmac
import json

import pytest

from app.events import Events
from fakes import FakeClock, Stream
from metering.chips import atm90e26 as chip
from provision import identity as ident
from provision.commands import ProvisionCommands
from provision import selftest
from provision.info import key_check_mac
from service.port import ServicePort
from store.records import Store

PAN = "600727000000000009"
STS_KEY = "f94b6ed353c3bfdb113e2d3a7ea3c41d"
MSG_KEY = "11" * 16 + "22" * 16
SVC_KEY = "a5" * 8 + "5a" * 8 + "c3" * 16


def provision_req(**over):
    req = {"pan": PAN, "serial": 9, "meter_id": PAN, "sts_key": STS_KEY, "sgc": "123457",
           "ti": 1, "krn": 1, "kt": 2, "message_key": MSG_KEY, "service_key": SVC_KEY,
           "broker": {"host": "127.0.0.1", "port": 1883, "username": PAN, "password": "s3cret-pass"}}
    req.update(over)
    return req


class Random:
    def __init__(self):
        self.n = 0

    def bytes(self, n):
        self.n += 1
        return hashlib.sha256(b"nonce%d" % self.n).digest()[:n]


class FakeMeter:
    def __init__(self, health=chip.OK):
        self.health = health
        self.polls = 0

    def poll(self):
        self.polls += 1


class FakeRelay:
    """A latching relay with feedback; `stuck` never moves."""

    def __init__(self, stuck=False):
        self.closed = False
        self.confirmed = False
        self.stuck = stuck
        self.moves = []

    def close(self):
        return self._move(True)

    def open(self):
        return self._move(False)

    def _move(self, want):
        self.moves.append(want)
        self.closed = want
        self.confirmed = not self.stuck
        return not self.stuck


class FakeBoard:
    info = {"name": "sim"}

    def __init__(self):
        self.random = Random()


class FakeApp:
    """What firmware/app/composition.py's App gives ProvisionCommands (and what the self-test inspects)."""

    version = "9.9.9"

    def __init__(self, root, clock=None, store=True):
        self.board = FakeBoard()
        self.clock = clock or FakeClock()
        self.events = Events(self.clock)
        self.store = Store(str(root)) if store else None
        self.stream = Stream()
        self.service = ServicePort(self.stream)
        self.service.command("cal_set", lambda req: {"done": True}, privileged=True)
        self.meter = FakeMeter()
        self.calibrated = True
        self.provision = ProvisionCommands(self.service, self.store, self.clock, self.board.random,
                                           self.events.emit, self.board.info["name"], self.version,
                                           lambda: selftest.run(self))

    def call(self, cmd, **args):
        args.update(cmd=cmd, id=1)
        self.stream.tx = bytearray()
        self.stream.rx.append(json.dumps(args).encode() + b"\n")
        self.service.poll()
        return json.loads(bytes(self.stream.tx))

    def kinds(self):
        return [e[2] for e in self.events.ring]


def host_mac(key_hex, nonce_hex):
    return hmac.new(bytes.fromhex(key_hex), bytes.fromhex(nonce_hex), hashlib.sha256).hexdigest()


def authenticate(app, key=SVC_KEY):
    nonce = app.call("auth_challenge")["nonce"]
    return app.call("auth", mac=host_mac(key, nonce))


@pytest.fixture
def app(tmp_path):
    return FakeApp(tmp_path / "flash")


def test_fresh_meter_is_unprovisioned_in_factory_mode_and_privileged_commands_are_open(app):
    r = app.call("identity")
    assert r["ok"] and r["provisioned"] is False and r["factory_mode"] is True and r["pan"] is None
    assert r["board"] == "sim" and r["firmware"] == "9.9.9"
    assert app.call("cal_set")["done"] is True


def test_provision_writes_identity_and_keys_in_one_commit_many(app, monkeypatch):
    calls = []
    real = app.store.commit_many
    monkeypatch.setattr(app.store, "commit_many", lambda recs: (calls.append(sorted(recs)), real(recs)))
    r = app.call("provision", **provision_req())
    assert r["ok"] and r["provisioned"] and r["pan"] == PAN and r["key_revision"] == 1
    assert calls == [["factory", "identity", "keys"]]      # factory mode recorded with them
    i = ident.load_identity(app.store)
    assert i["meter_id"] == PAN and i["serial"] == 9 and i["broker"] == {"host": "127.0.0.1", "port": 1883,
                                                                           "username": PAN}
    k = ident.load_keys(app.store)
    assert k["sts_key"] == bytes.fromhex(STS_KEY) and k["message_key"] == bytes.fromhex(MSG_KEY)
    assert k["service_key"] == bytes.fromhex(SVC_KEY) and k["broker_password"] == "s3cret-pass"
    assert (k["sgc"], k["ti"], k["krn"], k["kt"], k["ken"]) == ("123457", 1, 1, 2, 255)
    r = app.call("identity")
    assert r["provisioned"] and r["pan"] == PAN and r["key_revision"] == 1 and r["sts"]["sgc"] == "123457"


def test_no_reply_ever_contains_key_bytes(app):
    replies = [app.call("provision", **provision_req())]
    replies.append(app.call("identity"))
    for k in ("sts", "message", "service"):
        replies.append(app.call("key_check", key=k, challenge="00" * 16))
    text = json.dumps(replies)
    for secret in (STS_KEY, MSG_KEY, SVC_KEY, "s3cret-pass"):
        assert secret not in text


def test_key_check_answers_a_mac_the_host_can_verify_for_each_key(app):
    app.call("provision", **provision_req())
    ch = "0123456789abcdef" * 2
    for name, key in (("sts", STS_KEY), ("message", MSG_KEY), ("service", SVC_KEY)):
        r = app.call("key_check", key=name, challenge=ch)
        check = hmac.new(bytes.fromhex(key), b"meterkit key check", hashlib.sha256).digest()
        assert r["mac"] == hmac.new(check, bytes.fromhex(ch), hashlib.sha256).hexdigest()
        assert r["mac"] == key_check_mac(bytes.fromhex(key), bytes.fromhex(ch)).hex()
    assert "sts, message, service" in app.call("key_check", key="vending", challenge=ch)["error"]
    assert "bytes of hex" in app.call("key_check", key="sts", challenge="abc")["error"]


def test_key_check_cannot_be_used_as_an_oracle_for_the_auth_nonce(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    nonce = app.call("auth_challenge")["nonce"]
    oracle = app.call("key_check", key="service", challenge=nonce)["mac"]
    r = app.call("auth", mac=oracle)
    assert r["ok"] is False and "wrong MAC" in r["error"]
    assert app.call("cal_set")["ok"] is False


@pytest.mark.parametrize("over, words", [
    ({"pan": "600727000000000008"}, "Luhn"),
    ({"pan": "60072700000000009"}, "18 digits"),
    ({"sts_key": "00" * 16}, "blank key"),
    ({"message_key": "ab" * 31}, "64 hex digits"),
    ({"krn": 0}, "krn must be an integer 1..9"),
    ({"broker": {"host": "h", "port": 1883, "username": "u", "password": "short"}}, "password"),
])
def test_bad_provision_fields_are_refused_and_nothing_is_written(app, over, words):
    r = app.call("provision", **provision_req(**over))
    assert r["ok"] is False and words in r["error"]
    assert ident.load_identity(app.store) is None and ident.load_keys(app.store) is None


def test_provisioning_twice_is_refused_unless_rekey(app):
    assert app.call("provision", **provision_req())["ok"]
    r = app.call("provision", **provision_req(krn=2))
    assert r["ok"] is False and "already provisioned as PAN %s" % PAN in r["error"] and "rekey" in r["error"]
    assert ident.load_keys(app.store)["krn"] == 1
    r = app.call("provision", **provision_req(krn=2, rekey=True))
    assert r["ok"] and r["rekey"] is True and ident.load_keys(app.store)["krn"] == 2


def test_base_date_defaults_to_14_and_a_recorded_one_is_kept(tmp_path):
    """A request without base_date gets 14, as the host tools use everywhere (93's TIDs ran out in
    November 2024); a meter provisioned with 93 keeps its recorded 93 across reboots."""
    app = FakeApp(tmp_path / "new")
    assert app.call("provision", **provision_req())["ok"]
    assert ident.load_keys(app.store)["base_date"] == "14"
    assert app.call("identity")["sts"]["base_date"] == "14"
    old = FakeApp(tmp_path / "old")
    assert old.call("provision", **provision_req(base_date="93"))["ok"]
    rebooted = FakeApp(tmp_path / "old")
    assert ident.load_keys(rebooted.store)["base_date"] == "93"
    assert rebooted.call("identity")["sts"]["base_date"] == "93"


def test_firmware_dkga04_defaults_to_base_date_14():
    from tokens import dkga04
    ids = ("123457", 1, 1, 2, PAN)
    assert dkga04.message(*ids) == dkga04.message(*ids, "14") != dkga04.message(*ids, "93")
    vk = bytes(range(20))
    assert dkga04.decoder_key(vk, *ids) == dkga04.decoder_key(vk, *ids, "14")


def test_factory_lock_needs_provisioning_and_survives_a_reboot(tmp_path):
    app = FakeApp(tmp_path / "flash")
    r = app.call("factory_lock")
    assert r["ok"] is False and "provision first" in r["error"]
    app.call("provision", **provision_req())
    r = app.call("factory_lock")
    assert r["ok"] and r["factory_mode"] is False
    rebooted = FakeApp(tmp_path / "flash")
    assert rebooted.call("identity")["factory_mode"] is False
    r = rebooted.call("cal_set")
    assert r["ok"] is False and r["privileged"] and "authenticate first" in r["error"]
    assert rebooted.call("factory_lock")["privileged"] is True  # locked: even this needs a session


def test_auth_opens_a_bounded_session_ended_by_time_or_the_next_challenge(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    assert app.call("cal_set")["ok"] is False
    r = authenticate(app)
    assert r["ok"] and r["session_s"] == 600
    assert app.call("cal_set")["done"] is True
    app.clock.advance(599_000)
    assert app.call("cal_set")["ok"] is True
    app.clock.advance(1_000)
    assert "authenticate first" in app.call("cal_set")["error"]
    authenticate(app)
    app.call("auth_challenge")
    assert app.call("cal_set")["ok"] is False
    assert "auth_ok" in app.kinds()


def test_a_challenge_is_single_use_and_goes_stale(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    nonce = app.call("auth_challenge")["nonce"]
    mac = host_mac(SVC_KEY, nonce)
    assert app.call("auth", mac=mac)["ok"]
    r = app.call("auth", mac=mac)  # replayed
    assert r["ok"] is False and "auth_challenge first" in r["error"]
    nonce = app.call("auth_challenge")["nonce"]
    app.clock.advance(61_000)
    assert "auth_challenge first" in app.call("auth", mac=host_mac(SVC_KEY, nonce))["error"]


def test_wrong_macs_are_counted_reported_and_rate_limited(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    for n in (1, 2, 3):
        app.call("auth_challenge")
        r = app.call("auth", mac="00" * 32)
        assert r["ok"] is False and "wrong MAC (%d in a row)" % n in r["error"]
    assert app.kinds().count("auth_failed") == 3 and "auth_locked" in app.kinds()
    r = authenticate(app)  # even the right MAC waits out the back-off
    assert r["ok"] is False and "wait 10 s" in r["error"]
    app.clock.advance(10_000)
    assert authenticate(app)["ok"]
    assert app.provision.session.fails == 0


def test_auth_before_provisioning_is_refused_with_the_reason(app):
    app.call("auth_challenge")
    r = app.call("auth", mac="00" * 32)
    assert r["ok"] is False and "not provisioned" in r["error"]


def test_after_the_lock_only_an_authenticated_rekey_may_write_keys(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    r = app.call("provision", **provision_req(krn=3, rekey=True))
    assert r["ok"] is False and r["privileged"]
    authenticate(app)
    r = app.call("provision", **provision_req(krn=3))
    assert r["ok"] is False and "already provisioned" in r["error"]
    assert app.call("provision", **provision_req(krn=3, rekey=True))["ok"]
    assert ident.load_keys(app.store)["krn"] == 3


def test_no_flash_fails_closed(tmp_path):
    app = FakeApp(tmp_path, store=False)
    assert app.call("identity")["factory_mode"] is False
    assert "authenticate first" in app.call("cal_set")["error"]


def test_selftest_reports_every_item_with_a_reason(app):
    r = app.call("selftest")
    items = {i["item"]: i for i in r["items"]}
    assert list(items) == ["metering_chip", "calibration", "relay", "modem", "flash", "clock"]
    assert items["metering_chip"]["pass"] and app.meter.polls == 1
    assert items["calibration"]["pass"]
    assert not items["relay"]["pass"] and items["relay"]["reason"].startswith("not wired")
    assert not items["modem"]["pass"] and items["modem"]["reason"].startswith("not wired")
    assert items["flash"]["pass"] and "read back" in items["flash"]["reason"]
    assert items["clock"]["pass"] and "advanced 10 ms" in items["clock"]["reason"]
    assert r["passed"] is False and r["failed"] == ["relay", "modem"]


def test_selftest_failures_say_what_is_wrong(app):
    app.meter.health = chip.SILENT
    app.calibrated = False
    app.relay = FakeRelay(stuck=True)
    r = app.call("selftest")
    items = {i["item"]: i for i in r["items"]}
    assert items["metering_chip"]["reason"] == "chip probe failed: silent"
    assert "no calibration stored" in items["calibration"]["reason"]
    assert not items["relay"]["pass"] and "close: no feedback" in items["relay"]["reason"]


def test_selftest_moves_a_working_relay_and_leaves_it_as_found(app):
    app.relay = FakeRelay()
    app.relay.closed = True
    items = {i["item"]: i for i in app.call("selftest")["items"]}
    assert items["relay"]["pass"] and items["relay"]["reason"] == "close: confirmed, open: confirmed"
    assert app.relay.moves == [True, False, True] and app.relay.closed


def test_selftest_asks_the_modem_for_at(app):
    from comms.at import ATEngine

    class ModemStream:
        def __init__(self):
            self.out = b""

        def read(self):
            if self.out.endswith(b"AT\r"):
                self.out = b""
                return b"AT\r\r\nOK\r\n"
            return None

        def write(self, data):
            self.out += bytes(data)

    app.modem = ATEngine(ModemStream(), app.clock)
    items = {i["item"]: i for i in app.call("selftest")["items"]}
    assert items["modem"]["pass"] and items["modem"]["reason"] == "answers AT with OK"
    app.modem = ATEngine(Stream(), app.clock)  # silent modem
    items = {i["item"]: i for i in app.call("selftest")["items"]}
    assert not items["modem"]["pass"] and "TIMEOUT" in items["modem"]["reason"]


def test_selftest_is_privileged_once_locked(app):
    app.call("provision", **provision_req())
    app.call("factory_lock")
    assert app.call("selftest")["ok"] is False
    authenticate(app)
    assert app.call("selftest")["ok"] is True


def test_a_provisioned_meter_stays_factory_open_across_a_reboot_until_the_lock(tmp_path):
    app = FakeApp(tmp_path / "flash")
    app.call("provision", **provision_req())
    assert FakeApp(tmp_path / "flash").call("identity")["factory_mode"] is True


@pytest.mark.parametrize("gone", [("factory",), ("factory", "identity"), ("factory", "keys")])
def test_a_provisioned_meter_whose_lock_record_is_deleted_stays_locked(tmp_path, gone):
    app = FakeApp(tmp_path / "flash")
    app.call("provision", **provision_req())
    app.call("factory_lock")
    for name in gone:
        for slot in "ab":
            p = tmp_path / "flash" / ("%s.%s" % (name, slot))
            if p.exists():
                p.unlink()
    rebooted = FakeApp(tmp_path / "flash")
    assert rebooted.call("identity")["factory_mode"] is False
    r = rebooted.call("cal_set")
    assert r["ok"] is False and "authenticate first" in r["error"], r
    assert "factory_lock_missing" in rebooted.kinds(), rebooted.kinds()
    r = rebooted.call("provision", **provision_req(krn=4, rekey=True))
    assert r["ok"] is False and r["privileged"], r


@pytest.mark.parametrize("rotted", ["factory", "identity", "keys"])
def test_a_provisioned_meter_with_a_corrupt_record_stays_locked(tmp_path, rotted):
    app = FakeApp(tmp_path / "flash")
    app.call("provision", **provision_req())
    app.call("factory_lock")
    if rotted != "factory":
        for slot in "ab":
            p = tmp_path / "flash" / ("factory.%s" % slot)
            if p.exists():
                p.unlink()
    for slot in "ab":
        p = tmp_path / "flash" / ("%s.%s" % (rotted, slot))
        if p.exists():
            data = bytearray(p.read_bytes())
            data[-1] ^= 0x55
            p.write_bytes(bytes(data))
    rebooted = FakeApp(tmp_path / "flash")
    assert rebooted.call("identity")["factory_mode"] is False
    assert "authenticate first" in rebooted.call("cal_set")["error"]
