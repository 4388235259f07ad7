"""The SIM800 dialect (2G): boot URCs, network time by AT+CLTS, no AT+CEREG (no LTE), the packet-data
context by AT+CSTT / AT+CIICR / AT+CIFSR and AT+CIPSHUT, TCP by AT+CIPSTART (transparent with
AT+CIPMODE=1). Everything else is the shared core (core.py)."""
from host_tools.sim.modem.core import ModemCore


class Sim800(ModemCore):
    dialect = "sim800"
    MODEL = "SIMCOM_SIM800L"
    BOOT_URCS = ("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready")
    ACCESS_TECH = 0
    ATO_BANNER = "CONNECT"
    NETWORK_LOST_URCS = ("+PDP: DEACT",)

    def _at_CLTS(self, arg, q, s):     # update the clock from the network (always on here)
        return self._ok()

    def _at_CEREG(self, arg, q, s):    # an LTE registration query: not on a 2G modem
        return self._error()

    def _at_CIPCLOSE(self, arg, q, s):
        if self._sock is None and not self._connecting:
            return self._error()
        self._close_socket()
        self._line_out("CLOSE OK", 100)

    def _at_CSTT(self, arg, q, s):
        self._apn = arg.split(",")[0].strip().strip('"')
        self._ok()

    def _at_CIICR(self, arg, q, s):
        if self._reg not in (1, 5):
            return self._error(2000)
        self._net_open = True
        self._ok(self.rng.randint(500, 2000))

    def _at_CIFSR(self, arg, q, s):
        if not self._net_open:
            return self._error()
        self._line_out("10.%d.%d.%d" % (self.rng.randint(0, 255), self.rng.randint(0, 255), self.rng.randint(1, 254)))

    def _at_CIPSTART(self, arg, q, s):
        parts = [p.strip().strip('"') for p in arg.split(",")]
        if len(parts) < 3 or parts[0].upper() != "TCP" or not self._net_open:
            return self._error()
        if self._sock is not None or self._connecting:
            self._line_out("ALREADY CONNECT")
            return self._error()
        self._ok()
        self._start_connect(parts[1], parts[2], "CONNECT" if self._cipmode == 1 else "CONNECT OK",
                            lambda: self._cipmode == 1)

    def _at_CIPSHUT(self, arg, q, s):
        self._close_socket()
        self._net_open = False
        self._line_out("SHUT OK", 200)

    def _at_CIPSTATUS(self, arg, q, s):
        self._ok()
        state = "CONNECT OK" if self._sock else ("IP GPRSACT" if self._net_open else "IP INITIAL")
        self._line_out("STATE: " + state)
