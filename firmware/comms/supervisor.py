"""The link supervisor: takes the modem from power-up to an MQTT session and keeps it there.

power -> boot -> AT sync -> init -> SIM ready -> registered -> (signal, operator, network time)
-> data connection (transparent TCP) -> MQTT session -> up. Every failure ends in a back-off that
doubles with each attempt (capped, with random jitter so a fleet does not reconnect in step), then the
ladder is climbed again from registration. A modem that stops answering (`hang_limit` consecutive
timeouts) is power-cycled through the board's modem pins.

SMS policy: in transparent mode the modem shows no URCs, so while the session is up the supervisor
escapes (`+++`) every `sms_check_s` seconds, and sooner when texts wait in the outbox, but only when
no QoS 1 publish is in flight; in command mode it lists stored messages (AT+CMGL=4), handles and
deletes them, sends the outbox, refreshes the signal, then returns to data mode with ATO. Outside
a session, +CMTI URCs are read as they come. Every wait is a deadline: `poll()` never blocks."""
from micropython import const
from comms.at import ATEngine, Cmd, ESCAPE
from comms import dialect as dl
from comms import mqtt as mq
from util import load, unload

_SMS_BACKLOG = const(16)
_MIN_UP_MS = const(30000)  # at least this long in data mode before an escape for the outbox
_CMDMODE_MS = const(60000)  # longest stay in command mode per escape: the broker expects pings
_DEFER_MS = const(300000)  # longest an escape waits for the uplink queue to empty
_GUARD_WAIT_MS = const(3000)  # an escape whose silence before "+++" has not come by then is given up
_RDY_SETTLE_MS = const(300)   # after a booting modem's RDY, before the first AT (its boot chatter)


