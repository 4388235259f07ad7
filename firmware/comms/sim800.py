"""SIMCom SIM800 (GSM/GPRS) dialect: GPRS registration (+CGREG) and transparent TCP through CSTT /
CIICR / CIFSR / CIPSTART, closed with CIPCLOSE / CIPSHUT."""
from comms.at import Cmd, CONNECT, LINE
from comms.dialect import Dialect


class SIM800(Dialect):
    name = "sim800"
    boot_ms = 5000
    time_cmd = "AT+CLTS=1"

    def open_data(self, apn, host, port):
        # CIPSHUT first: CSTT is refused unless the IP stack is in its initial state.
        return [Cmd("AT+CIPSHUT", 65000), Cmd("AT+CIPMODE=1"), Cmd('AT+CSTT="%s"' % apn),
                Cmd("AT+CIICR", 85000), Cmd("AT+CIFSR", 10000, LINE),
                Cmd('AT+CIPSTART="TCP","%s","%d"' % (host, port), 75000, CONNECT)]

    def net_ok(self, cmd):
        if cmd.text == "AT+CIFSR":
            return cmd.ok and cmd.lines and cmd.lines[0].count(".") == 3
        return cmd.ok

    def close_data(self):
        return [Cmd("AT+CIPCLOSE", 10000), Cmd("AT+CIPSHUT", 65000)]
