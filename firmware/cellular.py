"""The meter's cellular side in the running app: builds the link (modem, MQTT, protocol, uplink, SMS)
once the meter is provisioned with a meter id, a message key and a broker, and connects it to the
prepaid core: tokens and commands from the head-end or by SMS, readings, events, receipts, warnings.

The monthly statement (closed by the prepaid core at the month's turn) goes to the head-end at once
and to the customer by SMS from `statement_hour` on (nobody is texted at midnight). What was handed
over is kept in the `stmt_out` record; the SMS is marked sent only once the outbox has drained, so a
power cut in between sends it again rather than never.

A meter that is not provisioned (or whose board has no modem) runs without it: metering and credit
never depend on the network."""
from relay import supply as sup

# Events the head-end hears about (the rest stay in the meter's own log).
UPLINK_EVENTS = ("meter_silent", "meter_garbage", "meter_reset", "meter_cal_error", "meter_recovered",
                 "ledger_lost", "power_fail", "supply_open", "supply_close", "over_power", "relay_failed",
                 "relay_welded", "low_credit", "emergency_taken", "tamper", "auth_failed", "calibration_changed",
                 "record_reset", "crashed", "safe_mode", "job_escalated", "time_rejected", "factory_lock_missing",
                 "ota_offered", "ota_refused", "ota_ready", "ota_failed", "ota_switch", "ota_trial", "ota_valid",
                 "ota_unhealthy", "ota_rolled_back")


_STMT = "stmt_out"


def start(app):
    """The link for this meter, or None (not provisioned, or no modem)."""
    board = app.board
    if getattr(board, "modem", None) is None or app.store is None:
        return None
    try:
        from provision.identity import load_identity, load_keys
        ident = load_identity(app.store)
        keys = load_keys(app.store)
    except Exception as e:
        app.events.emit("config_invalid", {"key": "identity", "error": type(e).__name__})
        return None
    if not ident or not keys or not ident.get("broker"):
        return None
    return Cellular(app, ident, keys)


class _Records:
    """The store as comms expects it: load() returns None for a record never written. A corrupt one
    (no slot passes its CRC, or not the object comms wrote) is a reported fault and a fresh start of
    that record, never a crash: comms state is rebuilt from the network (the head-end resends what
    was not answered; a fresh uplink sequence is reported so the head-end can follow it). Credit
    never depends on these records."""

    def __init__(self, store, emit=None):
        self.store = store
        self.emit = emit
        self.reset = []           # names started afresh

    def load(self, name):
        try:
            v = self.store.load(name)
        except Exception as e:
            kind = type(e).__name__
            if kind == "StoreMissing":
                return None
            if kind != "StoreCorrupt":
                raise             # a read that failed (memory, I/O): not a reason to forget state
            v = None
        if isinstance(v, dict):
            return v
        self.reset.append(name)
        if self.emit is not None:
            self.emit("record_reset", {"record": name})
        return None

    def commit(self, name, obj):
        return self.store.commit(name, obj)


_SEQ_EPOCH = 1577836800      # 2020-01-01: uplink sequence floor after a lost protocol record


def _seq_floor(protocol, clock):
    """A protocol record started afresh would number uplinks from 0 again, and the head-end rejects
    every uplink s not above the last it accepted: the meter could not even report the fault. With a
    known time, numbering restarts from the seconds since 2020, above any number used before (a
    meter sends far less than one uplink a second on average) and a small int until 2054. Without
    one it restarts from 0, and the head-end sees the record_reset event only once s passes."""
    if clock.time_valid:
        floor = clock.time() - _SEQ_EPOCH
        if floor > protocol._tx_limit:
            protocol._tx = protocol._tx_limit = floor