class Supervisor:
    def __init__(self, stream, clock, dialect, cfg, mqtt, rng, emit=None, sms=None, on_up=None,
                 on_down=None):
        self.stream = stream
        self.clock = clock
        self.dialect = dialect
        self.mqtt = mqtt
        self.rng = rng
        self.emit = emit or (lambda kind, data: None)
        self.sms = sms
        self.on_up = on_up
        self.on_down = on_down
        self.busy = None  # () -> True while uplinks wait to be sent or acknowledged (comms/link.py)
        self.apn = cfg.get("apn", "internet")
        self.host = cfg.get("host", "127.0.0.1")
        self.port = cfg.get("port", 1883)
        self.sms_check_ms = cfg.get("sms_check_s", 30) * 1000
        self.backoff_min_ms = cfg.get("backoff_min_s", 5) * 1000
        self.backoff_max_ms = cfg.get("backoff_max_s", 900) * 1000
        self.reg_timeout_ms = cfg.get("reg_timeout_s", 180) * 1000
        self.hang_limit = cfg.get("hang_limit", 3)
        self.max_drift_s = cfg.get("time_max_drift_s", 600)   # network time may correct this much
        self.at = ATEngine(stream, clock, self._urc)
        self.at.sink = mqtt.feed
        self.at.on_closed = self._closed
        mqtt.write = self.at.write_data
        self.state = "off"
        self.rssi = None
        self.operator = None
        self.registered = False
        self.last_error = None
        self.attempts = 0
        self.cycles = 0
        self._seq = []  # commands still to run in this step
        self._cmd = None
        self._deadline = clock.ticks_ms()
        self._after = "reg"
        self._tries = 0
        self._link_lost = False
        self._want_time = True
        self._sms_due = clock.ticks_add(clock.ticks_ms(), self.sms_check_ms)
        self._sms_idx = []  # stored message indexes waiting to be read
        self._sms_job = None  # (what, Cmd, extra)
        self._reg_since = self._deadline
        self._polling = False
        self._reg_cmds = []
        self._info = []
        self._listing = False
        self._csq = None
        self._up_since = self._deadline

    # -- status ------------------------------------------------------------------------------
    def status(self):
        return {"state": self.state, "rssi": self.rssi, "registered": self.registered,
                "connected": self.state == "up", "last_error": self.last_error,
                "attempts": self.attempts, "operator": self.operator, "cycles": self.cycles}

    # -- helpers -----------------------------------------------------------------------------
    def _go(self, state, wait_ms=0):
        self.state = state
        now = self.clock.ticks_ms()
        self._deadline = self.clock.ticks_add(now, wait_ms)
        self._seq = []
        self._cmd = None
        self._tries = 0
        self._reg_since = now
        self._polling = False

    def _waited(self):
        return self.clock.ticks_diff(self.clock.ticks_ms(), self._deadline) >= 0

    def _run(self, cmds):
        self._seq = list(cmds)
        self._cmd = None

    def _step(self):
        """Advance the running command sequence: None while busy, True when all succeeded,
        False on the first failure (last_error says which)."""
        c = self._cmd
        if c is not None:
            if not c.done():
                return None
            ok = self.dialect.net_ok(c)
            if not ok and not c.optional:
                self.last_error = "%s: %s%s" % (c.text, c.result, "" if c.code is None else " %d" % c.code)
                self._cmd = None
                self._seq = []
                return False
            self._cmd = None
        if not self._seq:
            return True
        self._cmd = self.at.send(self._seq.pop(0))
        return None

    def _fail(self, why=None, after="reg"):
        """Back off before climbing the ladder again (from registration unless told otherwise)."""
        if why:
            self.last_error = why
        self.attempts += 1
        if self.attempts == 1:
            # The first retry after a working session: soon, spread over backoff_min so a fleet that
            # lost its broker at one instant does not come back at one instant.
            delay = 500 + self.rng.getrandbits(24) % (self.backoff_min_ms + 1)
        else:
            delay = self.backoff_min_ms
            for _ in range(min(self.attempts - 2, 16)):
                delay *= 2
                if delay >= self.backoff_max_ms:
                    delay = self.backoff_max_ms
                    break
            delay += self.rng.getrandbits(24) % (delay // 2 + 1)
        self.emit("link_failed", {"why": self.last_error, "attempts": self.attempts, "wait_ms": delay})
        self._drop_session()
        self._after = after
        self._go("backoff", delay)

    def _drop_session(self):
        if self.mqtt.state != mq.DOWN:
            self.mqtt.close("link down")
        if self.on_down:
            self.on_down()

    def _power_cycle(self, why):
        self.cycles += 1
        self.last_error = why
        self.emit("modem_reset", {"why": why, "cycles": self.cycles})
        self._drop_session()
        self.at.flush()
        self.at.silent = 0
        self.stream.set_power(False)
        self.registered = False
        self._go("cycle", self.dialect.off_ms)

    # -- URCs --------------------------------------------------------------------------------
    def _urc(self, line):
        if line.startswith("+CMTI:"):
            try:
                idx = int(line.split(",")[-1])
            except ValueError:
                return
            if idx not in self._sms_idx and len(self._sms_idx) < _SMS_BACKLOG:
                self._sms_idx.append(idx)
        elif line.startswith("+CREG:") or line.startswith("+CGREG:") or line.startswith("+CEREG:"):
            stat = dl.urc_reg(line)
            if stat is not None:
                self.registered = stat in (dl.REG_HOME, dl.REG_ROAMING)
        elif line.startswith("CLOSED") or line.startswith("+CIPEVENT:") or line.startswith("+IPCLOSE:"):
            self._link_lost = True
        elif line.startswith("*PSUTTZ") or line.startswith("+CTZV") or line.startswith("DST:"):
            self._want_time = True
        elif line == "RDY" and self.state == "boot":
            # The modem says it is ready before the dialect's boot time is up (a modem on a fixed
            # baud rate does; one that autobauds says nothing and the full boot time is waited).
            self._go("boot", _RDY_SETTLE_MS)
        elif line == "RDY" and self.state not in ("off", "boot", "sync", "init", "cycle"):
            # The modem restarted by itself (brown-out, its own watchdog): its settings are gone, and
            # so is the command it was answering: abandon it rather than wait out its timeout.
            self.at.flush()
            self.cycles += 1
            self.emit("modem_reset", {"why": "modem restarted", "cycles": self.cycles})
            self._drop_session()
            self.registered = False
            self._go("sync")
        elif line.startswith("+CPIN:") and "READY" not in line:
            self.last_error = line
            if self.state not in ("off", "boot", "sync", "init", "cycle"):
                self._fail("sim: " + line, "sim")

    def _closed(self):
        self._link_lost = True

    # -- the state machine -------------------------------------------------------------------
    def poll(self):
        """One step: read the modem, advance the state machine. Returns the bytes consumed."""
        n = self.at.poll()
        if self.state not in ("off", "cycle", "boot") and self.at.silent >= self.hang_limit:
            self._power_cycle("modem not answering")
            return n
        st = getattr(self, "_s_" + self.state, None)
        if st is not None:
            st()
        else:       # climbing the ladder (comms/ladder.py), loaded until the session is up
            load("comms.ladder", "s_" + self.state)(self)
        self.at.start_next()  # a command queued just now goes out now, not at the next poll
        if self.state == "up" or self.state == "mqtt":
            # Only in data mode: a PINGREQ written while escaped would be lost and then missed.
            self.mqtt.poll()
        return n

    def quiet_ms(self):
        """Milliseconds of nothing to do (see app/sched.py): only on an idle session in data mode,
        until its next timer or the next modem check; 0 otherwise (climbing, escaping, commands
        outstanding, texts or uplinks waiting)."""
        if (self.state != "up" or self._link_lost or self.at.busy() or (self.sms is not None and self.sms.outbox)
                or (self.busy is not None and self.busy())):
            return 0
        d = self.clock.ticks_diff(self._sms_due, self.clock.ticks_ms())
        q = self.mqtt.quiet_ms()
        if d < q:
            q = d
        return q if q > 0 else 0

    def _enter_up(self):
        unload("comms.ladder")
        self._go("up")
        self._up_since = self.clock.ticks_ms()

    def _s_up(self):
        if self._link_lost or not self.at.data_mode:
            self.emit("link_down", {"why": "closed"})
            self._close_then_fail("link closed")
            return
        if self.mqtt.state == mq.DOWN:
            self.emit("link_down", {"why": self.mqtt.error})
            self._close_then_fail("mqtt: " + str(self.mqtt.error))
            return
        now = self.clock.ticks_ms()
        due = self.clock.ticks_diff(now, self._sms_due) >= 0
        if self.sms and self.sms.outbox and self.clock.ticks_diff(now, self._up_since) >= _MIN_UP_MS:
            due = True  # texts waiting: escape soon, but let the session breathe between escapes
        if due and self.busy is not None and self.busy() and self.clock.ticks_diff(now, self._sms_due) < _DEFER_MS:
            # Uplinks are waiting (results of top-ups among them): an escape stops publishing for
            # seconds while they pile up, and a full queue drops entries. Texts and the modem check wait
            # (the session proves the modem meanwhile: a PUBACK owed on a quiet link is probed).
            due = False
        if due and self.mqtt.idle():
            self._sms_due = self.clock.ticks_add(now, self.sms_check_ms)
            self._go("escape")
            self._cmd = self.at.send(Cmd("+++", 2000, ESCAPE))

    def _s_escape(self):
        c = self._cmd
        if not c.done():
            if (self.clock.ticks_diff(self.clock.ticks_ms(), self._reg_since) >= _GUARD_WAIT_MS
                    and self.at.withdraw(c)):
                # Traffic keeps the meter talking (it acknowledges every incoming message), so the
                # second of silence "+++" needs has not come, and nothing is published meanwhile: stay
                # in data mode, and try again at the next check.
                self._go("up")
            return
        if not c.ok:
            self._close_then_fail("escape failed: " + str(c.result))
            return
        self._go("cmdmode", _CMDMODE_MS)
        self._cmd = self.at.send(self.dialect.sms_list())
        self._listing = True

    def _s_cmdmode(self):
        if self._listing:
            c = self._cmd
            if not c.done():
                return
            self._listing = False
            self._cmd = None
            if c.ok:
                for ln in c.lines:
                    if ln.startswith("+CMGL:"):
                        try:
                            idx = int(ln[6:].split(",")[0])
                        except ValueError:
                            continue
                        if idx not in self._sms_idx and len(self._sms_idx) < _SMS_BACKLOG:
                            self._sms_idx.append(idx)
            self._csq = self.at.send(self.dialect.csq())
            return
        # Past the deadline the job in hand finishes; the rest waits for the next escape.
        if self._sms_work(not self._waited()):
            return
        if self._csq is not None:
            if not self._csq.done():
                return
            rssi = dl.parse_csq(self._csq)
            if rssi is not None:
                self.rssi = rssi
            self._csq = None
        if self._link_lost:
            self._close_then_fail("link closed")
            return
        self._go("resume")
        self._cmd = self.at.send(self.dialect.resume())

    def _s_resume(self):
        c = self._cmd
        if not c.done():
            return
        if c.ok and self.at.data_mode:
            self._enter_up()
        else:
            self._close_then_fail("resume failed: " + str(c.result))

    def _close_then_fail(self, why):
        self.last_error = why
        self._drop_session()
        cmds = []
        if self.at.data_mode:
            cmds.append(Cmd("+++", 1000, ESCAPE, optional=True))  # OK comes as the guard time ends
        for c in self.dialect.close_data():
            c.optional = True
            cmds.append(c)
        self._go("close")
        self._run(cmds)

    def _s_close(self):
        c = self._cmd
        if c is not None and c.kind == ESCAPE and c.done() and self.at.data_mode:
            # "+++" went unanswered: the close commands would wait behind data mode for ever
            self._power_cycle("cannot leave data mode")
            return
        r = self._step()
        if r is None:
            return
        if self.at.data_mode:
            self._power_cycle("cannot leave data mode")
            return
        self._fail(self.last_error)

    def _s_backoff(self):
        if self._sms_work():
            return
        if self._waited():
            self._go(self._after)

    # -- SMS work in command mode ------------------------------------------------------------
    def _sms_work(self, start=True):
        """Read, handle and delete stored messages, then send the outbox, one command at a time.
        True while a command of this work is outstanding; `start` False only finishes the job in
        hand (a read is still followed by its delete)."""
        if self.sms is None or self.at.data_mode:
            return False
        job = self._sms_job
        if job is not None:
            what, cmd, extra = job
            if not cmd.done():
                return True
            self._sms_job = None
            if cmd.result == "FLUSHED":
                # abandoned by a modem restart or power cycle, not answered: nothing was read, sent
                # or deleted, so the work is done again (a read is never followed by a blind delete)
                if what == "read" and extra not in self._sms_idx:
                    self._sms_idx.insert(0, extra)
                return False
            if what == "read":
                if cmd.ok:
                    for ln in cmd.lines:
                        if ln and not ln.startswith("+"):
                            self.sms.incoming(ln)
                            break
                self._sms_job = ("delete", self.at.send(self.dialect.sms_delete(extra)), extra)
                return True
            if what == "send":
                if cmd.ok:
                    self.sms.outbox.pop(0)
                else:
                    self.last_error = "sms send: %s" % cmd.result
                    self.sms.outbox.pop(0)  # a refused part is not retried forever
                    self.emit("sms_failed", {"result": cmd.result, "code": cmd.code})
        if not start or self.at.busy():
            return False
        if self._sms_idx:
            idx = self._sms_idx.pop(0)
            self._sms_job = ("read", self.at.send(self.dialect.sms_read(idx)), idx)
            return True
        if self.sms.outbox and self.registered:
            n, hx = self.sms.outbox[0]
            self._sms_job = ("send", self.at.send(self.dialect.sms_send(n, hx)), None)
            return True
        return False
