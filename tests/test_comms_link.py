"""The cellular link end to end against a scripted modem and an in-test broker: power-up to an MQTT
session (SIM7600 and SIM800), no coverage, link drops, garbage, a hung modem, SMS while connected,
and polls that never block (bounded bytes per poll, progress counted in polls, not time)."""
import json

import pytest

from comms import auth, gsm7, pdu
from comms.link import MeterLink
from comms_support import Broker, FakeClock, FakeModem, FakeRandom, FakeStore, drive

KEY = bytes(range(32))
MID = "000000000000001234"


def make(dialect="sim7600", chunk=64, clock_start=0, **cfg_extra):
    clock = FakeClock(ms=clock_start)
    broker = Broker()
    modem = FakeModem(clock, dialect, broker, chunk=chunk)
    store = FakeStore()
    events = []
    tokens = []
    commands = []

    def on_token(digits, source):
        tokens.append((digits, source))
        return "accepted", {"credit": 1000}

    def on_command(name, args):
        commands.append((name, args))
        return "done", {}

    cfg = {"meter_id": MID, "key": KEY, "password": "pw", "dialect": dialect, "apn": "internet",
           "host": "127.0.0.1", "port": 1883, "reading_period_s": 900, "sms_check_s": 600,
           "customer": "+22236000001", "registered": ["+22236000099"], "lang": "fr"}
    cfg.update(cfg_extra)
    cfg = {k: v for k, v in cfg.items() if v is not None}     # None: the firmware's default
    link = MeterLink(modem, clock, cfg, store, FakeRandom(), lambda k, d: events.append((k, d)),
                     on_token, on_command, lambda: (12345, 9),
                     lambda: {"import_wh": 10, "export_wh": 0, "credit": 5, "debt": 0, "p_w": 0,
                              "urms_cv": 23000, "supply": "closed", "reasons": [], "link": {}})
    return link, clock, modem, broker, store, events, tokens, commands


def up(link):
    return lambda: link.supervisor.state == "up"


def signed_down(seq, inner):
    p = json.dumps(inner)
    h = auth.hmac_hex(KEY, ("down\n%s\n%d\n%s" % (MID, seq, p)).encode())
    return json.dumps({"m": MID, "s": seq, "p": p, "h": h}).encode()


@pytest.mark.parametrize("dialect", ["sim7600", "sim800"])
def test_power_up_reaches_mqtt_session_with_will_online_and_subscription(dialect):
    link, clock, modem, broker, store, events, _, _ = make(dialect)
    polls = drive(link, clock, 2000, until=up(link), max_bytes=64)
    assert link.supervisor.state == "up", link.status()
    assert polls < 400  # boot 12 s + a handful of commands, at 100 ms a poll
    c = broker.connects[0]
    assert c["client_id"] == MID and c["user"] == MID and c["password"] == b"pw"
    assert c["clean"] is False and c["keepalive"] == 120
    assert c["will"] == ("meters/%s/status" % MID, b"offline", 1, True)
    drive(link, clock, 20)
    assert ("meters/%s/down" % MID, 1) in broker.subscriptions
    st = [d for d in broker.publishes if d["topic"].endswith("/status")]
    assert st and st[0]["payload"] == b"online" and st[0]["retain"]
    assert clock.set_calls == [1795602600]  # 26/11/25 10:30:00 UTC from AT+CCLK?
    s = link.status()
    assert s["connected"] and s["registered"] and s["rssi"] == -73 and s["operator"] == "Mauritel"
    if dialect == "sim800":
        assert "AT+CIFSR" in modem.commands and not any(x.startswith("AT+NETOPEN") for x in modem.commands)
    else:
        assert "AT+NETOPEN" in modem.commands


def test_ladder_and_session_work_across_the_ticks_wrap():
    # the wrap falls two seconds into the climb (a booted modem's RDY starts it within seconds)
    link, clock, modem, broker, _, _, _, _ = make(clock_start=(1 << 30) - 2000)
    drive(link, clock, 2000, until=up(link))
    assert link.supervisor.state == "up" and clock.ticks_ms() < 100000  # ticks wrapped meanwhile
    drive(link, clock, 3000)
    assert link.supervisor.state in ("up", "escape", "cmdmode", "resume") and broker.pings >= 2


