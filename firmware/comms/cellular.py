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
from store.records import StoreCorrupt, StoreMissing
from util import Refused

HEADEND = "headend"      # what the meter's actions and events call this channel

# Events the head-end hears about (the rest stay in the meter's own log).
UPLINK_EVENTS = ("meter_silent", "meter_garbage", "meter_reset", "meter_cal_error", "meter_recovered",
                 "ledger_lost", "power_fail", "supply_open", "supply_close", "over_power", "relay_failed",
                 "relay_welded", "low_credit", "emergency_taken", "tamper", "auth_failed", "calibration_changed",
                 "record_reset", "crashed", "safe_mode", "job_escalated", "time_rejected", "factory_lock_missing",
                 "ota_offered", "ota_refused", "ota_ready", "ota_failed", "ota_switch", "ota_trial", "ota_valid",
                 "ota_unhealthy", "ota_rolled_back", "topup", "debt_loaded", "debt_recovered")


_STMT = "stmt_out"


def start(board, store, events, settings, prepaid, meter, actions, version):
    """The link for this meter, or None (not provisioned, or no modem)."""
    if getattr(board, "modem", None) is None or store is None:
        return None
    try:
        from util import once
        _id = once("provision.identity")         # read at boot only: not kept resident
        ident = _id.load_identity(store)
        keys = _id.load_keys(store)
    except Exception as e:
        events.emit("config_invalid", {"key": "identity", "error": type(e).__name__})
        return None
    if not ident or not keys or not ident.get("broker"):
        return None
    try:
        return Cellular(board, store, events, settings, prepaid, meter, actions, version, ident, keys)
    except ValueError as e:      # e.g. a TLS broker for a modem without TLS: offline, and it says why
        events.emit("config_invalid", {"key": "broker", "error": str(e)[:60]})
        return None


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
        except StoreMissing:
            return None
        except StoreCorrupt:
            v = None              # anything else (memory, I/O) is not a reason to forget state
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
        protocol.seq_floor(floor)


