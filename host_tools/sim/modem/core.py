"""What every SIMCom modem the simulator models shares, at AT-command level, in virtual time: the runner's
interface, boot, SIM, signal, registration that takes seconds, network time, the AT line parser and its
prompts, SMS through an SMS centre (PDU and text mode, UCS2) with the SIM's message store, and the
transparent TCP bridge to a REAL socket to the MQTT broker on 127.0.0.1 (or to the in-process broker),
with faults on demand (no coverage, link drop, delay, garbage, hang, reboot). See docs/sim-modem.md.

A dialect (sim7600.py, sim800.py) is a subclass: its identity and URCs as class attributes, its own
packet-data commands as `_at_<NAME>` methods. `make_modem()` (host_tools/sim/modem/__init__.py) picks one.

The model reads the wall clock never; virtual ms come from `clock()`. Network I/O happens in poll().
The bearer between the modem and the network (`link`, linkprofile.py: round trip and bandwidth each way)
times the bytes of the data path; the default profile adds nothing."""
import datetime
import errno
import heapq
import math
import select
import socket
import ssl             # the TCP bridge's reads and writes also run over a TLS socket (tls.py)

from host_tools.sim.modem import linkprofile, sms_pdu

CRLF = b"\r\n"
_GUARD_MS = 1000          # +++ escape: silence before and after
_SIM_SLOTS = 30
_OPERATOR = "SimTel"
_AIR_PIECE = 512          # a shaped downlink reaches the firmware in pieces of this size as they arrive

# MQTT packet types, only to know when the firmware is waiting for the broker (lockstep pacing)
_REQUESTS = {1, 6, 8, 10, 12}          # CONNECT, PUBREL, SUBSCRIBE, UNSUBSCRIBE, PINGREQ (+ PUBLISH qos>0)
_REPLIES = {2, 4, 5, 7, 9, 11, 13}


class _MqttFramer:
    """Counts whole MQTT packets in a byte stream (type of each), to pace lockstep waits."""

    def __init__(self):
        self.buf = bytearray()
        self.broken = False

    def feed(self, data):
        types = []
        self.buf += data
        while not self.broken and len(self.buf) >= 2:
            mult, n, i = 1, 0, 1
            while True:
                if i >= len(self.buf):
                    return types
                b = self.buf[i]
                n += (b & 0x7F) * mult
                mult <<= 7
                i += 1
                if not b & 0x80:
                    break
                if i > 4:
                    self.broken = True
                    return types
            if len(self.buf) < i + n:
                return types
            first = self.buf[0]
            types.append((first >> 4, (first >> 1) & 3))
            del self.buf[:i + n]
        return types