def test_no_coverage_backs_off_then_connects_when_registered():
    link, clock, modem, broker, _, events, _, _ = make(reg_timeout_s=30)
    modem.reg = 2
    drive(link, clock, 600)  # 60 s: searching beyond the registration timeout
    assert link.supervisor.state in ("reg", "backoff")
    assert link.supervisor.attempts >= 1
    assert not broker.connects
    modem.reg = 3
    drive(link, clock, 600)
    assert not broker.connects
    modem.reg = 1
    drive(link, clock, 20000, until=up(link))
    assert link.supervisor.state == "up"
    assert link.supervisor.attempts == 0
    assert any(k == "link_failed" and d["why"] == "not registered" for k, d in events)


def test_backoff_doubles_with_attempts_and_is_capped():
    link, clock, modem, broker, _, events, _, _ = make(reg_timeout_s=10, backoff_min_s=5, backoff_max_s=40)
    modem.reg = 0
    drive(link, clock, 5000)
    waits = [d["wait_ms"] for k, d in events if k == "link_failed"]
    assert len(waits) >= 6, waits
    # the first retry comes soon, spread over backoff_min so a fleet does not return in step
    assert 500 <= waits[0] <= 5500 and 5000 <= waits[1] <= 7500 and 10000 <= waits[2] <= 15000, waits
    assert all(40000 <= w <= 60000 for w in waits[5:]), waits


@pytest.mark.parametrize("dialect", ["sim7600", "sim800"])
def test_link_drop_in_data_mode_reconnects_and_session_continues(dialect):
    link, clock, modem, broker, _, events, _, _ = make(dialect)
    drive(link, clock, 2000, until=up(link))
    modem.drop_link()
    drive(link, clock, 3, step_ms=100)
    assert link.supervisor.state != "up"
    drive(link, clock, 5000, until=up(link))
    assert link.supervisor.state == "up"
    assert len(broker.connects) == 2
    assert ("link_down", {"why": "closed"}) in events


def test_garbage_lines_are_counted_and_do_not_derail_the_ladder():
    link, clock, modem, broker, _, _, _, _ = make()
    drive(link, clock, 2000, until=lambda: link.supervisor.state == "reg")
    modem.garbage(b"\xff\xfe\x00junk\r\n" + b"Z" * 2000 + b"\r\nNONSENSE 42\r\n")
    drive(link, clock, 2000, until=up(link), max_bytes=64)
    assert link.supervisor.state == "up"
    st = link.supervisor.at.stats
    assert st["garbage"] >= 1 and st["overlong"] == 1  # "NONSENSE 42" reads as a response line


@pytest.mark.parametrize("dialect", ["sim7600", "sim800"])
def test_hung_modem_is_power_cycled_and_recovers(dialect):
    link, clock, modem, broker, _, events, _, _ = make(dialect)
    drive(link, clock, 2000, until=lambda: link.supervisor.state == "reg")
    modem.hang = True
    drive(link, clock, 3000, until=lambda: modem.power_cycles >= 2)
    assert modem.power_cycles == 2
    assert any(k == "modem_reset" for k, _ in events)
    drive(link, clock, 3000, until=up(link))
    assert link.supervisor.state == "up"


def test_a_modem_that_hangs_on_an_idle_link_is_found_within_the_30_s_check():
    """A hung modem swallows everything in data mode, and an idle session pings only at three quarters
    of its 120 s keepalive: the default check of the modem (an escape every 30 s, which also reads
    waiting texts) finds it first. It was every 600 s; a remote top-up then waited up to 100 s."""
    link, clock, modem, broker, _, events, _, _ = make(sms_check_s=None)
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 50)
    cycles = modem.power_cycles
    modem.hang = True
    n = drive(link, clock, 600, until=lambda: modem.power_cycles > cycles)
    assert modem.power_cycles == cycles + 1, "not power-cycled within 60 s"
    assert n * 100 <= 40000, "found after %d ms" % (n * 100)
    drive(link, clock, 3000, until=up(link))
    assert link.supervisor.state == "up"


