"""Non-blocking AT command engine for a modem UART: a queue of commands, each with its own deadline
and expected final result, line assembly in a bounded buffer, unsolicited result codes dispatched
whenever they arrive (also between a command and its result) and a transparent data mode.

`poll()` reads what the stream has now, never waits. Lines that are too long or not printable ASCII
are dropped and counted. Consecutive timeouts are counted (`silent`) so the supervisor can decide the
modem is hung and power-cycle it. In data mode bytes go to `sink` except the modem's own
end-of-data markers (`CLOSED`, `NO CARRIER`, and `OK` after an escape), found by a short scan."""
from micropython import const

# Command kinds: what ends a command.
PLAIN = const(0)  # OK / ERROR / +CME ERROR / +CMS ERROR
CONNECT = const(1)  # CONNECT[ speed] enters data mode; OK is intermediate
LINE = const(2)  # the first response line is the result (SIM800 AT+CIFSR answers only its IP)
ESCAPE = const(3)  # "+++" with guard times, answered by OK

_MAX_LINES = const(24)  # response lines kept per command; more are counted, not stored
_HOLD_MS = const(300)  # a possible marker prefix is held back at most this long in data mode
_PROMPT = const(0x3E)  # '>' of the SMS prompt, which has no line end
_PROMPT_MS = const(5000)  # a live modem prompts at once: a command with a payload waits this long for it
_PROBE_MS = const(1000)  # after a timeout in command mode, a bare AT asks whether the modem is there

_FINAL_OK = ("OK", "SHUT OK", "CLOSE OK", "SEND OK")
_FINAL_ERR = ("ERROR", "NO CARRIER", "CONNECT FAIL", "NO DIALTONE", "BUSY", "NO ANSWER")
URC_PREFIXES = ("+CMTI:", "+CREG:", "+CGREG:", "+CEREG:", "CLOSED", "+CIPEVENT:", "RING", "+CPIN:",
                "*PSUTTZ:", "+CTZV:", "+CTZE:", "DST:", "+IPCLOSE:", "+CIPCLOSE:", "+NETOPEN:",
                "+NETCLOSE:", "SMS Ready", "Call Ready", "RDY", "PB DONE", "+CLIP:", "+PDP:",
                "+CMT:", "NORMAL POWER DOWN", "+CFUN:", "UNDER-VOLTAGE", "OVER-VOLTAGE")
_MARK_RDY = b"\r\nRDY\r\n"  # the modem restarted by itself: the data link is gone with it
_MARK_CLOSED = (b"\r\nCLOSED\r\n", b"\r\nNO CARRIER\r\n", _MARK_RDY)
_MARK_OK = b"\r\nOK\r\n"


class Cmd:
    """One command. After it finishes: `result` is "OK", "ERROR", "TIMEOUT", "CONNECT" (or the
    failure line), `code` the +CME/+CMS number (or None), `lines` the response lines."""

    def __init__(self, text, timeout_ms=5000, kind=PLAIN, payload=None, until=None, guard_ms=1000,
                 optional=False, exact=False):
        self.text = text
        self.optional = optional  # a failure does not fail the sequence it is part of
        self.timeout_ms = timeout_ms
        self.kind = kind
        self.payload = payload  # bytes sent after the "> " prompt, followed by Ctrl-Z
        self.exact = exact  # the command gave the payload's length: no Ctrl-Z (AT+CCERTDOWN)
        self.until = until  # a line prefix that must also arrive (e.g. "+NETOPEN:") before done
        self.guard_ms = guard_ms
        self.lines = []
        self.result = None
        self.code = None
        self.ok = False
        self._seen_until = until is None
        self._sent = False
        self._deadline = 0
        self._phase = 0  # escape: 0 wait pre-guard, 1 sent

    def done(self):
        return self.result is not None

    def find(self, prefix):
        """The first response line starting with prefix, without it, or None."""
        for ln in self.lines:
            if ln.startswith(prefix):
                return ln[len(prefix):].strip()
        return None


