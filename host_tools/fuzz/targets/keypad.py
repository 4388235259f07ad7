"""The keypad: key sequences into the running app's UI (ui/wiring.py -> ui/keypad.py -> the actions):
valid tokens typed and entered, random and overlong digit runs, BACK runs, emergency confirm, reconnect,
screen keys, junk key names, and pauses past the entry timeout. No exception may leave the UI's poll
(it would fail the scheduler's job), credit only from a token the host finds valid or from emergency
credit asked for, and the keys never change the clock, settings, tamper or the keys."""
from host_tools.fuzz.harness import Violation
from host_tools.fuzz.mutate import rtext
from host_tools.fuzz.targets.meterdoor import MeterDoor, diff

KEYS = tuple("0123456789") + ("ENTER", "BACK", "NEXT", "EMERG", "RECONNECT")
JUNK_KEYS = ("", "*", "#", "A", "enter", "ENTER ", "00", "٣", "\x00", "BACKBACK", "D", "F1")
UNCHANGED = ("tamper", "time_valid", "settings", "records")   # time: the test waits


class KeypadTarget(MeterDoor):
    name = "keypad"
    states = ("online",)

    def _typed(self, digits):
        return list(digits) + ["ENTER"]

    def seeds(self):
        t = self.tokens
        return [{"keys": self._typed(t[0])}, {"keys": self._typed(t[1]) + self._typed(t[1])},
                {"keys": ["EMERG", "ENTER"]}, {"keys": ["RECONNECT"]}, {"keys": ["NEXT"] * 6 + ["BACK"]},
                {"keys": list(t[2][:7]) + ["BACK"] * 4 + self._typed(t[2])},
                {"keys": list(t[3][:10]) + [{"wait": 61000}] + self._typed(t[3])},
                {"keys": ["EMERG", "1", "2", "ENTER"]}, {"keys": list("1" * 25) + ["ENTER"]}]

    def _key(self, rng):
        r = rng.random()
        if r < 0.7:
            return rng.choice("0123456789")
        if r < 0.93:
            return rng.choice(KEYS[10:])
        if r < 0.97:
            return {"wait": rng.choice([100, 400, 600, 59000, 61000, 3600000])}
        return rng.choice(JUNK_KEYS) if rng.random() < 0.7 else rtext(rng, 0, 4)

    def generate(self, rng):
        keys = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                keys += self._typed(rng.choice(self.tokens))
            else:
                keys += [self._key(rng) for _ in range(rng.randint(1, 12))]
        return {"keys": keys}

    def mutate(self, rng, x):
        keys = list(x["keys"])
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and keys:
                del keys[rng.randrange(len(keys))]
            elif op == 1:
                keys.insert(rng.randrange(len(keys) + 1), self._key(rng))
            elif op == 2 and keys:
                keys[rng.randrange(len(keys))] = self._key(rng)
            else:
                i = rng.randrange(len(keys) + 1)
                keys[i:i] = keys[i:i + rng.randint(1, 20)]
        return {"keys": keys[:120]}

    def run(self, x):
        m = self.meters["online"]
        b = m.board
        ui = m.app.ui
        before = m.snapshot()
        m.ran = []
        for k in x["keys"]:
            if isinstance(k, dict):
                b.clock.now_ms += k["wait"]
                ui.tick()
                continue
            b.keys.append(k)
            ui.poll()
        ui.tick()
        if b.keys:
            raise Violation("%d key(s) left unread after the UI's poll" % len(b.keys))
        after = m.snapshot()
        d = diff(before, after, UNCHANGED)
        if d:
            raise Violation("key presses changed what keys may not: %s" % (d,))
        if any(n == "set_time" for n, _, _ in m.ran):
            raise Violation("key presses set the clock")
        self.check_credit(m, before, after, False)
        if after["credit"] > 5 * 10 ** 7 or after["em_owed"]:
            m.reset()                        # keep the meter in its ordinary range (and emergency available)
            self._watch(m)
        names = sorted({n for n, _, _ in m.ran})
        return "+".join(names) or "none"
