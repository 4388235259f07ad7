"""MQTT downlinks after the framing (comms/protocol.py -> comms/cellular.py -> the actions): envelopes
signed with the meter's key around inner messages of every type (tokens; each command with valid,
junk and mutated arguments), unsigned, wrongly signed, stale and replayed ones, and raw mutated bytes.

Invariants: nothing escapes `Protocol.receive`; its outcome is one of the documented ones; credit only
from a token the host finds valid; the supply, clock, tamper, settings and keys change only for a
command whose envelope the host verifies with the head-end's own `envelope.check`."""
import json

from host_tools.fuzz.harness import Violation
from host_tools.fuzz.meter import EPOCH, MESSAGE_KEY, PAN
from host_tools.fuzz.mutate import mutate_bytes, mutate_value
from host_tools.fuzz.targets.meterdoor import PROTECTED, MeterDoor, diff
from host_tools.headend import envelope

OUTCOMES = ("accepted", "repeat", "malformed", "bad_mac", "stale", "fault")
ARGS = {"relay_open": {}, "relay_close": {}, "set_time": {"unix": EPOCH + 120}, "get_readings": {},
        "get_statement": {}, "clear_tamper": {},
        "set_config": {"reading_period_s": 600, "prepaid": {"tariff": {"kind": "flat", "price_minor_per_kwh": 120}}},
        "fw_offer": {"version": "0.2.0", "size": 4096, "sha256": "00" * 32, "sig": "00" * 64}}


class MqttTarget(MeterDoor):
    name = "mqtt"
    states = ("online",)

    def __init__(self, work):
        super().__init__(work)
        self.n = 0

    def _inners(self):
        out = [{"t": "token", "id": "t%d" % i, "token": tok} for i, tok in enumerate(self.tokens[:4])]
        out += [{"t": "cmd", "id": "c-" + c, "cmd": c, "args": a} for c, a in ARGS.items()]
        return out

    def seeds(self):
        return [{"inner": i, "sign": s} for i in self._inners() for s in ("good", "none")]

    def generate(self, rng):
        inner = dict(rng.choice(self._inners()))
        if rng.random() < 0.6:
            inner = mutate_value(rng, inner)
        sign = rng.choice(("good", "good", "good", "none", "bad", "other_meter"))
        x = {"inner": inner, "sign": sign, "seq": rng.choice(("next", "next", "same", "old", rng.randrange(10 ** 6)))}
        if rng.random() < 0.1:
            x = {"raw": mutate_bytes(rng, self._payload(x)).hex()}
        return x

    def mutate(self, rng, x):
        if "raw" in x:
            return {"raw": mutate_bytes(rng, bytes.fromhex(x["raw"])).hex()}
        x = dict(x)
        r = rng.random()
        if r < 0.7:
            x["inner"] = mutate_value(rng, x["inner"])
        elif r < 0.85:
            x["sign"] = rng.choice(("good", "none", "bad", "other_meter"))
        else:
            return {"raw": mutate_bytes(rng, self._payload(x)).hex()}
        return x

    def _seq(self, x):
        rx = self.meters["online"].app.cellular.link.protocol.rx
        s = x.get("seq", "next")
        return rx + 1 if s == "next" else rx if s == "same" else max(rx - 5, 0) if s == "old" else s

    def _payload(self, x):
        self.n += 1
        inner, sign = x["inner"], x["sign"]
        seq = self._seq(x)
        key = MESSAGE_KEY if sign in ("good", "other_meter") else bytes(32)
        mid = PAN if sign != "other_meter" else "600727000000000017"
        try:
            text = json.dumps(inner, separators=(",", ":"), sort_keys=not isinstance(inner, dict) or all(
                isinstance(k, str) for k in inner))
        except (TypeError, ValueError):
            text = json.dumps(str(inner))
        h = envelope.mac(key, mid, seq, text, envelope.DOWN) if sign != "none" else ""
        return json.dumps({"m": PAN, "s": seq, "p": text, "h": h}).encode()

    def run(self, x):
        m = self.meters["online"]
        proto = m.app.cellular.link.protocol
        payload = bytes.fromhex(x["raw"]) if "raw" in x else self._payload(x)
        try:                                   # the host's own verdict on the envelope, before the meter sees it
            envelope.check(MESSAGE_KEY, payload, proto.rx, envelope.DOWN, meter_id=PAN)
            verified = True
        except envelope.EnvelopeError:
            verified = False
        before = m.snapshot()
        m.ran = []
        out = proto.receive(payload)
        after = m.snapshot()
        if out not in OUTCOMES:
            raise Violation("receive answered %r, not one of %s" % (out, OUTCOMES))
        d = diff(before, after, PROTECTED)
        if d and not verified:
            raise Violation("a downlink the host does not verify changed protected state (%s): %s" % (out, d))
        if d and out != "accepted":
            raise Violation("a downlink answered %r changed protected state: %s" % (out, d))
        self.check_credit(m, before, after, False)
        del m.app.cellular.link.uplink.queue[:]      # acknowledged by the broker, in effect
        if after["reasons"] or after["time"] != before["time"] or after["settings"] != before["settings"]:
            m.reset()
            self._watch(m)
        return out
