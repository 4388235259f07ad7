"""The link supervisor's ladder (comms/supervisor.py): the states that take the modem from power-up
to an MQTT session (off, cycle, boot, sync, init, sim, reg, info, net, mqtt), one function each on the
Supervisor `sv`. Loaded while the link climbs and dropped once the session is up: a meter online
keeps only the states of a running session (up, escape, command mode, resume, close, back-off)."""
from micropython import const
from comms.at import Cmd
from comms import dialect as dl
from comms import mqtt as mq

_SYNC_TRIES = const(10)
_REG_POLL_MS = const(1000)


def s_off(sv):
    sv.stream.set_power(True)
    sv._go("boot", sv.dialect.boot_ms)


def s_cycle(sv):
    if sv._waited():
        sv.stream.set_power(True)
        sv._go("boot", sv.dialect.boot_ms)


def s_boot(sv):
    if sv._waited():
        sv.at.flush()  # boot chatter (RDY, +CPIN) is not an answer to anything
        sv._go("sync")


def s_sync(sv):
    c = sv._cmd
    if c is None:
        sv._cmd = sv.at.send(Cmd("AT", 1000))
        return
    if not c.done():
        return
    if c.ok:
        sv.at.silent = 0
        sv._go("init")
        sv._run(sv.dialect.init())
        return
    sv._tries += 1
    if sv._tries >= _SYNC_TRIES:
        sv._power_cycle("no answer to AT")
    else:
        sv._cmd = sv.at.send(Cmd("AT", 1000))
        sv.at.silent = 0  # sync has its own limit


def s_init(sv):
    r = sv._step()
    if r:
        sv._go("sim")
        sv._cmd = sv.at.send(sv.dialect.sim())
    elif r is False:
        sv._power_cycle(sv.last_error)


def s_sim(sv):
    c = sv._cmd
    if c is None or not c.done():
        if c is None and sv._waited():
            sv._cmd = sv.at.send(sv.dialect.sim())
        return
    sv._cmd = None
    if dl.sim_ready(c):
        sv._go("reg")
    else:
        sv.last_error = "sim not ready: %s" % (c.find("+CPIN:") or c.result)
        sv._deadline = sv.clock.ticks_add(sv.clock.ticks_ms(), 5000)


def s_reg(sv):
    if sv._sms_work():
        return
    r = sv._step()
    if r is None:
        return
    c = sv.clock
    if sv._polling:
        sv._polling = False
        sv.registered = False
        for cmd in sv._reg_cmds:
            if cmd.ok and "REG" in cmd.text and dl.parse_reg(cmd) in (dl.REG_HOME, dl.REG_ROAMING):
                sv.registered = True
            elif cmd.text == "AT+CSQ":
                sv.rssi = dl.parse_csq(cmd)
        if sv.registered:
            sv._go("info")
            sv._info = [sv.dialect.cops()]
            if sv._want_time:
                sv._info.append(sv.dialect.cclk())
            for cmd in sv._info:
                cmd.optional = True
            sv._run(sv._info)
            return
    if c.ticks_diff(c.ticks_ms(), sv._reg_since) >= sv.reg_timeout_ms:
        sv._fail("not registered")
        return
    if sv._waited():
        sv._deadline = c.ticks_add(c.ticks_ms(), _REG_POLL_MS)
        # Any of CS, PS or EPS registration will do; an unsupported query is not a failure.
        sv._reg_cmds = [Cmd(q, 5000, optional=True) for q in sv.dialect.reg_queries]
        sv._reg_cmds.append(sv.dialect.csq())
        sv._reg_cmds[-1].optional = True
        sv._run(sv._reg_cmds)
        sv._polling = True


def s_info(sv):
    if sv._step() is None:
        return
    # Operator and time are informative: their failure does not stop the ladder.
    for c in sv._info:
        if c.text == "AT+COPS?":
            sv.operator = dl.parse_cops(c)
        elif c.text == "AT+CCLK?" and c.ok:
            t = dl.parse_cclk(c.find("+CCLK:") or "")
            if t is not None:
                sv._want_time = False
                _network_time(sv, t)
    sv._go("net")
    sv._link_lost = False
    sv._run(sv.dialect.open_data(sv.apn, sv.host, sv.port))


def _network_time(sv, t):
    """The network's time (NITZ, through the modem's clock) is a weak source: anyone with a fake
    base station sets it. It may set a clock that is not known yet, or correct a known one by up
    to `time_max_drift_s`; a bigger jump is only an event (the head-end's signed set_time can
    make it). The clock decides tariffs, statements and lockouts: it must not be moved at will."""
    clock = sv.clock
    if not clock.time_valid:
        clock.set_time(t)
        sv.emit("time_set", {"unix": t, "source": "network"})
        return
    drift = t - clock.time()
    if -sv.max_drift_s <= drift <= sv.max_drift_s:
        if drift:
            clock.set_time(t)
            sv.emit("time_set", {"unix": t, "source": "network", "drift": drift})
        return
    sv.emit("time_rejected", {"unix": t, "source": "network", "drift": drift})


def s_net(sv):
    r = sv._step()
    if r is None:
        return
    if r and sv.at.data_mode:
        sv._go("mqtt")
        sv.mqtt.start()
        return
    sv._close_then_fail(sv.last_error or "data connection")


def s_mqtt(sv):
    if sv._link_lost or not sv.at.data_mode:
        sv._close_then_fail("link closed before connack")
    elif sv.mqtt.state == mq.UP:
        sv.attempts = 0
        sv.last_error = None
        sv._enter_up()
        sv._sms_due = sv.clock.ticks_add(sv.clock.ticks_ms(), sv.sms_check_ms)
        sv.emit("link_up", {"rssi": sv.rssi})
        if sv.on_up:
            sv.on_up()
    elif sv.mqtt.state == mq.DOWN:
        sv._close_then_fail("mqtt: " + str(sv.mqtt.error))
