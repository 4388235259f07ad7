"""The display and keypad in the running meter: builds them on the board's LCD and keypad, feeds the
display a snapshot of the meter's state, and connects the keys to tokens, emergency credit and
reconnection. Kept apart from app/composition.py so the composition stays short."""
from ui.display import Display
from ui.keypad import Keypad
from credit import civil
from relay import supply as sup

KEYPAD = "keypad"        # what the meter's actions and events call this channel


class UI:
    def __init__(self, board, clock, settings, prepaid, meter, actions, link_state=None, version=None):
        """`actions`: what the keys do; `prepaid`, `meter`, `link_state()` (the cellular link's state,
        or None without one) and `settings` (language, meter id): what the screens show."""
        self.clock = clock
        self.settings = settings
        self.prepaid = prepaid
        self.meter = meter
        self.actions = actions
        self.link_state = link_state
        self.version = version
        self.display = Display(board.display, clock, {"rotate_s": settings["display_period_s"]})
        self.keypad = Keypad(board.keypad, clock, self.display, self.on_token, self.on_emergency,
                             self.on_reconnect)
        self._day = None
        self._day_start_wh = meter.import_wh

    # -- keys: adapters onto the meter's actions (app/actionpath.py) -------------------------------
    def on_token(self, digits):
        out = self.actions.run("token", digits, KEYPAD)
        self.refresh()
        if out.get("locked_s"):
            return out["result"], out["locked_s"]
        return out["result"], out.get("credit_added")

    def on_emergency(self):
        out = self.actions.run("emergency", KEYPAD)
        self.refresh()
        return ("granted", out["emergency_owed"]) if out["granted"] else (out["reason"] or "refused", None)

    def on_reconnect(self):
        out = self.actions.run("reconnect", KEYPAD)
        self.refresh()
        return ("reconnected" if out["reconnected"] else "reconnect_refused"), None

    # -- screens ---------------------------------------------------------------------------------
    def snapshot(self):
        p = self.prepaid
        m = self.meter
        clock = self.clock
        led = p.ledger
        warnings = []
        days = p.policy.days_left(led.credit)
        if p.policy.low_credit and led.credit < p.policy.low_credit:
            warnings.append("low_credit")
        if days is not None and p.policy.low_days and days < p.policy.low_days:
            warnings.append(["days_left", days])
        if p.policy.friendly(clock.time(), clock.time_valid):
            warnings.append("friendly")
        if p.tamper.flags:
            warnings.append("tamper")
        day = civil.day_number(clock.time())
        if day != self._day:      # a new day (or the first look): today's use starts from here
            self._day = day
            self._day_start_wh = m.import_wh
        link = "-"
        if self.link_state is not None:
            link = self.link_state() or "-"
        return {"credit": led.credit, "mode": p.schedule.mode, "currency": "MRU",
                "minor_per_major": p.schedule.minor_per_major, "debt": led.debt,
                "emergency": led.emergency_state(), "emergency_owed": led.em_owed,
                "emergency_amount": led.em_amount, "today_wh": m.import_wh - self._day_start_wh, "month_wh": led.mtd_wh,
                "p_w": m.chip.p_w, "supply": p.supply_state(),
                "reasons": sup.names(p.supply.reasons()).split("|") if p.supply.reasons() else [],
                "awaiting_key": p.supply.awaiting_key, "warnings": warnings, "link": link,
                "time": clock.time(), "time_valid": clock.time_valid,
                "language": self.settings["language"], "meter_id": self.settings["meter_id"],
                "version": self.version}

    def refresh(self):
        self.display.update(self.snapshot())

    def tick(self):
        self.keypad.tick()
        self.refresh()
        self.display.tick()

    def poll(self):
        self.keypad.poll()