def test_a_modem_that_rebooted_under_the_data_link_is_noticed_at_once():
    """A modem that restarts by itself (brown-out, firmware crash) is in command mode again and says
    RDY: the link is gone, and waiting for a ping to go unanswered cost 10-20 s."""
    link, clock, modem, broker, _, events, _, _ = make()
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 50)
    modem.set_power(False)
    modem.set_power(True)                 # the UART says RDY 0.5 s later
    drive(link, clock, 10)
    # it is started again as after its own restart, not power-cycled for answering nothing while it booted
    assert link.supervisor.state != "up" and ("modem_reset", {"why": "modem restarted", "cycles": 1}) in events
    drive(link, clock, 3000, until=up(link))
    assert link.supervisor.state == "up" and modem.power_cycles == 2, modem.power_cycles


def test_downlink_token_and_command_answered_on_uplink():
    link, clock, modem, broker, store, events, tokens, commands = make()
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 10)
    broker.send("meters/%s/down" % MID, json.dumps(
        {"m": MID, "s": 1, "p": json.dumps({"t": "token", "id": "tk1", "token": "1" * 20}), "h": ""}))
    broker.send("meters/%s/down" % MID, signed_down(5, {"t": "cmd", "id": "c1", "cmd": "relay_open", "args": {}}))
    drive(link, clock, 30)
    assert tokens == [("1" * 20, "mqtt")] and commands == [("relay_open", {})]
    inners = [json.loads(json.loads(p)["p"]) for p in broker.up_payloads()]
    results = {i["ref"]: i["code"] for i in inners if i["t"] == "result"}
    assert results == {"tk1": "accepted", "c1": "done"}
    assert not broker.unacked  # both downlinks acknowledged after processing
    assert not link.uplink.queue  # everything PUBACKed and removed


def test_uplink_queued_offline_is_sent_oldest_first_when_back():
    link, clock, modem, broker, store, _, _, _ = make()
    modem.reg = 2
    for i in range(5):
        link.event("tamper", {"n": i})
    drive(link, clock, 50)
    assert len(link.uplink.queue) == 5 and "uplink" in store.data
    modem.reg = 1
    drive(link, clock, 20000, until=up(link))
    drive(link, clock, 30)
    evs = [json.loads(json.loads(p)["p"]) for p in broker.up_payloads()]
    evs = [e for e in evs if e["t"] == "event"]
    assert [e["data"]["n"] for e in evs[:5]] == [0, 1, 2, 3, 4]
    seqs = [json.loads(p)["s"] for p in broker.up_payloads()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert not link.uplink.queue


def test_periodic_readings_are_sent_while_up():
    link, clock, modem, broker, _, _, _, _ = make()
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 20000)  # 2000 s: at least two 900 s periods
    rs = [json.loads(json.loads(p)["p"]) for p in broker.up_payloads()]
    rs = [r for r in rs if r["t"] == "reading"]
    assert len(rs) >= 2 and all(r["ts"] % 900 == 0 for r in rs)


def test_keepalive_pings_while_idle():
    link, clock, modem, broker, _, _, _, _ = make(reading_period_s=100000)
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 3000)  # 300 s idle, keepalive 120 s -> a ping every 90 s
    assert broker.pings >= 3
    assert link.supervisor.state in ("up", "escape", "cmdmode", "resume")


def test_sms_token_received_while_connected_is_read_after_escape_and_answered():
    link, clock, modem, broker, _, _, tokens, _ = make(sms_check_s=60)
    drive(link, clock, 2000, until=up(link))
    modem.deliver_sms(deliver_pdu("+22236000001", "1234 5678 9012 3456 7890"))
    drive(link, clock, 1200, until=lambda: bool(modem.sms_sent) and link.supervisor.state == "up")
    assert tokens == [("12345678901234567890", "sms:+22236000001")]
    assert not modem.stored
    n, hx = modem.sms_sent[0]
    m = pdu.decode(hx)
    assert m["addr"] == "+22236000001" and "accepté" in m["text"]
    assert n == len(hx) // 2 - 1
    assert link.supervisor.state == "up" and "+++" not in modem.commands
    assert modem.escape_at is not None


