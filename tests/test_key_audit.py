"""Keys never leave the meter through its service port, its events or its console: a provisioned
simulated meter is asked every command it serves (with no arguments and with probing ones) and
nothing it says, logs or prints holds any key, in hex (either case) or as raw bytes."""
import json
import secrets

from host_tools.sim.esp32.runner import SimMeter

PAN = "600727000000000009"


def test_no_command_event_or_console_line_holds_key_material():
    keys = {"sts_key": secrets.token_hex(16), "message_key": secrets.token_hex(32),
            "service_key": secrets.token_hex(32), "opaygo_key": secrets.token_hex(16)}
    password = "s3cret-pass-" + secrets.token_hex(4)
    m = SimMeter(afe="ideal", profile="constant", heap="384k", settings={"meter_period_s": 5})
    try:
        m.run_for(5)
        r = m.request("provision", pan=PAN, serial=9, meter_id=PAN, sgc="123457", ti=1, krn=1, base_date="14",
                      opaygo_starting_code=123456, broker={"host": "he.example", "port": 1883, "username": PAN,
                                                           "password": password}, **keys)
        assert r["ok"], r
        m.power_cut()
        m.run_for(10)
        names = m.request("no-such-command")["commands"]
        assert "identity" in names and "key_check" in names and len(names) > 15, names
        said = []
        for name in names:
            if name in ("factory_lock",):
                continue
            said.append(m.request(name))
            for probe in ({"key": "sts", "challenge": "00" * 16}, {"key": "service", "challenge": "11" * 16},
                          {"fresh": True}, {"since": 0}, {"digits": "1" * 20}, {"name": "keys"},
                          {"record": "keys"}, {"path": "keys.a"}):
                said.append(m.request(name, **probe))
        said.append(m.request("events", since=0))
        m.run_for(5)
        text = json.dumps(said) + m.firmware_log(tail=10 ** 6)
        raw = m.log_path.read_bytes()
        for field, k in keys.items():
            for form in (k.lower(), k.upper()):
                assert form not in text, "%s appears in a reply, an event or the console" % field
            assert bytes.fromhex(k) not in raw, "%s appears as raw bytes on the console" % field
        assert password not in text, "the broker password appears in a reply, an event or the console"
    finally:
        m.close()
