"""The privileged-session state the service port's gate reads on every privileged request: factory
mode, the open session, the pending challenge and the wrong-MAC back-off. Kept in RAM for the meter's
life, so it is only state and the gate; the challenge-response itself is in `provision.auth`,
loaded per request."""
from micropython import const

SESSION_MS = const(600000)          # 10 minutes of privileged session


class Session:
    def __init__(self, clock, random, emit):
        self.clock = clock
        self.random = random
        self.emit = emit
        self.factory_mode = True
        self.fails = 0               # wrong MACs in a row
        self.nonce = None
        self.nonce_at = 0
        self.opened_at = None        # ticks when the session opened, or None
        self.locked_at = None        # ticks when the wrong-MAC back-off began, or None
        self.locked_ms = 0

    def left_ms(self, since, length):
        """ms left of a period of `length` that began at ticks `since` (0 when over or never begun)."""
        if since is None:
            return 0
        left = length - self.clock.ticks_diff(self.clock.ticks_ms(), since)
        return left if left > 0 else 0

    def gate(self, req):
        if self.factory_mode or self.left_ms(self.opened_at, SESSION_MS):
            return None
        return "privileged command: authenticate first (auth_challenge, then auth)"
