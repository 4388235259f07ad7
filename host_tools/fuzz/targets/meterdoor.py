"""What the meter's doors share: a firmware app per state (host_tools/fuzz/meter.py), the actions each
input set off (watched at `Actions.run`, the one path every channel takes), and the invariants:
- a rejected input changes nothing (ledger, supply, tamper, clock, settings, identity and keys);
- credit moves only for an authorisation the host checks independently: a token its own STS decoder
  finds valid, a top-up through an authenticated door, emergency credit asked for;
- an input whose authorisation failed (`protected` below) changes none of the protected state."""
from host_tools.fuzz.harness import Violation
from host_tools.fuzz.meter import Meter, credit_delta, token_amount, valid_tokens

PROTECTED = ("reasons", "tamper", "time", "time_valid", "settings", "records")


def diff(before, after, keys=None):
    return {k: (before[k], after[k]) for k in (keys or before) if before[k] != after[k]}


class MeterDoor:
    cover = ("/firmware/",)
    states = ("online",)

    def __init__(self, work):
        self.meters = {s: Meter(work, s) for s in self.states}
        for m in self.meters.values():
            self._watch(m)
        self.tokens = valid_tokens(16)

    def reset(self):
        for m in self.meters.values():
            m.reset()
            self._watch(m)

    def _watch(self, m):
        acts = m.app.actions
        real = type(acts).run.__get__(acts)
        m.ran = []

        def run(name, *args):
            out = real(name, *args)
            m.ran.append((name, args, out))
            return out
        acts.run = run

    def check_credit(self, m, before, after, authorised_topup):
        """Credit added only by a host-valid token, an authorised top-up or emergency credit."""
        added, em = credit_delta(before, after)
        if added < 0:
            raise Violation("the credit register went down by %d (topups %d -> %d)" % (-added, before["topups"],
                                                                                       after["topups"]))
        allowed = 0
        for name, args, out in m.ran:
            if name == "token" and isinstance(out, dict) and out.get("result") == "accepted":
                if token_amount(args[0]) is None:
                    raise Violation("token %r accepted but the host's STS decoder finds no valid credit token "
                                    "in it" % (args[0],))
                allowed += (out.get("split") or {}).get("amount", 0)
            elif name == "topup" and isinstance(out, dict) and out.get("applied"):
                if not authorised_topup:
                    raise Violation("top-up of %r applied without an authorisation (by %r)" % (args[0], args[-1]))
                allowed += args[0]
        if added != allowed:
            raise Violation("credit register moved by %d, but the authorised credits sum to %d (actions: %s)"
                            % (added, allowed, [(n, a) for n, a, _ in m.ran]))
        if em > 0 and not any(n == "emergency" for n, _, _ in m.ran):
            raise Violation("emergency credit of %d given with no emergency request" % em)
