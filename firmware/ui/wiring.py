"""The display and keypad in the running meter: builds them on the board's LCD and keypad, feeds the
display a snapshot of the meter's state, and connects the keys to tokens, emergency credit and
reconnection. Kept apart from app/composition.py so the composition stays short."""
from ui.display import Display
from ui.keypad import Keypad, IDLE
from micropython import const
from credit import civil
from relay import supply as sup

_PLAN_MAX = const(60000)     # plan at most a minute ahead (a bound on the frames and states kept)
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
        self.board = board
        self.sched = None         # the scheduler and its "ui" job (attach): planning moves the job
        self.job = None
        self._plan = None         # (start state, due, ticks, time) while the board plays planned frames

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
    def snapshot(self, now_s=None):
        """The meter's state for the display; `now_s`: the Unix time to show it at (now by default)."""
        p = self.prepaid
        m = self.meter
        clock = self.clock
        led = p.ledger
        if now_s is None:
            now_s = clock.time()
        warnings = []
        days = p.policy.days_left(led.credit)
        if p.policy.low_credit and led.credit < p.policy.low_credit:
            warnings.append("low_credit")
        if days is not None and p.policy.low_days and days < p.policy.low_days:
            warnings.append(["days_left", days])
        if p.policy.friendly(now_s, clock.time_valid):
            warnings.append("friendly")
        if p.tamper.flags:
            warnings.append("tamper")
        day = civil.day_number(now_s)
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
                "p_w": m.reading.p_w, "supply": p.supply_state(),
                "reasons": sup.names(p.supply.reasons()).split("|") if p.supply.reasons() else [],
                "awaiting_key": p.supply.awaiting_key, "warnings": warnings, "link": link,
                "time": now_s, "time_valid": clock.time_valid,
                "language": self.settings["language"], "meter_id": self.settings["meter_id"],
                "version": self.version}

    def attach(self, sched, job):
        """The scheduler and the job that ticks this UI (planning ahead moves the job)."""
        self.sched = sched
        self.job = job

    def refresh(self):
        self.display.update(self.snapshot())

    def tick(self):
        self._plan = None
        play = getattr(self.board.display, "play", None)
        if play is None or self.job is None or self.keypad.state != IDLE:
            self.keypad.tick()
            self.refresh()
            self.display.tick()
            return
        # This tick's frame goes to the board with the plan that follows it (one message, not two).
        rec = _Recorder()
        rec.at = self.clock.ticks_ms()
        lcd = self.display.divert(rec)
        try:
            self.keypad.tick()
            self.refresh()
            self.display.tick()
        finally:
            self.display.divert(lcd)
        self._plan_ahead(rec)

    def poll(self):
        self.interrupt()
        self.keypad.poll()

    # -- quiet minutes played by the board --------------------------------------------------------
    # Between two jobs nothing the display shows changes but the time and the screen rotation, so a
    # board whose LCD can play timed frames by itself (`display.play`) gets the frames of the ticks up
    # to the next job in one go, and the meter sleeps instead of waking every display period to draw
    # them. The frames are exactly the ones the ticks would draw (the same code runs at each future
    # tick, with the time it will then be). Any input ends the plan: the display goes back to the
    # state of the last tick that has passed, and ticks resume on the same grid.
    def _plan_ahead(self, rec, most=_PLAN_MAX):
        """Draw the ticks up to the next job into `rec` (which holds this tick's frame, if it drew
        one) and give them to the board to play."""
        job = self.job
        c = self.clock
        quiet = self.sched.others_due_in(job)
        if quiet is None or quiet > most:
            quiet = most
        start = self.display.state()
        end = self._ticks_ahead(rec, c.ticks_add(job.due, job.period_ms), c.ticks_ms(), quiet)
        if rec.frames:
            self.board.display.play(rec.frames)
        if end is None:
            return
        self._plan = (start, job.due, c.ticks_ms(), self.clock.time())
        job.next = end       # the tick after the plan, on the same grid (the scheduler reads it back)

    def _ticks_ahead(self, rec, t, now, until_ms, stop=None, base_s=None):
        """Run the display's ticks from `t` on the grid while they fall less than `until_ms` after `now`
        (and not after `stop`), drawing into `rec`; returns the first tick not run, None if none ran."""
        c = self.clock
        period = self.job.period_ms
        d = self.display
        lcd = d.divert(rec)
        d.keep_states(True)
        if base_s is None:
            base_s = c.time()
        minute = base_s // 60
        ran = False
        try:
            while c.ticks_diff(t, now) < until_ms and (stop is None or c.ticks_diff(t, stop) <= 0):
                rec.at = t
                at_s = base_s + c.ticks_diff(t, now) // 1000
                if at_s // 60 != minute:         # what changes with the time: the clock, the day, warnings
                    minute = at_s // 60
                    d.update(self.snapshot(at_s))
                d.tick(t)
                ran = True
                t = c.ticks_add(t, period)
        finally:
            d.divert(lcd)
            d.keep_states(False)
        return t if ran else None

    def interrupt(self):
        """Input arrived: stop the board's plan and take the display back to where it now is (the
        ticks that have passed are run again from the plan's start, drawing nowhere)."""
        plan = self._plan
        if plan is None:
            return
        self._plan = None
        start, due, planned_at, planned_s = plan
        c = self.clock
        self.board.display.play(None)
        self.display.restore(start)
        # the ticks are re-run with the time they had when planned (time may have been set since)
        now = c.ticks_ms()
        nxt = self._ticks_ahead(_Recorder(None), c.ticks_add(due, self.job.period_ms), planned_at,
                                _PLAN_MAX, stop=now, base_s=planned_s)
        if nxt is None:
            nxt = c.ticks_add(due, self.job.period_ms)
        self.sched.set_due(self.job, nxt)


class _Recorder:
    """Stands in for the LCD while ticks ahead are planned: keeps (ticks, 80 bytes: four rows of 20
    LCD codes) of each frame (or nothing, given None)."""

    def __init__(self, frames=()):
        self.frames = [] if frames == () else frames
        self.at = 0

    def frame(self, buf):
        if self.frames is not None:
            self.frames.append((self.at, bytes(buf)))
