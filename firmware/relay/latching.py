"""Latching-relay driver: pulse the set/reset coil, confirm the contact moved, detect a welded contact.

A latching relay holds its position without power, so the driver only pulses a coil (`pulse_ms`,
via clock.sleep_ms, never both coils at once, the coil always released even if the sleep raises)
and then checks, after `settle_ms`:
- with a feedback pin (an auxiliary contact; level `feedback_closed` means closed): the pin must show
  the commanded position, for opening and for closing;
- without one, with a load-current callable (mA): opening is confirmed when current falls below
  `current_ma`; closing is confirmed by current flowing, but no current may simply mean no load, so
  then the close counts as done, unconfirmed (`confirmed` False);
- with neither, every command is unconfirmed.
A command that is not confirmed is pulsed again, `retries` tries in all (bounded: at most
retries * (pulse_ms + settle_ms) of blocking); then "relay_failed" {"want": "open"|"closed",
"tries": n} is emitted and the command returns False.

Welded contact: while commanded open, load current above `current_ma` seen continuously for
`weld_ms` (sampled by `poll(ticks)`) emits "relay_welded" {"ma": current} once per command (a new
command re-arms it). Without a current callable a weld cannot be seen.

Interface:
    r = LatchingRelay(set_pin, reset_pin, clock, emit=None, cfg=None, feedback=None, current=None,
                      state=None)
    r.close() -> bool, r.open() -> bool, r.closed (commanded position), r.failed, r.confirmed,
    r.welded, r.poll(ticks), r.state() -> {"closed": 0|1, "failed": 0|1}
Config keys: pulse_ms (5..1000, default 60), settle_ms (0..1000, 20), retries (1..10, 3),
current_ma (1..100000, 100), weld_ms (100..600000, 5000), feedback_closed (0|1, 1).
"""
from relay import settings_check


def _no_event(kind, data):
    pass


class LatchingRelay:
    def __init__(self, set_pin, reset_pin, clock, emit=None, cfg=None, feedback=None, current=None,
                 state=None):
        (self.pulse_ms, self.settle_ms, self.retries, self.current_ma, self.weld_ms,
         self.fb_closed) = settings_check().latching(cfg or {})
        self.set_pin = set_pin
        self.reset_pin = reset_pin
        self.clock = clock
        self.emit = emit or _no_event
        self.feedback = feedback
        self.current = current
        set_pin.value(0)
        reset_pin.value(0)
        # Until told otherwise assume open: the safe belief for a meter that lost its state.
        self.closed = bool(state and state.get("closed"))
        self.failed = bool(state and state.get("failed"))
        self.confirmed = False
        self.welded = False
        self._weld_since = None

    def state(self):
        return {"closed": int(self.closed), "failed": int(self.failed)}

    def close(self):
        return self._move(True)

    def open(self):
        return self._move(False)

    def _pulse(self, pin):
        pin.value(1)
        try:
            self.clock.sleep_ms(self.pulse_ms)
        finally:
            pin.value(0)
        if self.settle_ms:
            self.clock.sleep_ms(self.settle_ms)

    def _seen(self, want):
        """True if confirmed, False if contradicted, None if it cannot be told."""
        if self.feedback is not None:
            return (self.feedback.value() == self.fb_closed) == want
        if self.current is not None:
            flowing = self.current() >= self.current_ma
            if want:
                return True if flowing else None
            return not flowing
        return None

    def _move(self, want):
        self.closed = want
        self.welded = False
        self._weld_since = None
        pin = self.set_pin if want else self.reset_pin
        tries = 0
        while tries < self.retries:
            tries += 1
            self._pulse(pin)
            seen = self._seen(want)
            if seen is None:
                self.confirmed = False
                self.failed = False
                return True
            if seen:
                self.confirmed = True
                self.failed = False
                return True
        self.confirmed = False
        self.failed = True
        self.emit("relay_failed", {"want": "closed" if want else "open", "tries": tries})
        return False

    def poll(self, ticks):
        """Watch for a welded contact: current while commanded open, for weld_ms."""
        if self.closed or self.current is None or self.welded:
            return
        ma = self.current()
        if ma < self.current_ma:
            self._weld_since = None
            return
        if self._weld_since is None:
            self._weld_since = ticks
        elif self.clock.ticks_diff(ticks, self._weld_since) >= self.weld_ms:
            self.welded = True
            self.emit("relay_welded", {"ma": ma})