def test_sms_in_command_mode_is_read_on_cmti():
    link, clock, modem, broker, _, _, _, _ = make(reg_timeout_s=600)
    modem.reg = 2
    drive(link, clock, 200)
    assert link.supervisor.state == "reg"
    modem.deliver_sms(deliver_pdu("+22236000001", "SOLDE"))
    drive(link, clock, 100)
    assert "AT+CMGR=1" in modem.commands and "AT+CMGD=1" in modem.commands
    assert not modem.sms_sent  # not registered: the reply waits in the outbox
    modem.reg = 1
    # the data link first (it carries the money: remote top-ups waiting in the broker), then the
    # reply at the first escape, within a minute of the session coming up
    drive(link, clock, 600, until=up(link))
    assert link.supervisor.state == "up" and not modem.sms_sent
    drive(link, clock, 600, until=lambda: modem.sms_sent)
    assert pdu.decode(modem.sms_sent[0][1])["text"] == "Solde: 123,45 MRU, environ 9 jours restants."


def test_link_drop_while_escaped_for_sms_reconnects():
    link, clock, modem, broker, _, events, _, _ = make(sms_check_s=60)
    drive(link, clock, 2000, until=up(link))
    drive(link, clock, 2000, until=lambda: link.supervisor.state == "cmdmode")
    modem.drop_link()  # +CIPEVENT while in command mode
    drive(link, clock, 50)
    assert link.supervisor.state not in ("up", "resume")
    drive(link, clock, 5000, until=up(link))
    assert link.supervisor.state == "up" and len(broker.connects) == 2


def test_mqtt_protocol_error_closes_link_and_reconnects():
    link, clock, modem, broker, _, events, _, _ = make()
    drive(link, clock, 2000, until=up(link))
    broker.out += bytes([0x50, 2, 0, 1])  # PUBREC: QoS 2 is not spoken here
    drive(link, clock, 50)
    assert ("link_down", {"why": "unexpected packet 5"}) in events
    assert any(c.startswith("AT+CIPCLOSE") for c in modem.commands)
    drive(link, clock, 5000, until=up(link))
    assert link.supervisor.state == "up" and len(broker.connects) == 2


def test_slow_sms_sending_never_keeps_the_session_escaped_past_a_minute():
    link, clock, modem, broker, _, events, _, _ = make(sms_check_s=600)
    drive(link, clock, 2000, until=up(link))
    modem.cmgs_delay = 15000
    for i in range(6):
        link.sms.notify("topup", amount=100 * i, credit=1000)
    longest = 0
    escaped_since = None
    for _ in range(30000):
        clock.advance(100)
        link.poll()
        if link.supervisor.state != "up":
            escaped_since = clock.ms if escaped_since is None else escaped_since
            longest = max(longest, clock.ms - escaped_since)
        else:
            escaped_since = None
        if len(modem.sms_sent) == 6 and link.supervisor.state == "up":
            break
    assert len(modem.sms_sent) == 6 and not link.sms.outbox
    assert longest <= 60000 + 15000 + 3000  # the part in hand may finish after the deadline
    assert len(broker.connects) == 1  # the session survived every escape


def test_sim_removed_goes_back_to_waiting_for_the_sim():
    link, clock, modem, broker, _, events, _, _ = make(reg_timeout_s=600)
    modem.reg = 2
    drive(link, clock, 2000, until=lambda: link.supervisor.state == "reg")
    modem.sim = "NOT INSERTED"
    modem._say("+CPIN: NOT INSERTED")
    drive(link, clock, 3)
    assert link.supervisor.state == "backoff" and "NOT INSERTED" in link.supervisor.last_error
    drive(link, clock, 2000)
    assert link.supervisor.state == "sim"
    modem.sim = "READY"
    modem.reg = 1
    drive(link, clock, 2000, until=up(link))
    assert link.supervisor.state == "up"


def test_modem_restarting_by_itself_is_initialised_again():
    link, clock, modem, broker, _, events, _, _ = make(reg_timeout_s=600)
    modem.reg = 2
    drive(link, clock, 2000, until=lambda: link.supervisor.state == "reg")
    modem.set_power(False)
    modem.set_power(True)  # as after a brown-out: RDY, echo back on
    modem.reg = 1
    drive(link, clock, 3000, until=up(link))
    assert link.supervisor.state == "up"
    assert modem.commands.count("ATE0") == 2
    assert ("modem_reset", {"why": "modem restarted", "cycles": 1}) in events


