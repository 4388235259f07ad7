"""Supply state machine: why the supply is open, when it may close, and the maximum-power limit.

Reasons are bit flags held together (several at once); the relay closes only when none holds and,
in key mode, the customer has pressed the reconnect key. `set_reason`/`clear_reason` come from the
other subsystems (credit policy, tamper, head-end, voltage monitor, service port).

Reconnection (`reconnect` config): "auto" closes as soon as the last reason clears; "key" waits,
after a reason in `key_reasons` (default NO_CREDIT and REMOTE) has opened the supply, for
`key_reconnect()` (the customer is present and has switched heavy loads off). `arm_reconnect()`
demands the key for the next close in either mode. OVER_POWER always recloses by itself.

Maximum power (`max_power_w`, 0 = no limit), driven by `power_sample(watts, ticks)`: above the limit
continuously for `over_power_s` (counted from the first sample seen over it) opens with OVER_POWER; it recloses after a back-off of
backoff_s * 2**(trips-1) capped at `backoff_max_s` (30 s, 60 s, 120 s ... by default); each quiet
`decay_s` after a reclose with no new trip forgets one trip. Ticks are the board clock's ticks_ms
(they wrap: every interval goes through ticks_diff, so decay_s stays under a day). After a reboot an
OVER_POWER restored from state recloses one back-off after the first poll.

If the relay does not confirm a move, the command is repeated every `relay_retry_s` from `poll`.

Interface:
    s = Supply(relay, clock, emit=None, cfg=None, state=None)   # relay: close()/open() -> bool, .closed
    s.set_reason(r), s.clear_reason(r), s.reasons() -> mask, names(mask) -> "NO_CREDIT|TAMPER"
    s.power_sample(watts, ticks), s.poll(ticks), s.arm_reconnect(), s.key_reconnect() -> bool
    s.closed (relay commanded closed), s.awaiting_key, s.trips, s.state() -> dict
Events: supply_open {"reasons": names, "mask": m}, supply_close {"after": names of what had held},
over_power {"watts", "trips", "backoff_s"}, reconnect_armed None.
"""

from micropython import const

from relay import settings_check

NO_CREDIT = const(1)
OVER_POWER = const(2)
REMOTE = const(4)
TAMPER = const(8)
FAULT = const(16)
OVER_VOLTAGE = const(32)
UNDER_VOLTAGE = const(64)
RELAY_TEST = const(128)
SERVICE = const(256)

# Reason names by bit: NAMES[i] names the reason 1 << i (one tuple of strings: the names are already
# qstrs for the constants above, so this costs one small object).
NAMES = ("NO_CREDIT", "OVER_POWER", "REMOTE", "TAMPER", "FAULT", "OVER_VOLTAGE", "UNDER_VOLTAGE",
         "RELAY_TEST", "SERVICE")
_ALL = const(511)
_MAX_TRIPS = const(16)


def names(mask):
    """'NO_CREDIT|REMOTE' for a reason mask ('' for none)."""
    return "|".join(n for i, n in enumerate(NAMES) if mask >> i & 1)


def _no_event(kind, data):
    pass


class Supply:
    def __init__(self, relay, clock, emit=None, cfg=None, state=None):
        self.configure(cfg)
        self.relay = relay
        self.clock = clock
        self.emit = emit or _no_event
        st = state or {}
        self._mask = st.get("mask", 0) & _ALL
        self.awaiting_key = bool(st.get("awaiting_key", 0))
        self._held = st.get("held", self._mask)  # reasons seen since the supply last closed
        self.trips = st.get("trips", 0)
        self._over_since = None
        self._reclose_at = None
        self._decay_mark = None
        self._retry_at = None
        self._ticks = clock.ticks_ms()
        self._apply()

    def configure(self, cfg):
        """Settings (reconnect mode, key reasons, power limit and its timing, relay retry) from `cfg`."""
        (self.mode, self.key_mask, self.limit_w, self.over_ms, self.backoff_ms, self.backoff_max_ms,
         self.decay_ms, self.retry_ms) = settings_check().supply(cfg or {})

    def state(self):
        return {"mask": self._mask, "awaiting_key": int(self.awaiting_key), "held": self._held,
                "trips": self.trips}

    @property
    def closed(self):
        return self.relay.closed

    def reasons(self):
        return self._mask

    def set_reason(self, r):
        if self._mask & r == r:
            return
        self._mask |= r
        self._held |= r
        self._apply()

    def clear_reason(self, r):
        if not self._mask & r:
            return
        self._mask &= ~r
        if not self._mask and self.mode == "key" and self._held & self.key_mask and not self.relay.closed:
            self.arm_reconnect()
        self._apply()

    def arm_reconnect(self):
        """Demand the reconnect key before the next close (only meaningful while open)."""
        if not self.relay.closed and not self.awaiting_key:
            self.awaiting_key = True
            self.emit("reconnect_armed", None)

    def key_reconnect(self):
        """The customer pressed the reconnect key: close if nothing else holds. True if it closed."""
        if not self.awaiting_key or self._mask:
            return False
        self.awaiting_key = False
        self._apply()
        return self.relay.closed

    def _apply(self):
        want = not self._mask and not self.awaiting_key
        if want == self.relay.closed and not self.relay.failed:
            self._retry_at = None
            return
        was = self.relay.closed
        ok = self.relay.close() if want else self.relay.open()
        self._retry_at = None if ok else self.clock.ticks_add(self._ticks, self.retry_ms)
        if want and not was:
            self.emit("supply_close", {"after": names(self._held)})
            self._held = 0
        elif was and not want:
            self.emit("supply_open", {"reasons": names(self._mask), "mask": self._mask})

    def power_sample(self, watts, ticks):
        if self.limit_w and not self._mask & OVER_POWER:
            if watts > self.limit_w:
                if self._over_since is None:
                    self._over_since = ticks
                elif self.clock.ticks_diff(ticks, self._over_since) >= self.over_ms:
                    self._trip(watts, ticks)
            else:
                self._over_since = None
        self.poll(ticks)

    def _backoff(self):
        n = self.trips - 1 if self.trips > 0 else 0
        b = self.backoff_ms << n
        return b if b < self.backoff_max_ms else self.backoff_max_ms

    def _trip(self, watts, ticks):
        self._over_since = None
        if self.trips < _MAX_TRIPS:
            self.trips += 1
        b = self._backoff()
        self._reclose_at = self.clock.ticks_add(ticks, b)
        self.emit("over_power", {"watts": watts, "trips": self.trips, "backoff_s": b // 1000})
        self.set_reason(OVER_POWER)

    def poll(self, ticks):
        self._ticks = ticks
        diff = self.clock.ticks_diff
        if self._mask & OVER_POWER:
            if self._reclose_at is None:  # restored from state after a reboot
                self._reclose_at = self.clock.ticks_add(ticks, self._backoff())
            elif diff(ticks, self._reclose_at) >= 0:
                self._reclose_at = None
                self._decay_mark = ticks
                self.clear_reason(OVER_POWER)
        elif self.trips:
            if self._decay_mark is None:
                self._decay_mark = ticks
            elif diff(ticks, self._decay_mark) >= self.decay_ms:
                self.trips -= 1
                self._decay_mark = ticks
        if self._retry_at is not None and diff(ticks, self._retry_at) >= 0:
            self._apply()
