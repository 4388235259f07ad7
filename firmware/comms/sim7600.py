"""SIMCom SIM7600 (LTE Cat-1) dialect: LTE registration (+CEREG) and transparent TCP through
NETOPEN / CIPOPEN, closed with CIPCLOSE / NETCLOSE; or, with the utility CA (`tls`), transparent
TLS through the modem's own SSL stack: the CA downloaded into the modem (CCERTDOWN), SSL context 0
set to TLS 1.2 with server authentication against it (CSSLCFG), then CCHMODE / CCHSTART / CCHSSLCFG /
CCHOPEN (client type 2, TLS), closed with CCHCLOSE / CCHSTOP. MQTT runs unchanged over either."""
from comms.at import Cmd, CONNECT
from comms.dialect import Dialect


CA_FILE = "utility-ca.pem"


class SIM7600(Dialect):
    name = "sim7600"
    boot_ms = 12000
    reg_queries = ("AT+CREG?", "AT+CGREG?", "AT+CEREG?")
    tls_ca = None  # the utility CA (PEM bytes) when the broker is reached over TLS

    def open_data(self, apn, host, port):
        if self.tls_ca:
            return self._open_tls(apn, host, port)
        # NETOPEN answers OK and then "+NETOPEN: 0" when the PDP context is really up.
        return [Cmd('AT+CGDCONT=1,"IP","%s"' % apn), Cmd("AT+CIPMODE=1"),
                Cmd("AT+NETOPEN", 30000, until="+NETOPEN:"),
                Cmd('AT+CIPOPEN=0,"TCP","%s",%d' % (host, port), 30000, CONNECT)]

    def _open_tls(self, apn, host, port):
        ca = self.tls_ca
        return [Cmd('AT+CGDCONT=1,"IP","%s"' % apn),
                Cmd('AT+CCERTDOWN="%s",%d' % (CA_FILE, len(ca)), 10000, payload=ca, exact=True),
                Cmd('AT+CSSLCFG="sslversion",0,3'), Cmd('AT+CSSLCFG="authmode",0,1'),
                Cmd('AT+CSSLCFG="cacert",0,"%s"' % CA_FILE), Cmd("AT+CCHMODE=1"),
                Cmd("AT+CCHSTART", 30000, until="+CCHSTART:"), Cmd("AT+CCHSSLCFG=0,0"),
                Cmd('AT+CCHOPEN=0,"%s",%d,2' % (host, port), 30000, CONNECT)]

    def net_ok(self, cmd):
        """Whether a command of open_data succeeded (NETOPEN and CCHSTART must also report 0)."""
        if cmd.text == "AT+NETOPEN":
            return cmd.ok and cmd.find("+NETOPEN:") == "0"
        if cmd.text == "AT+CCHSTART":
            return cmd.ok and cmd.find("+CCHSTART:") == "0"
        return cmd.ok

    def close_data(self):
        if self.tls_ca:
            return [Cmd("AT+CCHCLOSE=0", 10000), Cmd("AT+CCHSTOP", 10000)]
        return [Cmd("AT+CIPCLOSE=0", 10000), Cmd("AT+NETCLOSE", 10000)]
