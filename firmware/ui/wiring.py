"""The display and keypad in the running meter: builds them on the board's LCD and keypad, feeds the
display a snapshot of the meter's state, and connects the keys to tokens, emergency credit and
reconnection. Kept apart from app.py so the composition stays short."""
from ui.display import Display
from ui.keypad import Keypad
from credit import civil
from relay import supply as sup


class UI:
    def __init__(self, app):
        self.app = app
        clock = app.clock
        self.display = Display(app.board.display, clock, {"rotate_s": app.settings["display_period_s"]})
        self.keypad = Keypad(app.board.keypad, clock, self.display, self.on_token, self.on_emergency,
                             self.on_reconnect)
        self._day = None
        self._day_start_wh = app.meter.import_wh

    # -- keys ------------------------------------------------------------------------------------
    def on_token(self, digits):
        from credit.commands import handle
        from service.port import unload
        try:
            out = handle(self.app, "token", {"digits": digits, "source": ("keypad",)})
        finally:
            unload("credit.commands")
        self.refresh()
        if out.get("locked_s"):
            return out["result"], out["locked_s"]
        return out["result"], out.get("credit_added")

    def on_emergency(self):
        ok, why = self.app.prepaid.take_emergency()
        self.refresh()
        return ("granted", self.app.prepaid.ledger.em_owed) if ok else (why or "refused", None)

    def on_reconnect(self):
        p = self.app.prepaid
        done = p.supply.key_reconnect()
        p.supply.poll(self.app.clock.ticks_ms())
        p.commit()
        self.refresh()
        return ("reconnected" if done else "reconnect_refused"), None

    # -- screens ---------------------------------------------------------------------------------
    def snapshot(self):
        app = self.app
        p = app.prepaid
        led = p.ledger
        warnings = []
        days = p.policy.days_left(led.credit)
        if p.policy.low_credit and led.credit < p.policy.low_credit:
            warnings.append("low_credit")
        if days is not None and p.policy.low_days and days < p.policy.low_days:
            warnings.append(["days_left", days])
        if p.policy.friendly(app.clock.time(), app.clock.time_valid):
            warnings.append("friendly")
        if p.tamper.flags:
            warnings.append("tamper")
        day = civil.day_number(app.clock.time())
        if day != self._day:      # a new day (or the first look): today's use starts from here
            self._day = day
            self._day_start_wh = app.meter.import_wh
        link = "-"
        if app.cellular is not None:
            st = app.cellular.link.status()
            link = st.get("state", "-")
        return {"credit": led.credit, "mode": p.schedule.mode, "currency": "MRU",
                "minor_per_major": p.schedule.minor_per_major, "debt": led.debt,
                "emergency": led.emergency_state(), "emergency_owed": led.em_owed,
                "emergency_amount": led.em_amount, "today_wh": app.meter.import_wh - self._day_start_wh, "month_wh": led.mtd_wh,
                "p_w": app.meter.reading.p_w, "supply": "closed" if p.supply.closed else "open",
                "reasons": sup.names(p.supply.reasons()).split("|") if p.supply.reasons() else [],
                "awaiting_key": p.supply.awaiting_key, "warnings": warnings, "link": link,
                "time": app.clock.time(), "time_valid": app.clock.time_valid,
                "language": app.settings["language"], "meter_id": app.settings["meter_id"],
                "version": app.version}

    def refresh(self):
        self.display.update(self.snapshot())

    def tick(self):
        self.keypad.tick()
        self.refresh()
        self.display.tick()

    def poll(self):
        self.keypad.poll()