class Cellular:
    def __init__(self, app, ident, keys):
        from comms.link import MeterLink
        self.app = app
        b = ident["broker"]
        s = app.settings
        cfg = {"meter_id": ident["meter_id"], "key": keys["message_key"],
               "password": keys.get("broker_password", ""),
               "dialect": app.board.info.get("modem", {}).get("dialect", "sim7600"),
               "apn": b.get("apn", "internet"), "host": b["host"], "port": b.get("port", 1883),
               "reading_period_s": s.get("reading_period_s", 900),
               "customer": ident.get("customer"), "registered": ident.get("utility_numbers", ()),
               "lang": s.get("language", "fr"),
               "sms_tokens_registered_only": bool(s.get("sms_tokens_registered_only", 0)),
               "minor_per_unit": app.prepaid.schedule.minor_per_major}
        records = _Records(app.store, app.events.emit)
        self.link = MeterLink(app.board.modem, app.clock, cfg, records, app.board.random,
                              app.events.emit, self.on_token, self.on_command, self.on_balance,
                              self.reading)
        if "proto" in records.reset:
            _seq_floor(self.link.protocol, app.clock)
        for name in records.reset:        # the head-end hears of it too (it was emitted before the link)
            self.link.event("record_reset", {"record": name})
        app.events.listeners.append(self.on_event)
        self.statement_hour = s.get("statement_hour", 9)
        self._load_stmt()

    # -- from the network ------------------------------------------------------------------------
    def on_token(self, digits, source):
        from credit.commands import handle
        from service.port import unload
        try:
            out = handle(self.app, "token", {"digits": digits, "source": (source,)})
        finally:
            unload("credit.commands")
        code = out["result"]
        if code == "accepted" and out.get("credit_added") and self.link.sms is not None:
            self.link.sms.notify("topup", amount=out["credit_added"], credit=out["credit"])
        return code, {"credit": out.get("credit"), "added": out.get("credit_added", 0)}

    def on_command(self, name, args):
        app = self.app
        p = app.prepaid
        if name in ("relay_open", "relay_close"):
            if name == "relay_open":
                p.supply.set_reason(sup.REMOTE)
            else:
                p.supply.clear_reason(sup.REMOTE)
            p.supply.poll(app.clock.ticks_ms())
            p.commit()
            return "done", {"supply": "closed" if p.supply.closed else "open"}
        if name == "set_time":
            t = args.get("unix") if isinstance(args, dict) else None
            if not isinstance(t, int) or t < 1577836800:
                return "bad_args", {"why": "unix seconds expected"}
            app.clock.set_time(t)
            return "done", {}
        if name == "get_readings":
            return "done", self.reading()
        if name == "clear_tamper":
            p.tamper.clear()
            p.commit()
            return "done", {}
        if name == "get_statement":
            return "done", p.statement_view()
        if name == "set_config":
            from service.port import unload
            import configcmd
            try:
                return configcmd.set_config(app, args)
            finally:
                unload("configcmd")
        if name == "fw_offer":
            ota = getattr(app, "ota", None)
            if ota is None:
                return "refused", {"why": "this meter has no OTA slots"}
            return ota.offer(args)
        return "unknown_cmd", {}

    def on_balance(self):
        led = self.app.prepaid.ledger
        days = self.app.prepaid.policy.days_left(led.credit)
        return led.credit, days if days is not None else -1

    def reading(self):
        app = self.app
        p = app.prepaid
        st = self.link.status()
        return {"ts": app.clock.time(), "import_wh": app.meter.import_wh, "export_wh": app.meter.export_wh,
                "credit": p.ledger.credit, "debt": p.ledger.debt, "topups": p.ledger.topups,
                "p_w": app.meter.chip.p_w,
                "urms_cv": app.meter.chip.urms_cv, "supply": "closed" if p.supply.closed else "open",
                "reasons": sup.names(p.supply.reasons()), "tamper": p.tamper.names(), "link": {"rssi": st.get("rssi")},
                "version": getattr(app, "version", None)}

    # -- to the network --------------------------------------------------------------------------
    def on_event(self, kind, data):
        if kind in UPLINK_EVENTS:
            self.link.event(kind, data)
        if kind == "low_credit" and self.link.sms is not None:
            credit, days = self.on_balance()
            self.link.sms.notify("low_credit", credit=credit, days=days)

    def _statement(self):
        st = self.app.prepaid.statement
        if not st:
            return
        mid = st[0]
        if mid <= self.stmt_up and mid <= self.stmt_sms:
            return                              # handed over: the usual case, every poll
        from prepaid import month_name
        name = month_name(mid)                  # "YYYY-MM"
        if mid > self.stmt_up:
            self.link.uplink.send_inner({"t": "statement", "month": name, "import_wh": st[1],
                                         "cost": st[2], "topups": st[3], "credit": st[4]})
            self.stmt_up = mid
            self._save_stmt()
        if mid <= self.stmt_sms:
            return
        sms = self.link.sms
        if self._sms_wait == mid:
            if not sms.outbox:
                self.stmt_sms = mid
                self._sms_wait = 0
                self._save_stmt()
            return
        clock = self.app.clock
        if sms is None or not sms.customer:
            self.stmt_sms = mid
            self._save_stmt()
            return
        if not clock.time_valid:
            return
        from credit.civil import civil
        if civil(clock.time())[3] < self.statement_hour:
            return
        if sms.notify("statement", month=name[5:] + "/" + name[:4], wh=st[1], cost=st[2],
                      topups=st[3], credit=st[4]):
            self._sms_wait = mid

    def _load_stmt(self):
        app = self.app
        st = _Records(app.store, app.events.emit).load(_STMT)
        if st is None:                      # first start of the link: months closed before it are not news
            last = app.prepaid.statement
            st = {"up": last[0] if last else 0, "sms": last[0] if last else 0}
            app.store.commit(_STMT, st)
        self.stmt_up = st.get("up", 0)      # month ids handed over: uplink queued, SMS sent
        self.stmt_sms = st.get("sms", 0)
        self._sms_wait = 0                  # month whose SMS sits in the outbox

    def _save_stmt(self):
        self.app.store.commit(_STMT, {"up": self.stmt_up, "sms": self.stmt_sms})

    def poll(self):
        self._statement()
        self.link.poll()
