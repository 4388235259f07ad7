"""The one action path (firmware/app/actionpath.py) under CPython with fakes: each action's checks and
event, and the channels (service port, head-end command) as adapters that give the same answer for
the same request."""
import json
import types

import pytest

from app.composition import Actions
from app.events import Events
from comms import cellular
from fakes import FakeClock, Stream
from service.port import ServicePort
from relay.supply import REMOTE
from util import Refused


class FakeSupply:
    def __init__(self, calls):
        self.calls = calls
        self.mask = 0

    def set_reason(self, r):
        self.calls.append(("set_reason", r))
        self.mask |= r

    def clear_reason(self, r):
        self.calls.append(("clear_reason", r))
        self.mask &= ~r

    def key_reconnect(self):
        self.calls.append(("key_reconnect",))
        return True

    def poll(self, ticks):
        pass

    def reasons(self):
        return self.mask


class FakeTamper:
    def __init__(self, calls):
        self.calls = calls
        self.flags = ["cover"]

    def names(self):
        return list(self.flags)

    def clear(self):
        self.calls.append(("tamper_clear",))
        self.flags = []


class FakePrepaid:
    """The prepaid core's surface the actions use; records what was asked of it."""

    def __init__(self):
        self.calls = []
        self.supply = FakeSupply(self.calls)
        self.tamper = FakeTamper(self.calls)
        self.ledger = types.SimpleNamespace(credit=500, em_owed=0, topups=0, debt=0, arrears=0)
        self.schedule = types.SimpleNamespace(mode="money")
        self.refs = []
        self.debt_refs = []

    def topup(self, amount, ref):
        self.calls.append(("topup", amount, ref))
        if ref in self.refs:
            return {"applied": False, "duplicate": True, "ref": ref}
        self.refs.append(ref)
        self.ledger.credit += amount
        self.ledger.topups += amount
        return {"applied": True, "credit": amount}

    def commit(self):
        self.calls.append(("commit",))

    def load_debt(self, amount, ref, share_bp):
        self.calls.append(("load_debt", amount, ref, share_bp))
        if ref in self.debt_refs:
            return False
        self.debt_refs.append(ref)
        self.ledger.debt += amount
        self.ledger.arrears += amount
        return True

    def take_emergency(self):
        return False, "not_low"

    def supply_state(self):
        return "open" if self.supply.mask else "closed"

    def statement_view(self):
        return {"last": None, "current": None}


@pytest.fixture
def meter(tmp_path):
    clock = FakeClock()
    events = Events(clock)
    prepaid = FakePrepaid()
    acts = Actions(prepaid, clock, events.emit, None, {}, str(tmp_path / "settings.json"))
    stream = Stream()
    port = ServicePort(stream)
    port.command_module("service.commands", ("topup", "relay", "set_time", "clear_tamper", "reconnect"), (), acts)

    def service(cmd, **args):
        args.update(cmd=cmd, id=1)
        stream.tx = bytearray()
        stream.rx.append(json.dumps(args).encode() + b"\n")
        port.poll()
        return json.loads(bytes(stream.tx))

    cell = cellular.Cellular.__new__(cellular.Cellular)
    cell.actions = acts
    return types.SimpleNamespace(clock=clock, events=events, prepaid=prepaid, actions=acts, service=service,
                                 headend=cell.on_command)


def kinds(m):
    return [(e[2], e[3]) for e in m.events.ring]


@pytest.mark.parametrize("unix", [1577836799, 4102444801, "1767571200", True, None])
def test_set_time_has_one_bound_on_every_channel(meter, unix):
    before = meter.clock.time()
    r = meter.service("set_time", unix=unix)
    assert r["ok"] is False and "between 2020 and 2100" in r["error"], r
    code, detail = meter.headend("set_time", {"unix": unix})
    assert (code, detail["why"]) == ("bad_args", "unix must be seconds since 1970 between 2020 and 2100"), (code, detail)
    with pytest.raises(Refused):
        meter.actions.run("set_time", unix, "keypad")
    assert meter.clock.time() == before and kinds(meter) == [], (meter.clock.time(), kinds(meter))


def test_set_time_within_the_bound_is_one_event_naming_the_channel(meter):
    assert meter.service("set_time", unix=1800000000)["time"] == 1800000000
    assert meter.headend("set_time", {"unix": 1900000000})[0] == "done"
    assert meter.clock.time() == 1900000000
    got = [(k, d["unix"], d["source"]) for k, d in kinds(meter)]
    assert got == [("time_set", 1800000000, "service"), ("time_set", 1900000000, "headend")], got


def test_relay_from_service_and_headend_is_the_same_action(meter):
    r = meter.service("relay", open=True)
    assert r["ok"] and r["supply"] == "open", r
    code, detail = meter.headend("relay_close", {})
    assert code == "done" and detail["supply"] == "closed", (code, detail)
    assert meter.prepaid.calls == [("set_reason", REMOTE), ("commit",), ("clear_reason", REMOTE), ("commit",)], \
        meter.prepaid.calls
    got = [(k, d["open"], d["by"]) for k, d in kinds(meter)]
    assert got == [("remote_relay", True, "service"), ("remote_relay", False, "headend")], got


def test_relay_wants_a_boolean_and_changes_nothing_otherwise(meter):
    r = meter.service("relay", open="yes")
    assert r["ok"] is False and "open must be true" in r["error"], r
    assert meter.prepaid.calls == [] and kinds(meter) == [], (meter.prepaid.calls, kinds(meter))


@pytest.mark.parametrize("amount,ref,why", [(0, "r1", "amount"), (100000001, "r1", "amount"), (True, "r1", "amount"),
                                            (5, "", "ref"), (5, "x" * 33, "ref"), (5, 7, "ref")])