def test_polls_stay_bounded_under_a_byte_flood():
    link, clock, modem, broker, _, _, _, _ = make(chunk=32)
    drive(link, clock, 2000, until=up(link))
    for i in range(50):
        broker.send("meters/%s/down" % MID, b"x" * 300)
    drive(link, clock, 2000, max_bytes=32)
    assert link.supervisor.state == "up"
    assert len(broker.unacked) == 0  # not ours to act on, but acknowledged so it is not resent


def deliver_pdu(sender, text):
    """An SMS-DELIVER as the modem stores it (no SMSC: 00), built from 23.040 fields."""
    sep = gsm7.septets(text)
    packed = gsm7.pack(sep)
    tp = bytes([0x04]) + pdu.address(sender) + bytes([0, 0]) + bytes.fromhex("52115201030400") + bytes([len(sep)]) + packed
    return "00" + tp.hex().upper()


def test_network_time_sets_an_unknown_clock():
    link, clock, modem, broker, store, events, _, _ = make()
    assert not clock.time_valid
    drive(link, clock, 2000, until=up(link))
    assert clock.set_calls == [1795602600]
    assert ("time_set", {"unix": 1795602600, "source": "network"}) in events


@pytest.mark.parametrize("known,expect", [
    (1795602600 - 300, "corrected"),        # 5 minutes slow: a drift the network may correct
    (1795602600 + 500, "corrected"),
    (1795602600 - 700, "rejected"),         # more than 10 minutes away: an event, the clock stays
    (1795602600 + 86400 * 30, "rejected"),  # a fake base station a month back
])
def test_network_time_only_corrects_a_bounded_drift_of_a_known_clock(known, expect):
    link, clock, modem, broker, store, events, _, _ = make()
    clock.time_valid = True
    clock.epoch = known
    drive(link, clock, 2000, until=up(link))
    got = [e for e in events if e[0] in ("time_set", "time_rejected")]
    assert len(got) == 1 and got[0][1]["unix"] == 1795602600, got
    # the drift is measured when the modem answers, a few seconds after the start
    delta = 1795602600 - known
    assert delta - 60 <= got[0][1]["drift"] <= delta, got
    if expect == "corrected":
        assert clock.set_calls == [1795602600] and got[0][0] == "time_set"
    else:
        assert clock.set_calls == [] and got[0][0] == "time_rejected"
        assert clock.time() < 1795602600 - 600 or clock.time() > 1795602600 + 600


def test_a_modem_that_restarts_mid_command_is_not_waited_for_and_the_text_is_sent_again():
    # The modem reboots by itself while a text is being sent: its answer will never come. The meter
    # abandons the command at once (RDY), keeps the text, climbs back and sends it after the restart.
    link, clock, modem, broker, _, events, _, _ = make(sms_check_s=60)
    drive(link, clock, 2000, until=up(link))
    sent_before = len(modem.sms_sent)
    modem.cmgs_delay = 50000                      # the part is in the network's hands for 50 s
    link.sms.notify("topup", amount=100, credit=1000)
    drive(link, clock, 2000, until=lambda: len(modem.sms_sent) > sent_before)
    assert link.sms.outbox, "the text was taken off the outbox before its OK"
    modem.cmgs_delay = 0
    modem.reset()                                  # RDY: the pending +CMGS/OK is gone with the restart
    t0 = clock.ms
    drive(link, clock, 3000, until=lambda: up(link)() and not link.sms.outbox)
    assert up(link)() and not link.sms.outbox, link.status()
    assert clock.ms - t0 < 40000, "waited %d ms for a command the restarted modem never answers" % (clock.ms - t0)
    assert not [d for k, d in events if k == "sms_failed"], events
    assert len(modem.sms_sent) == sent_before + 2   # the text again (at least once: its OK was lost)


