"""The SIM7600 dialect (LTE Cat-1): boot URCs, network time by AT+CTZU, the packet-data context by
AT+NETOPEN / AT+NETCLOSE, transparent TCP by AT+CIPOPEN (AT+CIPMODE=1), and the modem's own TLS
(tls.py). Everything else is the shared core (core.py)."""
from host_tools.sim.modem.core import ModemCore
from host_tools.sim.modem.tls import ModemTls


class Sim7600(ModemTls, ModemCore):
    dialect = "sim7600"
    MODEL = "SIMCOM_SIM7600E"
    BOOT_URCS = ("RDY", "+CPIN: READY", "SMS DONE", "PB DONE")
    ACCESS_TECH = 7
    ATO_BANNER = "CONNECT 115200"
    NETWORK_LOST_URCS = ("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY",)

    def _at_CTZU(self, arg, q, s):     # update the clock from the network (always on here)
        return self._ok()

    def _at_NETOPEN(self, arg, q, s):
        if q:
            self._line_out(f"+NETOPEN: {1 if self._net_open else 0}")
            return self._ok()
        if self._net_open:
            self._line_out("+IP ERROR: Network is already opened")
            return self._error()
        self._ok()
        if self._reg in (1, 5):
            self._net_open = True
            self._line_out("+NETOPEN: 0", self.rng.randint(300, 1500))
        else:
            self._line_out("+NETOPEN: 1", 3000)

    def _at_NETCLOSE(self, arg, q, s):
        if not self._net_open:
            self._line_out("+NETCLOSE: 2")
            return self._error()
        self._close_socket()
        self._net_open = False
        self._ok()
        self._line_out("+NETCLOSE: 0", 200)

    def _at_CIPOPEN(self, arg, q, s):
        parts = [p.strip().strip('"') for p in arg.split(",")]
        if len(parts) < 4 or parts[1].upper() != "TCP" or not self._net_open or self._cipmode != 1:
            return self._error()          # only transparent TCP is modelled
        if self._sock is not None or self._connecting:
            self._line_out("+CIPOPEN: 0,4")
            return self._error()
        self._start_connect(parts[2], parts[3], "CONNECT 115200", lambda: self._cipmode == 1)

    def _at_CIPCLOSE(self, arg, q, s):
        if self._sock is None and not self._connecting:
            return self._error()
        self._close_socket()
        self._ok()
        self._line_out("+CIPCLOSE: 0,0", 100)