class Cellular:
    def __init__(self, board, store, events, settings, prepaid, meter, actions, version, ident, keys):
        """The meter's parts the link serves: `prepaid` and `meter` (readings, balance, statement),
        `actions` (what the head-end and SMS may ask), `events` (what the head-end hears)."""
        from comms.link import MeterLink
        self.clock = clock = board.clock
        self.store = store
        self.emit = events.emit
        self.prepaid = prepaid
        self.meter = meter
        self.actions = actions
        self.version = version
        self.ota = None          # the firmware updater, when the board has OTA slots (set by the app)
        b = ident["broker"]
        s = settings
        cfg = {"meter_id": ident["meter_id"], "key": keys["message_key"],
               "password": keys.get("broker_password", ""),
               "dialect": board.info.get("modem", {}).get("dialect", "sim7600"),
               "apn": b.get("apn", "internet"), "host": b["host"], "port": b.get("port", 1883),
               "ca": b["ca"].encode() if b.get("ca") else None,
               "reading_period_s": s.get("reading_period_s", 900),
               "customer": ident.get("customer"), "registered": ident.get("utility_numbers", ()),
               "lang": s.get("language", "fr"),
               "sms_tokens_registered_only": bool(s.get("sms_tokens_registered_only", 0)),
               "sms_balance_registered_only": bool(s.get("sms_balance_registered_only", 1)),
               "minor_per_unit": prepaid.schedule.minor_per_major}
        records = _Records(store, self.emit)
        self.link = MeterLink(board.modem, clock, cfg, records, board.random,
                              self.emit, self.on_token, self.on_command, self.on_balance,
                              self.reading)
        if "proto" in records.reset:
            _seq_floor(self.link.protocol, clock)
        for name in records.reset:        # the head-end hears of it too (it was emitted before the link)
            self.link.event("record_reset", {"record": name})
        events.listeners.append(self.on_event)
        actions.settings_listeners.append(self.on_settings)
        self.statement_hour = s.get("statement_hour", 9)
        self._load_stmt()

    # -- from the network: adapters onto the meter's actions (app/actionpath.py) --------------------
    def on_token(self, digits, source):
        out = self.actions.run("token", digits, source)
        code = out["result"]
        if code == "accepted" and out.get("credit_added") and self.link.sms is not None:
            self.link.sms.notify("topup", amount=out["credit_added"], credit=out["credit"])
        detail = {"credit": out.get("credit"), "added": out.get("credit_added", 0)}
        if code != "accepted" and out.get("detail"):
            # What was wrong, not a bare code: "mode" is a kWh token on a money meter (or the reverse)
            detail["why"] = out["detail"]
            if out["detail"] == "mode":
                detail["meter_mode"] = self.prepaid.schedule.mode
                detail["token"] = out.get("action")
        return code, detail

    def on_command(self, name, args):
        act = self.actions
        if not isinstance(args, dict):
            args = {}
        try:
            # The protocol's answers stay short (an SMS reply is one text): only what they always said.
            if name in ("relay_open", "relay_close"):
                return "done", {"supply": act.run("relay", name == "relay_open", HEADEND)["supply"]}
            if name == "set_time":
                act.run("set_time", args.get("unix"), HEADEND)
                return "done", {}
            if name == "clear_tamper":
                act.run("clear_tamper", HEADEND)
                return "done", {}
            if name == "set_config":
                return "done", act.run("set_config", args, HEADEND)
            if name == "load_debt":
                return "done", act.run("load_debt", args.get("amount"), args.get("ref"), args.get("share_bp"),
                                       HEADEND)
        except Refused as e:
            return "bad_args", {"why": str(e)}
        if name == "get_readings":
            return "done", self.reading()
        if name == "get_statement":
            return "done", act.run("statement", HEADEND)
        if name == "fw_offer":
            ota = self.ota
            if ota is None:
                return "refused", {"why": "this meter has no OTA slots"}
            return ota.offer(args)
        return "unknown_cmd", {}

    def on_settings(self, s):
        """set_config changed the settings: the statement hour, the SMS language, the reading period."""
        self.statement_hour = s["statement_hour"]
        link = self.link
        if link.sms is not None:
            link.sms.lang = s["language"]
        link.uplink.set_period(s["reading_period_s"])

    def on_balance(self):
        led = self.prepaid.ledger
        days = self.prepaid.policy.days_left(led.credit)
        return led.credit, days if days is not None else -1

    def reading(self):
        p = self.prepaid
        m = self.meter
        st = self.link.status()
        return {"ts": self.clock.time(), "import_wh": m.import_wh, "export_wh": m.export_wh,
                "credit": p.ledger.credit, "debt": p.ledger.debt, "arrears": p.ledger.arrears,
                "topups": p.ledger.topups,
                "mode": p.schedule.mode,
                "p_w": m.reading.p_w,
                "urms_cv": m.reading.urms_cv, "supply": p.supply_state(),
                "reasons": sup.names(p.supply.reasons()), "tamper": p.tamper.names(), "link": {"rssi": st.get("rssi")},
                "version": self.version}

    # -- to the network --------------------------------------------------------------------------
    def on_event(self, kind, data):
        if kind in UPLINK_EVENTS:
            self.link.event(kind, data)
        if kind == "low_credit" and self.link.sms is not None:
            credit, days = self.on_balance()
            self.link.sms.notify("low_credit", credit=credit, days=days)

    def _statement(self):
        st = self.prepaid.statement
        if not st:
            return
        mid = st[0]
        if mid <= self.stmt_up and mid <= self.stmt_sms:
            return                              # handed over: the usual case, every poll
        from prepaid.core import month_name
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
        clock = self.clock
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
        st = _Records(self.store, self.emit).load(_STMT)
        if st is None:                      # first start of the link: months closed before it are not news
            last = self.prepaid.statement
            st = {"up": last[0] if last else 0, "sms": last[0] if last else 0}
            self.store.commit(_STMT, st)
        self.stmt_up = st.get("up", 0)      # month ids handed over: uplink queued, SMS sent
        self.stmt_sms = st.get("sms", 0)
        self._sms_wait = 0                  # month whose SMS sits in the outbox

    def _save_stmt(self):
        self.store.commit(_STMT, {"up": self.stmt_up, "sms": self.stmt_sms})

    def poll(self):
        self._statement()
        self.link.poll()

    def quiet_ms(self):
        """Milliseconds of nothing to do: the link's, or 0 while a statement is still to be handed
        over (its text waits for the statement hour)."""
        st = self.prepaid.statement
        if st and (st[0] > self.stmt_up or st[0] > self.stmt_sms):
            return 0
        return self.link.quiet_ms()
