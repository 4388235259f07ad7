"""Message channels against real local servers: SMS through the gateway's HTTP API, e-mail through an
SMTP server (aiosmtpd), WhatsApp through the Business-API-shaped fake (a wrong token is refused and the
failure recorded); monthly statements follow each customer's channels, once per meter and month."""
import datetime

import pytest

from host_tools.agency import statements
from host_tools.agency.channels import ChannelError
from host_tools.agency.channels.email import SmtpEmail
from host_tools.agency.channels.fakes import FakeGateways, LocalSmtp
from host_tools.agency.channels.sms import GatewaySms
from host_tools.agency.channels.whatsapp import WhatsAppCloud
from host_tools.agency.history import seed_history
from host_tools.agency.settings import Settings
from host_tools.agency.stack import Stack

from agency_support import Clock


@pytest.fixture
def gateways():
    g = FakeGateways(token="t0k").start()
    yield g
    g.stop()


def test_sms_gateway_and_whatsapp_api_shapes(gateways):
    assert GatewaySms(gateways.url).send("+22236000001", "Bonjour") == "sms-1"
    assert gateways.sms == [("+22236000001", "Bonjour")]
    wa = WhatsAppCloud(gateways.url, "123", "t0k")
    assert wa.send("+22236000002", "مرحبا").startswith("wamid.")
    assert gateways.whatsapp == [("+22236000002", "مرحبا")]
    with pytest.raises(ChannelError, match="401"):
        WhatsAppCloud(gateways.url, "123", "wrong").send("+22236000002", "x")
    with pytest.raises(ChannelError, match="unreachable"):
        GatewaySms("http://127.0.0.1:9").send("+22236000001", "x")


def test_email_goes_through_a_real_smtp_server():
    smtp = LocalSmtp().start()
    try:
        SmtpEmail("127.0.0.1", smtp.port).send("a@example.org", "Relevé de novembre : 123 kWh", subject="Relevé")
        m = smtp.to("a@example.org")
        assert len(m) == 1 and m[0]["Subject"] == "Relevé" and "123 kWh" in m[0].get_content()
    finally:
        smtp.stop()
    with pytest.raises(ChannelError, match="SMTP"):
        SmtpEmail("127.0.0.1", smtp.port, timeout=2).send("a@example.org", "x")


def test_monthly_statements_follow_each_customers_channels_once():
    clock = Clock()
    d = datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc)
    clock.t = datetime.datetime(d.year, d.month, 2, 10, 0, tzinfo=datetime.timezone.utc).timestamp()
    with Stack(meters=3, settings=Settings(clock=clock)) as st:
        st.agency.stop_worker()
        for i, m in enumerate(st.meter_ids):
            seed_history(st.store, m, end=clock() - 60, days=70, seed=i + 1)
        with st.store.tx() as db:       # customer 2 wants WhatsApp only; a wrong API token makes it fail
            db.execute("UPDATE customers SET channels='whatsapp' WHERE id=2")
        st.agency.notifier.channels["whatsapp"].client.headers["Authorization"] = "Bearer wrong"
        assert statements.send_due(st.store, st.settings, st.agency.notifier, every_s=0) == 3
        assert statements.send_due(st.store, st.settings, st.agency.notifier, every_s=0) == 0      # once
        last = (datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc).replace(day=1)
                - datetime.timedelta(days=1)).strftime("%Y-%m")
        assert any(last in t and "kWh" in t for t in st.gateways.sms_to("+22236000001"))
        assert any(last in m["Subject"] for m in st.smtp.to("client1@example.org"))     # sms,email
        assert st.gateways.sms_to("+22236000002") == []
        n = st.store.q1("SELECT * FROM notifications WHERE customer_id=2 AND kind='statement'")
        assert n["channel"] == "whatsapp" and n["state"] == "failed" and "401" in n["error"]
        assert any(last in t for t in st.gateways.sms_to("+22236000003"))
