"""SIM7600 TLS as the modem's own SSL stack does it: certificates downloaded into the modem's file system
(AT+CCERTDOWN, kept across power cycles), SSL context 0 configured (AT+CSSLCFG sslversion / authmode /
cacert), then AT+CCHMODE=1, AT+CCHSTART, AT+CCHSSLCFG, AT+CCHOPEN=0,host,port,2 -> CONNECT in
transparent mode. With a real broker the modem really terminates TLS (Python's ssl, verifying the server
against the downloaded CA and the host the firmware named); with the in-process broker the bytes pass in
clear once the same configuration checks passed (it has no TLS listener).

`ModemTls` is mixed into a dialect over `ModemCore` (sim7600.py); it opens the core's TCP bridge through
`_start_connect(..., wrap=self._tls_wrap)`."""
import ssl


class ModemTls:
    def __init__(self, *args, **kwargs):
        self.certs = {}                  # the modem's certificate files (AT+CCERTDOWN): name -> bytes
        self.tls_sessions = 0            # TLS handshakes completed (tests)
        super().__init__(*args, **kwargs)

    def _reset_state(self):
        super()._reset_state()
        self._ssl = {}                   # SSL context 0 (AT+CSSLCFG): sslversion, authmode, cacert
        self._cchmode = 0
        self._cch_started = False
        self._cch_ctx = None             # AT+CCHSSLCFG: the SSL context of session 0

    def _network_closed(self):
        super()._network_closed()
        self._cch_started = False

    def _at_CCERTDOWN(self, arg, q, s):
        parts = [p.strip() for p in arg.split(",")]
        try:
            name, n = parts[0].strip('"'), int(parts[1])
        except (IndexError, ValueError):
            return self._error()
        if not name or not 0 < n <= 10240:
            return self._error()
        self._prompt = ("raw", (n, lambda data: self._cert_stored(name, data)))
        self._emit(b"\r\n>", 20)

    def _cert_stored(self, name, data):
        self.certs[name] = data
        self._event(f"certificate {name} stored ({len(data)} bytes)")
        self._ok(100)

    def _at_CSSLCFG(self, arg, q, s):
        parts = [p.strip().strip('"') for p in arg.split(",")]
        if len(parts) != 3 or parts[1] != "0":
            return self._error()
        key, value = parts[0].lower(), parts[2]
        if key in ("sslversion", "authmode"):
            if not value.isdigit():
                return self._error()
            self._ssl[key] = int(value)
        elif key == "cacert":
            if value not in self.certs:
                return self._error()
            self._ssl[key] = value
        elif key == "enablesni":
            self._ssl[key] = value == "1"
        else:
            return self._error()
        self._ok()

    def _at_CCHMODE(self, arg, q, s):
        if self._cch_started:
            return self._error()
        self._cchmode = 1 if arg.strip() == "1" else 0
        self._ok()

    def _at_CCHSTART(self, arg, q, s):
        if self._cch_started:
            return self._error()
        self._ok()
        if self._reg in (1, 5):
            self._cch_started = self._net_open = True
            self._line_out("+CCHSTART: 0", self.rng.randint(300, 1500))
        else:
            self._line_out("+CCHSTART: 1", 3000)

    def _at_CCHSSLCFG(self, arg, q, s):
        parts = [p.strip() for p in arg.split(",")]
        if parts != ["0", "0"] or not self._cch_started:
            return self._error()
        self._cch_ctx = 0
        self._ok()

    def _at_CCHOPEN(self, arg, q, s):
        parts = [p.strip().strip('"') for p in arg.split(",")]
        if len(parts) < 4 or parts[0] != "0" or parts[3] != "2":
            return self._error()          # session 0, client type 2 (TLS) only
        if not self._cch_started or self._cchmode != 1 or self._cch_ctx != 0:
            return self._error()
        if self._sock is not None or self._connecting:
            self._line_out("+CCHOPEN: 0,4")
            return self._error()
        cfg = self._ssl
        if cfg.get("authmode") != 1 or cfg.get("cacert") not in self.certs or cfg.get("sslversion") not in (3, 4):
            self._event(f"TLS refused: SSL context 0 is {cfg}")
            self._line_out("+CCHOPEN: 0,15", 200)   # SSL handshake failed
            return self._error()
        self._start_connect(parts[1], parts[2], "CONNECT 115200", lambda: self._cchmode == 1, wrap=self._tls_wrap,
                            fail=("+CCHOPEN: 0,15", "ERROR"))

    def _at_CCHCLOSE(self, arg, q, s):
        if self._sock is None and not self._connecting:
            return self._error()
        self._close_socket()
        self._ok()
        self._line_out("+CCHCLOSE: 0,0", 100)

    def _at_CCHSTOP(self, arg, q, s):
        if not self._cch_started:
            return self._error()
        self._close_socket()
        self._cch_started = self._net_open = False
        self._cch_ctx = None
        self._ok()
        self._line_out("+CCHSTOP: 0", 100)

    def _tls_wrap(self, sock, host):
        """The modem's side of the TLS handshake: the server must chain to the downloaded CA and be
        named `host` (what the firmware asked for). Raises ssl.SSLError / OSError when it does not."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=self.certs[self._ssl["cacert"]].decode("ascii", "replace"))
        wrapped = ctx.wrap_socket(sock, server_hostname=host)
        self.tls_sessions += 1
        return wrapped