class ModemCore:
    """The shared core; not a modem by itself (a dialect subclass names the model and its commands)."""
    dialect = None                   # "sim7600" | "sim800"
    MODEL = ""                       # ATI / AT+CGMM
    BOOT_URCS = ()                   # what the modem says when it has booted
    ACCESS_TECH = 0                  # AT+COPS? <AcT>: 0 GSM, 7 LTE
    ATO_BANNER = "CONNECT"           # back to data mode (ATO)
    NETWORK_LOST_URCS = ()           # the packet-data context died with the network

    def __init__(self, rng, broker=("127.0.0.1", 1883), smsc=None, clock=lambda: 0, epoch_s=0, powered=True,
                 link=None):
        """`link`: the bearer's profile, a name in linkprofile.PROFILES ("lte", "2g") or a LinkProfile;
        None is "lte", which adds nothing."""
        self.rng = rng
        self.link = linkprofile.get(link)
        self.broker = broker if hasattr(broker, "connect") else tuple(broker)
        self.smsc = smsc
        self.clock = clock
        self.epoch_s = epoch_s
        self.coverage = True
        self.extra_delay_ms = 0
        self.garbage_rate = 0.0
        self.hung = False
        self.powered = False
        # while a TCP link is open, ask to be polled at least this often (virtual ms) so broker traffic
        # (a downlink token) reaches the firmware even when nothing else is scheduled; None: never
        self.net_poll_ms = 1000
        self._last_poll_ms = 0
        self.log = []                    # (ms, "AT line" or event) for tests and traces
        self.connect_log = []            # (host, port) the firmware asked for
        self._out = []                   # [ready_ms, bytes] in order
        self._timers = []                # heap of (ms, n, fn)
        self._tn = 0
        self._sock = None
        self._sim = {}                   # SIM SMS storage: idx -> dict
        self._reset_state()
        if powered:
            self.set_power(True)

    # ===== the runner's interface =====================================================================
    def from_firmware(self, data):
        if not self.powered or self.hung or self._booting:
            return
        now = self.clock()
        for b in bytes(data):
            self._byte(b, now)

    def read(self, max_n):
        now = self.clock()
        out = bytearray()
        while self._out and self._out[0][0] <= now and len(out) < max_n:
            t, chunk = self._out[0]
            take = max_n - len(out)
            out += chunk[:take]
            if take >= len(chunk):
                self._out.pop(0)
            else:
                self._out[0][1] = chunk[take:]
        return bytes(out)

    def has_data(self):
        return bool(self._out) and self._out[0][0] <= self.clock()

    def next_event_ms(self):
        cands = []
        if self._timers:
            cands.append(self._timers[0][0])
        if self._out:
            cands.append(self._out[0][0])
        if self._esc_count and self._data_mode:
            cands.append(self._esc_last_ms + _GUARD_MS)
        if self._sock is not None and self.net_poll_ms:
            cands.append(self._last_poll_ms + self.net_poll_ms)
        if self._ul_q:
            cands.append(self._ul_q[0][0])
        return min(cands) if cands else None

    def poll(self, now_ms, wait_s=0.0):
        self._last_poll_ms = now_ms
        while self._timers and self._timers[0][0] <= now_ms:
            _, _, fn = heapq.heappop(self._timers)
            fn()
        self._check_escape(now_ms)
        self._net_io(now_ms, wait_s)

    @property
    def ready(self):
        """Powered, booted and answering (for harnesses and the runner's traces)."""
        return self.powered and not self._booting and not self.hung

    def expecting_reply(self):
        return self._sock is not None and self._awaiting > 0

    def set_power(self, on):
        if on and not self.powered:
            self.powered = True
            self.hung = False
            self._boot()
        elif not on and self.powered:
            self.powered = False
            self._shutdown()

    def reset(self):
        """The reset pin: a hard restart (also clears a hang)."""
        self._shutdown()
        self.powered = True
        self.hung = False
        self._boot()

    # ----- faults ---------------------------------------------------------------------------------
    def set_coverage(self, ok):
        ok = bool(ok)
        if ok == self.coverage:
            return
        self.coverage = ok
        self._event("coverage " + ("on" if ok else "off"))
        if not ok:
            self._lose_network()
        elif self.powered and not self._booting and self._reg == 2:
            self._after(self.rng.randint(2000, 6000), self._register)

    def drop_link(self):
        """The TCP connection dies (the far end or the network closed it)."""
        if self._sock is not None or self._connecting:
            self._event("link dropped")
            self._close_link(urc=True, vanish=True)

    def set_delay_ms(self, ms):
        self.extra_delay_ms = max(0, int(ms))

    def set_link(self, profile):
        """The bearer from now on (a name in linkprofile.PROFILES or a LinkProfile)."""
        self.link = linkprofile.get(profile)

    def set_garbage(self, rate):
        self.garbage_rate = max(0.0, min(1.0, float(rate)))

    def hang(self):
        """Stop answering anything until power-cycled or reset."""
        self._event("hang")
        self.hung = True
        self._out.clear()
        self._timers.clear()

    def reboot(self):
        """A spontaneous modem reboot (brown-out, firmware crash): link lost, boot URCs again."""
        self._event("reboot")
        self._shutdown()
        self.powered = True
        self._boot()

    # ===== state ======================================================================================
    def _reset_state(self):
        self._line = bytearray()
        self.echo = True
        self._booting = False
        self._reg = 0                    # 0 not searching, 1 home, 2 searching, 3 denied, 5 roaming
        self._time_synced = False
        self._cmgf = 0
        self._cscs = "IRA"
        self._csmp_dcs = 0
        self._cnmi_mt = 0
        self._prompt = None              # pending CMGS: ("pdu", length) or ("text", number); ("raw", (n, done))
        self._prompt_buf = bytearray()
        self._net_open = False           # the packet-data context is up (SIM7600 NETOPEN / SIM800 CIICR)
        self._apn = None
        self._cipmode = 0
        self._data_mode = False
        self._connecting = False
        self._tx = bytearray()           # to the broker
        self._rx_held = bytearray()      # from the broker while in command mode
        self._held_urcs = []             # URCs raised while in data mode
        self._esc_count = 0
        self._esc_last_ms = 0
        self._last_rx_ms = -10 ** 9
        self._awaiting = 0
        self._up = _MqttFramer()
        self._down = _MqttFramer()
        self._air_reset()

    def _air_reset(self):
        """Nothing in flight on the bearer (a new link, or the old one gone with what it carried)."""
        self._ul_q = []                  # [ready_ms, bytearray]: uplink bytes still in the air
        self._ul_free = 0.0              # when the uplink has sent what it was given (float ms)
        self._dl_free = 0.0              # when the downlink has carried what it was given

    def _event(self, what):
        self.log.append((self.clock(), "* " + what))

    def _after(self, ms, fn):
        self._tn += 1
        heapq.heappush(self._timers, (self.clock() + ms, self._tn, fn))

    def _emit(self, data, delay_ms=20):
        """Queue bytes for the firmware after delay (+ any injected delay), keeping order."""
        if not self.powered or self.hung:
            return
        t = self.clock() + delay_ms + self.extra_delay_ms
        if self._out and self._out[-1][0] > t:
            t = self._out[-1][0]
        if self.garbage_rate and self.rng.random() < self.garbage_rate:
            junk = bytes(self.rng.choice(b"\x00\xff\xfe+#ERRCONNECT?\x80\x1b") for _ in range(self.rng.randint(1, 12)))
            self._out.append([t, CRLF + junk + CRLF])
        self._out.append([t, bytes(data)])

    def _line_out(self, text, delay_ms=20):
        self._emit(CRLF + text.encode("latin-1") + CRLF, delay_ms)

    def _ok(self, delay_ms=20):
        self._line_out("OK", delay_ms)

    def _error(self, delay_ms=20):
        self._line_out("ERROR", delay_ms)

    def _boot(self):
        self._reset_state()
        self._booting = True
        self._event("boot")
        self._after(self.rng.randint(3000, 6000), self._booted)

    def _booted(self):
        self._booting = False
        for u in self.BOOT_URCS:
            self._line_out(u, 0)
        self._reg = 2
        if self.coverage:
            self._after(self.rng.randint(2000, 8000), self._register)

    def _register(self):
        if self.powered and not self.hung and self.coverage and self._reg != 1:
            self._reg = 1
            self._time_synced = True     # network time (NITZ) arrives with registration
            self._event("registered")

    def _lose_network(self):
        self._reg = 2
        if self._sock is not None or self._connecting or self._net_open:
            self._close_link(urc=True, network=True, vanish=True)

    def _shutdown(self):
        self._close_socket(vanish=True)
        self._out.clear()
        self._timers.clear()
        self._reset_state()

    # ===== bytes from the firmware ====================================================================
    def _byte(self, b, now):
        if self._data_mode:
            self._data_byte(b, now)
            return
        if self._prompt is not None:
            self._prompt_byte(b)
            return
        if self.echo:
            self._emit(bytes([b]), 0)
        if b == 0x0D:
            line = bytes(self._line).strip()
            self._line.clear()
            if line:
                self._command(line.decode("latin-1"))
        elif b == 0x0A:
            pass
        elif b == 0x08:
            self._line[-1:] = b""
        else:
            self._line.append(b)
            if len(self._line) > 560:
                self._line.clear()

    def _data_byte(self, b, now):
        """Transparent mode: bytes go to the broker, except a '+++' framed by 1 s of silence."""
        silent_before = now - self._last_rx_ms >= _GUARD_MS
        if b == 0x2B and (self._esc_count or silent_before) and self._esc_count < 3:
            self._esc_count += 1
            self._esc_last_ms = now
            self._last_rx_ms = now
            return
        if self._esc_count:                       # not an escape after all: the '+' were data
            self._to_net(b"+" * self._esc_count)
            self._esc_count = 0
        self._to_net(bytes([b]))
        self._last_rx_ms = now

    def _to_net(self, data):
        """Bytes from the firmware for the broker: on the air first when the bearer is shaped (each byte
        behind the ones before it at the uplink's rate, then half the round trip)."""
        link = self.link
        if not link.shaped:
            return self._on_air_up(data)
        start = max(float(self.clock()), self._ul_free)
        self._ul_free = start + link.airtime_ms(len(data), link.up_bps)
        ready = math.ceil(self._ul_free + link.rtt_ms / 2.0)
        if self._ul_q and self._ul_q[-1][0] == ready:
            self._ul_q[-1][1] += data
        else:
            self._ul_q.append([ready, bytearray(data)])

    def _on_air_up(self, data):
        """Bytes that crossed the uplink: to the broker's socket at the next I/O."""
        self._tx += data
        for typ, flags in self._up.feed(data):
            if typ in _REQUESTS or (typ == 3 and flags > 0):
                self._awaiting += 1

    def _check_escape(self, now):
        if not (self._data_mode and self._esc_count) or now - self._esc_last_ms < _GUARD_MS:
            return
        if self._esc_count == 3:
            self._event("+++ escape")
            self._data_mode = False
            self._esc_count = 0
            self._ok(0)
            self._flush_urcs()
        else:
            self._to_net(b"+" * self._esc_count)
            self._esc_count = 0

    def _prompt_byte(self, b):
        if self._prompt[0] == "raw":               # exactly <n> bytes, no Ctrl-Z (a file download)
            self._prompt_buf.append(b)
            n, done = self._prompt[1]
            if len(self._prompt_buf) >= n:
                data = bytes(self._prompt_buf)
                self._prompt, self._prompt_buf = None, bytearray()
                done(data)
            return
        if b == 0x1B:                              # ESC cancels
            self._prompt, self._prompt_buf = None, bytearray()
            self._ok()
            return
        if b != 0x1A:
            self._prompt_buf.append(b)
            if len(self._prompt_buf) > 1024:
                self._prompt, self._prompt_buf = None, bytearray()
                self._line_out("+CMS ERROR: 304")
            return
        kind, arg = self._prompt
        body = bytes(self._prompt_buf)
        self._prompt, self._prompt_buf = None, bytearray()
        if self.echo:
            self._emit(body.replace(b"\r", b"\r\n"), 0)
        if self._reg not in (1, 5) or self.smsc is None:
            self._line_out("+CMS ERROR: 331", 500)   # no network service
            return
        try:
            if kind == "pdu":
                raw = bytes.fromhex(body.decode("latin-1").strip())
                sca_len = raw[0]
                tpdu = raw[1 + sca_len:]
                if len(tpdu) != arg:
                    raise sms_pdu.PduError(f"TPDU is {len(tpdu)} octets, AT+CMGS said {arg}")
                mr = self.smsc.submit_pdu(tpdu)
            else:
                text = self._decode_text(body.decode("latin-1"))
                mr = self.smsc.submit_text(arg, text, "ucs2" if self._cscs == "UCS2" or self._csmp_dcs == 8 else "gsm7")
        except (ValueError, IndexError, UnicodeError) as e:
            self._event(f"SMS refused: {e}")
            self._line_out("+CMS ERROR: 304", 300)   # invalid PDU mode parameter
            return
        self._line_out(f"+CMGS: {mr}", self.rng.randint(1500, 3500))
        self._ok(0)

    def _decode_text(self, s):
        if self._cscs == "UCS2":
            return bytes.fromhex(s.strip()).decode("utf-16-be")
        if self._cscs == "GSM":
            return sms_pdu.gsm7_text([ord(c) & 0x7F for c in s])
        return s

    def _encode_text(self, s):
        if self._cscs == "UCS2":
            return s.encode("utf-16-be").hex().upper()
        return s

    # ===== AT commands ================================================================================
    def _command(self, line):
        self.log.append((self.clock(), line))
        up = line.upper()
        if not up.startswith("AT"):
            self._error()
            return
        cmd = line[2:]
        ucmd = up[2:]
        if ucmd == "":
            return self._ok()
        if ucmd in ("E0", "E1"):
            self.echo = ucmd == "E1"
            return self._ok()
        if ucmd in ("I", "+CGMM", "+GMM"):
            self._line_out(self.MODEL)
            return self._ok()
        if ucmd == "O":
            return self._ato()
        if ucmd.startswith("+"):
            name, _, arg = cmd[1:].partition("=")
            query = name.endswith("?")
            name = name.rstrip("?").upper()
            handler = getattr(self, "_at_" + name.replace("&", "_"), None)
            if handler is None:
                return self._error()
            return handler(arg, query, "=" in cmd)
        if ucmd in ("&W", "Z", "&F", "V1") or ucmd.startswith("S"):
            return self._ok()
        self._error()

    # -- basics ---------------------------------------------------------------------------------------
    def _at_CMEE(self, arg, q, s):
        self._ok()

    def _at_CFUN(self, arg, q, s):
        if q:
            self._line_out("+CFUN: 1")
        self._ok()

    def _at_CPIN(self, arg, q, s):
        self._line_out("+CPIN: READY")
        self._ok()

    def _at_CSQ(self, arg, q, s):
        rssi = self.rng.randint(12, 28) if self.coverage and self._reg in (1, 2, 5) else 99
        self._line_out(f"+CSQ: {rssi},99")
        self._ok()

    def _reg_query(self, name):
        self._line_out(f"+{name}: 0,{self._reg}")
        self._ok()

    def _at_CREG(self, arg, q, s):
        return self._reg_query("CREG") if q else self._ok()

    def _at_CGREG(self, arg, q, s):
        return self._reg_query("CGREG") if q else self._ok()

    def _at_CEREG(self, arg, q, s):
        return self._reg_query("CEREG") if q else self._ok()

    def _at_COPS(self, arg, q, s):
        if q:
            if self._reg in (1, 5):
                self._line_out(f'+COPS: 0,0,"{_OPERATOR}",{self.ACCESS_TECH}')
            else:
                self._line_out("+COPS: 0")
        self._ok()

    def _at_CGDCONT(self, arg, q, s):
        if q:
            self._line_out(f'+CGDCONT: 1,"IP","{self._apn or ""}"')
            return self._ok()
        parts = [p.strip().strip('"') for p in arg.split(",")]
        if len(parts) >= 3:
            self._apn = parts[2]
        self._ok()

    def _at_CCLK(self, arg, q, s):
        if not q:
            return self._ok()
        if self._time_synced:
            t = datetime.datetime.fromtimestamp(self.epoch_s + self.clock() // 1000, datetime.timezone.utc)
            self._line_out('+CCLK: "%s+00"' % t.strftime("%y/%m/%d,%H:%M:%S"))
        else:
            self._line_out('+CCLK: "80/01/06,00:00:%02d+00"' % min(59, self.clock() // 1000 % 60))
        self._ok()

    # -- SMS ------------------------------------------------------------------------------------------
    def _at_CMGF(self, arg, q, s):
        if q:
            self._line_out(f"+CMGF: {self._cmgf}")
            return self._ok()
        if arg.strip() not in ("0", "1"):
            return self._error()
        self._cmgf = int(arg)
        self._ok()

    def _at_CSCS(self, arg, q, s):
        if q:
            self._line_out(f'+CSCS: "{self._cscs}"')
            return self._ok()
        cs = arg.strip().strip('"').upper()
        if cs not in ("IRA", "GSM", "UCS2"):
            return self._error()
        self._cscs = cs
        self._ok()

    def _at_CSMP(self, arg, q, s):
        parts = [p.strip() for p in arg.split(",")]
        if len(parts) >= 4 and parts[3].isdigit():
            self._csmp_dcs = int(parts[3])
        self._ok()

    def _at_CNMI(self, arg, q, s):
        parts = [p.strip() for p in arg.split(",")]
        self._cnmi_mt = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self._ok()

    def _at_CPMS(self, arg, q, s):
        n = len(self._sim)
        self._line_out(f'+CPMS: "SM",{n},{_SIM_SLOTS},"SM",{n},{_SIM_SLOTS},"SM",{n},{_SIM_SLOTS}')
        self._ok()

    def _at_CSCA(self, arg, q, s):
        if q:
            self._line_out(f'+CSCA: "{self.smsc.number if self.smsc else ""}",145')
        self._ok()

    def _sms_header(self, idx, m):
        if self._cmgf == 0:
            return f"{0 if not m['read'] else 1},,{m['tpdu_len']}", m["pdu"].hex().upper()
        stat = "REC READ" if m["read"] else "REC UNREAD"
        t = datetime.datetime.fromtimestamp(m["unix_s"], datetime.timezone.utc).strftime("%y/%m/%d,%H:%M:%S+00")
        return f'"{stat}","{self._encode_text(m["sender"])}",,"{t}"', self._encode_text(m["text"])

    def _at_CMGR(self, arg, q, s):
        try:
            idx = int(arg)
        except ValueError:
            return self._error()
        m = self._sim.get(idx)
        if m is None:
            return self._ok()          # empty slot: SIMCom answers just OK
        head, body = self._sms_header(idx, m)
        self._emit(CRLF + f"+CMGR: {head}".encode() + CRLF + body.encode("latin-1") + CRLF, 30)
        m["read"] = True
        self._ok()

    def _at_CMGL(self, arg, q, s):
        for idx in sorted(self._sim):
            m = self._sim[idx]
            head, body = self._sms_header(idx, m)
            self._emit(CRLF + f"+CMGL: {idx},{head}".encode() + CRLF + body.encode("latin-1"), 10)
            m["read"] = True
        self._ok()

    def _at_CMGD(self, arg, q, s):
        parts = [p.strip() for p in arg.split(",")]
        try:
            idx = int(parts[0])
            flag = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except ValueError:
            return self._error()
        if flag == 0:
            self._sim.pop(idx, None)
        elif flag == 1:
            self._sim = {k: v for k, v in self._sim.items() if not v["read"]}
        else:
            self._sim.clear()
        self._ok(50)

    def _at_CMGS(self, arg, q, s):
        if self._cmgf == 0:
            try:
                n = int(arg)
            except ValueError:
                return self._error()
            self._prompt = ("pdu", n)
        else:
            num = arg.strip().split(",")[0].strip('"')
            if self._cscs == "UCS2":
                try:
                    num = bytes.fromhex(num).decode("utf-16-be")
                except ValueError:
                    return self._error()
            self._prompt = ("text", num)
        self._emit(b"\r\n> ", 20)

    def _store_inbound(self):
        if self.smsc is None or self._reg not in (1, 5):
            return
        for m in self.smsc.take_inbound():
            free = next((i for i in range(_SIM_SLOTS) if i not in self._sim), None)
            if free is None:
                self.smsc.inbound.append(m)      # SIM full: the centre keeps it and retries
                continue
            self._sim[free] = dict(m, read=False)
            if self._cnmi_mt == 1:
                self._urc(f'+CMTI: "SM",{free}')

    def _urc(self, text):
        """An unsolicited result: now in command mode, held until the link leaves data mode otherwise."""
        if self._data_mode:
            self._held_urcs.append(text)
        else:
            self._line_out(text, 0)

    def _flush_urcs(self):
        for u in self._held_urcs:
            self._line_out(u, 0)
        self._held_urcs = []

    # -- packet data: what both dialects share (the dialects open and close the context and socket) ----
    def _at_CIPMODE(self, arg, q, s):
        if q:
            self._line_out(f"+CIPMODE: {self._cipmode}")
            return self._ok()
        self._cipmode = 1 if arg.strip() == "1" else 0
        self._ok()

    # -- the TCP bridge -------------------------------------------------------------------------------
    def _start_connect(self, host, port, banner, transparent, wrap=None, fail=("CONNECT FAIL",)):
        """Open the bridge after a network delay. `transparent()`: enter data mode once connected;
        `wrap(sock, host)`: a layer over a real socket (TLS); `fail`: the lines when it cannot connect."""
        try:
            port = int(port)
        except ValueError:
            return self._error()
        self.connect_log.append((host, port))
        self._connecting = True
        local = hasattr(self.broker, "connect")      # the in-process broker (host_tools/sim/net/mqttbroker)
        where = "the in-process broker" if local else "broker %s:%s" % (self.broker[0], self.broker[1])
        self._event(f"TCP open {host}:{port} -> {where}")

        def done():
            if not self._connecting:
                return
            self._connecting = False
            try:
                # the simulated network maps the head-end address to the broker
                sock = self.broker.connect() if local else socket.create_connection(self.broker, timeout=2.0)
                if wrap is not None and not local:
                    sock = wrap(sock, host)
            except OSError as e:                 # ssl.SSLError included: a server the CA does not vouch for
                self._event(f"{'TLS' if wrap is not None else 'TCP'} connect failed: {e}")
                for line in fail:
                    self._line_out(line, 0)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._awaiting = 0
            self._up, self._down = _MqttFramer(), _MqttFramer()
            self._rx_held.clear()
            self._tx.clear()
            self._line_out(banner, 0)
            if transparent():
                self._data_mode = True
                self._last_rx_ms = self.clock()
        # the TCP handshake adds the bearer's round trip (0 unless shaped), after the same draw as always
        self._after(self.rng.randint(150, 900) + self.extra_delay_ms + self.link.rtt_ms, done)

    def _ato(self):
        if self._sock is None:
            self._line_out("NO CARRIER")
            return
        self._line_out(self.ATO_BANNER)
        self._data_mode = True
        self._last_rx_ms = self.clock()
        if self._rx_held:
            self._emit(bytes(self._rx_held), 20)
            self._rx_held.clear()

    def _close_socket(self, vanish=False):
        """Close the bridge. `vanish`: the radio link is gone, so no FIN reaches the broker, which
        notices only when the session's keepalive expires (the in-process broker models that; a real
        socket can only be closed)."""
        self._connecting = False
        if self._sock is not None:
            try:
                if vanish and hasattr(self._sock, "abandon"):
                    self._sock.abandon()
                else:
                    self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._data_mode = False
        self._esc_count = 0
        self._awaiting = 0
        self._tx.clear()
        self._air_reset()                # what was in the air is lost with the link

    def _close_link(self, urc, network=False, vanish=False):
        was = self._sock is not None or self._connecting
        self._close_socket(vanish)
        if not urc or not self.powered:
            return
        if was:
            self._line_out("CLOSED", 0)
        self._flush_urcs()
        if network:
            self._network_closed()
            for u in self.NETWORK_LOST_URCS:
                self._line_out(u, 0)

    def _network_closed(self):
        """The packet-data context is gone with the network (a dialect adds its own sessions)."""
        self._net_open = False

    def _net_io(self, now, wait_s):
        if self.powered and not self.hung and not self._booting:
            self._store_inbound()
        if self._sock is None:
            return
        while self._ul_q and self._ul_q[0][0] <= now:
            self._on_air_up(bytes(self._ul_q.pop(0)[1]))
        if self._tx:
            try:
                n = self._sock.send(self._tx)
                del self._tx[:n]
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                self._close_link(urc=True)
                return
        if wait_s > 0 and self._awaiting > 0 and hasattr(self._sock, "fileno"):
            select.select([self._sock], [], [], wait_s)
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                data = b""
            if not data:
                self._event("broker closed the connection")
                self._close_link(urc=True)
                return
            for typ, _ in self._down.feed(data):
                if typ in _REPLIES and self._awaiting > 0:
                    self._awaiting -= 1
            if self._data_mode:
                self._downlink(data)
            else:
                self._rx_held += data      # held in the modem (given at ATO), not timed by the bearer

    def _downlink(self, data):
        """Broker bytes towards the firmware: at once, or when shaped behind the bytes before them at the
        downlink's rate plus half the round trip, in pieces as they come off the air."""
        link = self.link
        if not link.shaped:
            return self._emit(data, 0)
        now = self.clock()
        for i in range(0, len(data), _AIR_PIECE):
            piece = data[i:i + _AIR_PIECE]
            self._dl_free = max(float(now), self._dl_free) + link.airtime_ms(len(piece), link.down_bps)
            self._emit(piece, math.ceil(self._dl_free + link.rtt_ms / 2.0) - now)