class ATEngine:
    def __init__(self, stream, clock, on_urc=None, max_line=512):
        self.stream = stream
        self.clock = clock
        self.on_urc = on_urc  # (line) -> None
        self.sink = None  # (bytes) -> None in data mode
        self.on_closed = None  # () -> None when the modem ends data mode by itself
        self._line = bytearray(max_line)
        self._n = 0
        self._skip = False  # discarding the rest of an overlong line
        self.queue = []
        self.cur = None
        self.data_mode = False
        self._held = b""
        self._held_at = 0
        self._eat_lf = False
        self._last_tx = clock.ticks_ms()
        self.silent = 0  # consecutive timeouts
        self.stats = {"lines": 0, "garbage": 0, "overlong": 0, "urc": 0, "timeouts": 0, "dropped": 0}

    # -- commands ---------------------------------------------------------------------------
    def send(self, cmd):
        """Queue a command (a Cmd or AT text); returns the Cmd to watch."""
        if isinstance(cmd, str):
            cmd = Cmd(cmd)
        self.queue.append(cmd)
        return cmd

    def busy(self):
        return self.cur is not None or bool(self.queue)

    def withdraw(self, cmd):
        """Take back a queued command not yet written to the modem; False once it has gone out."""
        if cmd._sent or cmd not in self.queue:
            return False
        self.queue.remove(cmd)
        return True

    def flush(self, why="FLUSHED"):
        """Abandon every queued command (power-cycle, link reset)."""
        for c in self.queue:
            c.result = why
        if self.cur:
            self.cur.result = why
        self.queue = []
        self.cur = None
        self._n = 0
        self._skip = False
        self.data_mode = False
        self._held = b""

    def write_data(self, data):
        """Bytes for the far end while in data mode."""
        if self.data_mode:
            self.stream.write(data)
            self._last_tx = self.clock.ticks_ms()

    def start_next(self):
        """Write the next queued command when the modem is free (also called right after the owner
        queued one, so a command goes out in the same pass as the answer before it)."""
        c = self.clock
        while self.cur is None and self.queue:
            cmd = self.queue[0]
            if self.data_mode and cmd.kind != ESCAPE:
                return  # commands wait until the data link is escaped or closed
            now = c.ticks_ms()
            if cmd.kind == ESCAPE:
                if not self.data_mode:
                    self.queue.pop(0)
                    cmd.result = "OK"  # already in command mode
                    cmd.ok = True
                    continue
                if c.ticks_diff(now, self._last_tx) < cmd.guard_ms:
                    return  # silence before "+++" is part of the escape
                self.stream.write(b"+++")
                self._last_tx = now
                cmd._deadline = c.ticks_add(now, cmd.guard_ms + cmd.timeout_ms)
            else:
                self.stream.write(cmd.text.encode() + b"\r")
                self._last_tx = now
                cmd._deadline = c.ticks_add(now, cmd.timeout_ms if cmd.payload is None else
                                            min(cmd.timeout_ms, _PROMPT_MS))
            self.queue.pop(0)
            cmd._sent = True
            self.cur = cmd

    def _finish(self, result, code=None):
        cmd = self.cur
        self.cur = None
        cmd.result = result
        cmd.code = code
        cmd.ok = result == "OK" or result == "CONNECT"
        if result == "TIMEOUT":
            self.silent += 1
            self.stats["timeouts"] += 1
            if not self.data_mode:
                # A command can take long to time out (an SMS: 60 s); a hung modem must not cost that
                # many times over before the supervisor's hang limit: the next ones are short probes.
                self.queue.insert(0, Cmd("AT", _PROBE_MS))
        else:
            self.silent = 0

    # -- input -------------------------------------------------------------------------------
    def poll(self):
        """Read what is available, handle it, run timers; returns the number of bytes consumed."""
        c = self.clock
        self.start_next()
        data = self.stream.read()
        n = len(data) if data else 0
        if n:
            self.feed(data)
        elif self._held and c.ticks_diff(c.ticks_ms(), self._held_at) >= _HOLD_MS:
            held = self._held
            self._held = b""
            if self.sink:
                self.sink(held)
        cmd = self.cur
        if cmd is not None and cmd.result is None and c.ticks_diff(c.ticks_ms(), cmd._deadline) >= 0:
            self._finish("TIMEOUT")
        self.start_next()
        return n

    def feed(self, data):
        i = 0
        while i < len(data):
            if self.data_mode:
                self._feed_data(data[i:])
                return
            i = self._feed_lines(data, i)

    def _feed_data(self, data):
        if self._eat_lf:
            self._eat_lf = False
            if data[:1] == b"\n":
                data = data[1:]  # the LF of the CONNECT line's CR LF is not data
                if not data:
                    return
        if self._held:
            data = self._held + data
            self._held = b""
        esc = self.cur is not None and self.cur.kind == ESCAPE
        cut = -1
        mlen = 0
        for m in _MARK_CLOSED:
            k = data.find(m)
            if k >= 0 and (cut < 0 or k < cut):
                cut, mlen = k, len(m)
        if esc:
            k = data.find(_MARK_OK)
            if k >= 0 and (cut < 0 or k < cut):
                cut, mlen = k, -len(_MARK_OK)
        if cut < 0:
            # Hold back a tail that could be the start of a marker split across reads.
            keep = 0
            for m in _MARK_CLOSED + (_MARK_OK,):
                for L in range(min(len(m) - 1, len(data)), 1, -1):
                    if data[-L:] == m[:L] and L > keep:
                        keep = L
                        break
            if keep:
                self._held = data[-keep:]
                self._held_at = self.clock.ticks_ms()
                data = data[:-keep]
            if data and self.sink:
                self.sink(data)
            return
        if cut and self.sink:
            self.sink(data[:cut])
        self.data_mode = False
        rest = data[cut + abs(mlen):]
        if mlen > 0 and data[cut:cut + mlen] == _MARK_RDY:
            rest = data[cut:]  # the restarted modem's RDY is also its URC (the supervisor starts it again)
        if mlen < 0:
            self._finish("OK")
        else:
            if self.cur is not None and self.cur.kind == ESCAPE:
                self._finish("NO CARRIER")
            if self.on_closed:
                self.on_closed()
        if rest:
            self.feed(rest)

    def _feed_lines(self, data, i):
        buf = self._line
        cap = len(buf)
        while i < len(data):
            b = data[i]
            i += 1
            if b == 0x0A or b == 0x0D:
                if self._skip:
                    self._skip = False
                elif self._n:
                    n = self._n
                    self._n = 0
                    if self._line_done(n):
                        self._eat_lf = b == 0x0D
                        return i  # data mode begins with the next byte
                continue
            if self._skip:
                continue
            if self._n >= cap:
                self._skip = True
                self._n = 0
                self.stats["overlong"] += 1
                continue
            buf[self._n] = b
            self._n += 1
            if self._n == 2 and buf[0] == _PROMPT and b == 0x20:
                self._prompt()
            elif self._n == 1 and b == _PROMPT and self.cur is not None and self.cur.exact:
                self._prompt()  # AT+CCERTDOWN prompts with a bare ">" and waits for <len> bytes
        return i

    def _prompt(self):
        cmd = self.cur
        if cmd is not None and cmd.payload is not None and cmd._phase == 0:
            self._n = 0
            cmd._phase = 1
            self.stream.write(cmd.payload if cmd.exact else cmd.payload + b"\x1a")
            self._last_tx = self.clock.ticks_ms()
            cmd._deadline = self.clock.ticks_add(self._last_tx, cmd.timeout_ms)

    def _line_done(self, n):
        buf = self._line
        for k in range(n):
            if buf[k] < 0x20 or buf[k] > 0x7E:
                self.stats["garbage"] += 1
                return False
        line = bytes(buf[:n]).decode().strip()
        if not line:
            return False
        self.stats["lines"] += 1
        cmd = self.cur
        if cmd is not None and cmd.kind != ESCAPE:
            if line == cmd.text:
                return False  # echo (before ATE0 took effect)
            if self._response(cmd, line):
                return self.data_mode
        if self._is_urc(line):
            self.stats["urc"] += 1
            if self.on_urc:
                self.on_urc(line)
            return False
        if cmd is None:
            self.stats["garbage"] += 1  # a line nobody asked for and no URC we know
        return False

    def _is_urc(self, line):
        for p in URC_PREFIXES:
            if line.startswith(p):
                return True
        return False

    def _response(self, cmd, line):
        """Apply a line to the running command; True if it belonged to it."""
        if cmd.kind == LINE and line not in _FINAL_ERR and not line.startswith("+CME ERROR") \
                and not self._is_urc(line):
            cmd.lines.append(line)
            self._finish("OK")
            return True
        if cmd.kind == CONNECT and line.startswith("CONNECT") and line != "CONNECT FAIL":
            self.data_mode = True
            self._finish("CONNECT")
            return True
        if line in _FINAL_OK:
            if cmd.kind == CONNECT:
                return True  # SIM800 says OK before CONNECT
            if not cmd._seen_until:
                cmd.ok = True  # wait for the completion line too
                return True
            self._finish("OK")
            return True
        if line in _FINAL_ERR or line.startswith("ALREADY CONNECT"):
            self._finish(line)
            return True
        if line.startswith("+CME ERROR:") or line.startswith("+CMS ERROR:"):
            try:
                code = int(line[11:].strip())
            except ValueError:
                code = -1
            self._finish("ERROR", code)
            return True
        if cmd.until is not None and line.startswith(cmd.until):
            cmd.lines.append(line)
            cmd._seen_until = True
            if cmd.ok:
                self._finish("OK")
            return True
        # A response line: ours when it carries our command's name (or has no +NAME: at all);
        # otherwise it is a URC arriving in the middle of our command.
        name = _cmd_name(cmd.text)
        if line[0] == "+" or line[0] == "*":
            if not name or not line.startswith(name):
                return False
        elif self._is_urc(line):
            return False
        if len(cmd.lines) < _MAX_LINES:
            cmd.lines.append(line)
        else:
            self.stats["dropped"] += 1
        return True


def _cmd_name(text):
    """"+CREG:" for "AT+CREG?", "+CMGL:" for "AT+CMGL=4"; None for plain commands like "ATE0"."""
    if not text.startswith("AT+") and not text.startswith("AT*"):
        return None
    end = 3
    while end < len(text) and text[end] not in "=?":
        end += 1
    return text[2:end] + ":"
