"""A simulated meter reaches the production broker over TLS the way a SIM7600 does: the firmware downloads
the utility CA into the modem (AT+CCERTDOWN), configures SSL context 0 (TLS 1.2, server authentication)
and opens the session with AT+CCHOPEN; the modem model terminates real TLS to mosquitto configured by
`meterkit headend broker-config` (mqtts, a user per meter, ACLs, client id = user name), and a top-up
goes through the whole chain. A meter whose CA is not the broker's never connects."""
import pytest

from host_tools.headend.mosquitto import mosquitto_path
from host_tools.sim.scenarios.chain import Chain



@pytest.fixture(autouse=True)
def _mosquitto_installed():
    assert mosquitto_path(), "mosquitto is not installed: apt-get install -y mosquitto"


def test_meter_connects_over_mqtts_through_the_modems_ssl_and_takes_a_topup():
    with Chain(seed=21, broker="mosquitto-tls") as ch:
        modem = ch.meter.modem
        sent = [line for _, line in modem.log if isinstance(line, str) and line.startswith("AT+C")]
        assert any(x.startswith('AT+CCERTDOWN="utility-ca.pem",') for x in sent), sent
        assert 'AT+CSSLCFG="authmode",0,1' in sent and any(x.startswith("AT+CCHOPEN=0,") for x in sent), sent
        assert not any(x.startswith("AT+CIPOPEN") for x in sent), "the meter also opened plain TCP"
        assert modem.tls_sessions >= 1
        assert modem.certs["utility-ca.pem"] == open(ch.broker.ca, "rb").read()
        v = ch.vend(amount="2.50")
        assert ch.run(600, until=lambda: ch.message(v["msg_id"])["state"] == "done")
        assert ch.message(v["msg_id"])["code"] == "accepted"


def test_a_meter_that_does_not_trust_the_brokers_ca_never_connects(tmp_path):
    from host_tools.headend import brokerconfig
    other = brokerconfig.make_ca(tmp_path / "other")        # a CA the broker's certificate is not from
    ch = Chain(seed=22, broker="mosquitto-tls")
    ch._broker_ca = lambda: {"ca": open(other).read()}
    with pytest.raises(Exception, match="did not come online"):
        ch.start(online_timeout_s=240)
    try:
        events = [e for _, e in ch.meter.modem.log if isinstance(e, str) and "TLS connect failed" in e]
        assert events, "the modem never tried the TLS handshake"
        assert ch.meter.modem.tls_sessions == 0
    finally:
        ch.close()