def test_topup_checks_amount_and_ref_before_any_change(meter, amount, ref, why):
    r = meter.service("topup", amount=amount, ref=ref)
    assert r["ok"] is False and why in r["error"], r
    assert meter.prepaid.calls == [] and kinds(meter) == [], (meter.prepaid.calls, kinds(meter))


def test_topup_goes_through_the_prepaid_core_once_per_ref_and_reports_each(meter):
    first = meter.service("topup", amount=250, ref="pay-1")
    again = meter.service("topup", amount=250, ref="pay-1")
    assert first["applied"] is True and first["balance"] == 750, first
    assert again["applied"] is False and again["duplicate"] is True and again["balance"] == 750, again
    got = [(k, d["ref"], d["applied"]) for k, d in kinds(meter)]
    assert got == [("topup", "pay-1", True), ("topup", "pay-1", False)], got
    # the credited one carries what the head-end reconciles: channel, amount, unit, topups register
    d = kinds(meter)[0][1]
    assert (d["ch"], d["amt"], d["unit"], d["reg"], d["tid"]) == ("service", 250, "minor", 250, None), d


def test_clear_tamper_and_reconnect_commit_through_the_prepaid_core(meter):
    assert meter.headend("clear_tamper", {}) == ("done", {})       # the protocol's short answer, as before
    assert meter.service("reconnect")["reconnected"] is True
    assert meter.prepaid.calls == [("tamper_clear",), ("commit",), ("key_reconnect",), ("commit",)], meter.prepaid.calls
    assert [k for k, _ in kinds(meter)] == ["tamper_cleared", "reconnect"], kinds(meter)


def test_a_token_that_is_not_digits_text_is_refused_before_decoding(meter):
    for bad in (None, "", "1" * 41, 12345):
        with pytest.raises(Refused):
            meter.actions.run("token", bad, "keypad")
    assert kinds(meter) == [], kinds(meter)


def test_set_config_refusal_is_bad_args_on_the_headend_with_nothing_written(meter, tmp_path):
    code, detail = meter.headend("set_config", {"meter_period_s": 5})
    assert code == "bad_args" and "cannot be set remotely" in detail["why"], (code, detail)
    assert not (tmp_path / "settings.json").exists()


def test_load_debt_from_the_headend_loads_once_per_ref_and_reports_each(meter):
    code, first = meter.headend("load_debt", {"amount": 5000, "ref": "arr-7", "share_bp": 2500})
    code2, again = meter.headend("load_debt", {"amount": 5000, "ref": "arr-7"})
    assert (code, first["applied"], first["debt"], first["arrears"]) == ("done", True, 5000, 5000), (code, first)
    assert (code2, again["applied"], again["duplicate"], again["debt"]) == ("done", False, True, 5000), (code2, again)
    assert meter.prepaid.calls == [("load_debt", 5000, "arr-7", 2500), ("load_debt", 5000, "arr-7", None)], \
        meter.prepaid.calls
    got = [(k, d["amount"], d["ref"], d["debt"], d["applied"], d["by"]) for k, d in kinds(meter)]
    assert got == [("debt_loaded", 5000, "arr-7", 5000, True, "headend"),
                   ("debt_loaded", 5000, "arr-7", 5000, False, "headend")], got


@pytest.mark.parametrize("args,why", [({"amount": 0, "ref": "a"}, "amount"), ({"amount": -1, "ref": "a"}, "amount"),
                                      ({"amount": 100000001, "ref": "a"}, "amount"), ({"amount": True, "ref": "a"}, "amount"),
                                      ({"amount": "50", "ref": "a"}, "amount"), ({"amount": 5, "ref": ""}, "ref"),
                                      ({"amount": 5, "ref": "x" * 33}, "ref"), ({"amount": 5}, "ref"),
                                      ({"amount": 5, "ref": "a", "share_bp": 0}, "share_bp"),
                                      ({"amount": 5, "ref": "a", "share_bp": 9001}, "share_bp")])
def test_load_debt_refuses_bad_amounts_refs_and_shares_with_nothing_changed(meter, args, why):
    code, detail = meter.headend("load_debt", args)
    assert code == "bad_args" and detail["why"].startswith(why), (code, detail)
    assert meter.prepaid.calls == [] and kinds(meter) == [], (meter.prepaid.calls, kinds(meter))


def test_load_debt_is_refused_on_a_kwh_meter_and_past_the_debt_bound(meter):
    meter.prepaid.schedule.mode = "kwh"
    code, detail = meter.headend("load_debt", {"amount": 5, "ref": "a"})
    assert code == "bad_args" and "kWh" in detail["why"], (code, detail)
    meter.prepaid.schedule.mode = "money"
    meter.prepaid.ledger.debt = 999999999
    code, detail = meter.headend("load_debt", {"amount": 5, "ref": "a"})
    assert code == "bad_args" and "would pass" in detail["why"], (code, detail)
    assert meter.prepaid.calls == [] and kinds(meter) == [], (meter.prepaid.calls, kinds(meter))


def test_load_debt_is_a_protocol_command_and_its_events_go_up():
    from comms.protocol import COMMANDS, Protocol
    assert "load_debt" in COMMANDS
    seen = []
    p = Protocol.__new__(Protocol)
    p.on_command = lambda name, args: seen.append((name, args)) or ("done", {})
    assert p.command("load_debt", {"amount": 1, "ref": "r"}) == ("done", {})
    assert seen == [("load_debt", {"amount": 1, "ref": "r"})], seen
    assert {"debt_loaded", "debt_recovered"} <= set(cellular.UPLINK_EVENTS)
