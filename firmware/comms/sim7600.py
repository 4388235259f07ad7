"""SIMCom SIM7600 (LTE Cat-1) dialect: LTE registration (+CEREG) and transparent TCP through
NETOPEN / CIPOPEN, closed with CIPCLOSE / NETCLOSE."""
from comms.at import Cmd, CONNECT
from comms.dialect import Dialect


class SIM7600(Dialect):
    name = "sim7600"
    boot_ms = 12000
    reg_queries = ("AT+CREG?", "AT+CGREG?", "AT+CEREG?")

    def open_data(self, apn, host, port):
        # NETOPEN answers OK and then "+NETOPEN: 0" when the PDP context is really up.
        return [Cmd('AT+CGDCONT=1,"IP","%s"' % apn), Cmd("AT+CIPMODE=1"),
                Cmd("AT+NETOPEN", 30000, until="+NETOPEN:"),
                Cmd('AT+CIPOPEN=0,"TCP","%s",%d' % (host, port), 30000, CONNECT)]

    def net_ok(self, cmd):
        """Whether a command of open_data succeeded (NETOPEN must also report 0)."""
        if cmd.text == "AT+NETOPEN":
            return cmd.ok and cmd.find("+NETOPEN:") == "0"
        return cmd.ok

    def close_data(self):
        return [Cmd("AT+CIPCLOSE=0", 10000), Cmd("AT+NETCLOSE", 10000)]
