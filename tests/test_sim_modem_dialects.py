"""The modem's dialects over the shared core (host_tools/sim/modem/): each answers as its own model, with
its own boot URCs, network-time and registration commands, and refuses the other dialect's packet-data
and TLS commands; the factory names an unknown dialect. No broker needed: nothing here opens a socket."""
import random

import pytest

from host_tools.sim.modem import DIALECTS, make_modem
from host_tools.sim.modem.core import ModemCore
from host_tools.sim.modem.sim800 import Sim800
from host_tools.sim.modem.sim7600 import Sim7600
from test_sim_modem import ATClient

IDENTITY = {   # dialect: (ATI model, boot URCs in order, AT+COPS? access technology)
    "sim7600": ("SIMCOM_SIM7600E", ["RDY", "+CPIN: READY", "SMS DONE", "PB DONE"], 7),
    "sim800": ("SIMCOM_SIM800L", ["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"], 0),
}
ONLY = {       # commands one dialect has and the other answers with ERROR
    "sim7600": ["AT+CTZU=1", "AT+CEREG=2", "AT+NETOPEN", 'AT+CIPOPEN=0,"TCP","h",1883',
                'AT+CCERTDOWN="ca.pem",10', 'AT+CSSLCFG="sslversion",0,4', "AT+CCHMODE=1", "AT+CCHSTART"],
    "sim800": ["AT+CLTS=1", 'AT+CSTT="internet"', "AT+CIICR", 'AT+CIPSTART="TCP","h","1883"', "AT+CIPSHUT",
               "AT+CIPSTATUS"],
}


def test_factory_gives_each_dialect_its_class_over_the_core():
    assert DIALECTS == ("sim7600", "sim800")
    for dialect, cls in (("sim7600", Sim7600), ("sim800", Sim800)):
        m = make_modem(random.Random(1), dialect, powered=False)
        assert type(m) is cls and isinstance(m, ModemCore), f"{dialect}: got {type(m).__name__}"
        assert m.dialect == dialect


def test_factory_names_an_unknown_dialect():
    with pytest.raises(ValueError, match="unknown modem dialect 'sim900'"):
        make_modem(random.Random(1), "sim900")


@pytest.mark.parametrize("dialect", sorted(IDENTITY))
def test_each_dialect_boots_and_answers_as_its_model(dialect):
    model, urcs, act = IDENTITY[dialect]
    c = ATClient(dialect=dialect)
    c.advance(15000)
    said = [ln for ln in c.lines() if ln in urcs]
    assert said == urcs, f"{dialect}: boot URCs {said}, expected {urcs}"
    assert c.at("ATI")[-2:] == [model, "OK"], f"{dialect}: ATI"   # echo is still on before boot()
    c.boot()
    cops = [ln for ln in c.at("AT+COPS?") if ln.startswith("+COPS:")]
    assert cops and cops[0].endswith(",%d" % act), f"{dialect}: {cops}"


@pytest.mark.parametrize("dialect,other", [("sim7600", "sim800"), ("sim800", "sim7600")])
def test_each_dialect_refuses_the_others_commands(dialect, other):
    c = ATClient(dialect=dialect)
    c.boot()
    wrong = {cmd: c.at(cmd)[-1] for cmd in ONLY[other]}
    assert all(v == "ERROR" for v in wrong.values()), f"{dialect} accepted {other} commands: {wrong}"
    own = ONLY[dialect][0]          # its own network-time switch
    assert c.at(own)[-1] == "OK", f"{dialect}: {own}"


def test_sim7600_certificate_download_takes_exactly_its_length_and_survives_power_cycle():
    c = ATClient(dialect="sim7600")
    c.boot()
    pem = b"-----\x1a\x1bCA\r\n"            # Ctrl-Z and ESC are data in a file download, not terminators
    c.take()
    c.send_raw(b'AT+CCERTDOWN="ca.pem",%d\r' % len(pem))
    c.wait_for(">")
    c.send_raw(pem)
    c.advance(500)
    assert c.lines()[-1] == "OK"
    assert c.m.certs == {"ca.pem": pem}
    c.m.set_power(False)
    c.m.set_power(True)
    c.boot()
    assert c.m.certs == {"ca.pem": pem}, "certificates are kept in the modem's file system across power"
    assert c.at('AT+CSSLCFG="cacert",0,"ca.pem"')[-1] == "OK"


def test_sim7600_network_loss_ends_the_tls_session_and_says_so():
    c = ATClient(dialect="sim7600")
    c.boot()
    assert c.at("AT+CCHSTART")[-1] == "OK"
    c.wait_for("+CCHSTART: 0")
    c.m.set_coverage(False)
    c.advance(50)
    assert "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY" in c.lines()
    assert c.at("AT+CCHSTOP")[-1] == "ERROR", "the TLS service stopped with the network"