def test_no_escape_while_uplinks_wait_and_texts_go_once_the_queue_is_empty():
    """A burst of remote top-ups (a result, an event and a text each): an escape for the outbox stopped
    publishing for seconds while results piled up in the 3.8 KB queue, which then dropped some; the
    head-end resent those top-ups and got `old` back. Escapes now wait while uplinks wait (up to 5 min)."""
    link, clock, modem, broker, _, _, _, _ = make(sms_check_s=30)
    drive(link, clock, 2000, until=up(link))
    link.sms.notify("topup", amount=100, credit=1000)
    escaped = []
    for i in range(1200):                  # 2 minutes of uplinks every 0.5 s, the text waiting
        if i % 5 == 0:
            link.event("topup", {"n": i})
        drive(link, clock, 1)
        if link.supervisor.state != "up":
            escaped.append(clock.ms)
    assert not escaped, "escaped at %s ms while uplinks were waiting" % escaped[:3]
    assert not modem.sms_sent
    drive(link, clock, 1200, until=lambda: modem.sms_sent and link.supervisor.state == "up")
    assert modem.sms_sent, "the text never went once the queue had emptied"
    assert not link.uplink.queue


def test_the_escape_waits_no_longer_than_five_minutes_for_uplinks_that_never_stop():
    link, clock, modem, broker, _, _, _, _ = make(sms_check_s=30)
    drive(link, clock, 2000, until=up(link))
    t0 = clock.ms
    for i in range(4000):
        if i % 5 == 0:
            link.event("x", {"n": i})
        drive(link, clock, 1)
        if link.supervisor.state == "escape":
            break
    assert link.supervisor.state == "escape", link.supervisor.state
    assert 300000 <= clock.ms - t0 <= 340000, clock.ms - t0


def test_an_escape_whose_guard_silence_never_comes_is_given_up_and_the_uplink_flows_on():
    """Downlinks every 0.4 s: the meter acknowledges each, so the second of silence before "+++" never
    comes. The escape (due after 5 minutes of deferral) is given up after 3 s and publishing goes on."""
    link, clock, modem, broker, _, _, _, commands = make(sms_check_s=30)
    drive(link, clock, 2000, until=up(link))
    link.sms.notify("topup", amount=100, credit=1000)
    out_since, longest, seq = None, 0, 10
    for i in range(9000):                  # 6 minutes
        if i % 4 == 0:
            seq += 1
            broker.send("meters/%s/down" % MID, signed_down(seq, {"t": "cmd", "id": "c%d" % seq,
                                                                   "cmd": "relay_open", "args": {}}))
        drive(link, clock, 1)
        if link.supervisor.state != "up":
            out_since = clock.ms if out_since is None else out_since
            longest = max(longest, clock.ms - out_since)
        else:
            out_since = None
    assert "+++" not in modem.commands and modem.escape_at is None
    assert 2900 <= longest <= 3500, longest          # tried once the 5 minutes had passed, then given up
    drive(link, clock, 100)
    inners = [json.loads(json.loads(p)["p"]) for p in broker.up_payloads()]
    answered = {i["ref"] for i in inners if i["t"] == "result"}
    assert len(commands) == seq - 10 and answered == {"c%d" % n for n in range(11, seq + 1)}, (
        len(commands), seq - 10, len(answered))


@pytest.mark.parametrize("says_rdy", [True, False])
def test_a_modem_that_says_rdy_is_spoken_to_at_once_one_that_autobauds_after_its_boot_time(says_rdy):
    # SIM7600: 12 s of boot time. A modem on a fixed baud rate says RDY when it can take commands
    # (0.5 s here); one that autobauds says nothing, and the first AT waits the whole boot time.
    link, clock, modem, broker, _, _, _, _ = make("sim7600")
    if not says_rdy:
        say = modem._say
        modem._say = lambda *lines, delay=0: say(*[x for x in lines if x != "RDY"], delay=delay)
    t0 = clock.ms
    drive(link, clock, 200, until=lambda: "AT" in modem.commands)
    first_at_s = (clock.ms - t0) / 1000.0
    if says_rdy:
        assert first_at_s <= 1.0, first_at_s
    else:
        assert 12.0 <= first_at_s <= 12.2, first_at_s
    drive(link, clock, 300, until=up(link))
    assert link.supervisor.state == "up"
