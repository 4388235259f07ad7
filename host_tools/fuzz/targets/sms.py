"""SMS texts into the running app's SMS service (comms/sms.py -> the actions): tokens (spaced,
dashed, mutated), balance keywords in English, French and Arabic, utility commands (`CMD <seq> <body>
<mac8>`) signed right and wrong, junk in Arabic and French, from the customer, the utility and junk
senders; also as SMS-DELIVER PDUs (single and concatenated, mutated) through `incoming`.

Invariants: nothing escapes; credit only from a token the host finds valid; the supply, clock, tamper,
settings and keys change only for a utility command whose MAC the host verifies (independently, with
the head-end's `envelope.sms_mac8`) from a registered number; the outbox stays bounded."""
from host_tools.fuzz.harness import Violation
from host_tools.fuzz.meter import CUSTOMER, EPOCH, MESSAGE_KEY, PAN, UTILITY
from host_tools.fuzz.mutate import mutate_bytes, mutate_text, rtext
from host_tools.fuzz.targets.meterdoor import PROTECTED, MeterDoor, diff
from host_tools.headend.envelope import sms_mac8

SENDERS = (CUSTOMER, UTILITY, "+22236000002", "+33612345678", "", "+", "BANK", "0" * 30, "+2223600000١", "é")
WORDS = ("BAL", "bal", "Solde", "SOLDE ?", "solde!", "رصيد", "رصيد؟", " BAL. ", "BALANCE", "SOLD", "CMD", "Crédit")
CMDS = ("relay_open", "relay_close", "set_time unix=%d" % (EPOCH + 60), "get_readings", "get_statement",
        "clear_tamper", "set_config reading_period_s=60", "fw_offer", "nope")


class SmsTarget(MeterDoor):
    name = "sms"
    states = ("online",)

    def __init__(self, work):
        super().__init__(work)
        self.seq = 1000

    def _cmd(self, rng, body=None, good=True):
        self.seq += 1
        body = body or rng.choice(CMDS)
        mac = sms_mac8(MESSAGE_KEY, PAN, self.seq, body) if good else "%08x" % rng.getrandbits(32)
        return "CMD %d %s %s" % (self.seq, body, mac)

    def seeds(self):
        t = self.tokens
        out = [{"sender": CUSTOMER, "text": t[0]}, {"sender": "+22236000002", "text": " ".join(
            t[1][i:i + 4] for i in range(0, 20, 4))}, {"sender": CUSTOMER, "text": "-".join(t[2][i:i + 5] for i in (0, 5, 10, 15))}]
        out += [{"sender": s, "text": w} for s in (CUSTOMER, UTILITY, "+22236000002") for w in WORDS[:6]]
        out += [{"sender": UTILITY, "text": "CMD 1 %s %s" % (b, sms_mac8(MESSAGE_KEY, PAN, 1, b))} for b in CMDS]
        out.append({"sender": UTILITY, "pdu": _pdu(UTILITY, "SOLDE")})
        out.append({"sender": CUSTOMER, "pdu": _pdu(CUSTOMER, "Bonjour, mon solde s'il vous plaît ? " * 6)})
        return out

    def generate(self, rng):
        sender = rng.choice(SENDERS)
        r = rng.random()
        if r < 0.2:
            text = rng.choice(self.tokens)
        elif r < 0.35:
            text = rng.choice(WORDS)
        elif r < 0.55:
            text = self._cmd(rng, good=rng.random() < 0.5)
            sender = rng.choice((UTILITY, UTILITY, CUSTOMER, "+22236000002"))
        elif r < 0.7:
            text = "".join(rng.choice("0123456789 -") for _ in range(rng.randint(8, 26)))
        else:
            text = rtext(rng, 0, 200)
        if rng.random() < 0.15:
            return {"sender": sender, "pdu": _pdu(sender, text, rng)}
        return {"sender": sender, "text": text, "later": rng.random() < 0.2}

    def mutate(self, rng, x):
        x = dict(x)
        if rng.random() < 0.1:
            x["sender"] = rng.choice(SENDERS) if rng.random() < 0.7 else mutate_text(rng, x["sender"])
        if "pdu" in x:
            x["pdu"] = mutate_bytes(rng, bytes.fromhex(x["pdu"])).hex()
        elif x["text"].startswith("CMD ") and rng.random() < 0.3:
            parts = x["text"].split(" ")
            body = " ".join(parts[2:-1]) or "relay_open"
            x["text"] = self._cmd(rng, mutate_text(rng, body) if rng.random() < 0.5 else body, rng.random() < 0.7)
        else:
            x["text"] = mutate_text(rng, x["text"])
        return x

    def run(self, x):
        m = self.meters["online"]
        sms = m.app.cellular.link.sms
        if x.get("later"):
            m.board.clock.now_ms += 3600 * 1000     # past a throttled sender's back-off
        before = m.snapshot()
        m.ran = []
        if "pdu" in x:
            sender, text = _pdu_text(x["pdu"])
            out = sms.incoming(x["pdu"])
        else:
            sender, text = x["sender"], x["text"]
            out = sms.handle(sender, text)
        after = m.snapshot()
        if len(sms.outbox) > sms.outbox_parts:
            raise Violation("the SMS outbox holds %d parts (bound %d)" % (len(sms.outbox), sms.outbox_parts))
        del sms.outbox[:]                    # the supervisor would have sent them
        d = diff(before, after, PROTECTED)
        if d and not (text is not None and sender == UTILITY and _signed(text)):
            raise Violation("an SMS without a verified utility command changed protected state: %s" % (d,))
        self.check_credit(m, before, after, False)
        if after["reasons"] or after["time"] != before["time"]:
            m.reset()
            self._watch(m)
        return str(out)


def _pdu_text(hexpdu):
    """(sender, text) of a single-part SMS-DELIVER PDU, else (None, None). The PDU decoder is the
    meter's (fuzzed on its own in tests/test_comms_fuzz.py); whether the text is a signed command is
    still judged by the host's MAC."""
    from host_tools.fwimport import firmware_module
    d = firmware_module("comms.pdu").decode(hexpdu)
    if d is None or d["type"] != "deliver" or d["concat"]:
        return None, None
    return d["addr"], d["text"]


def _signed(text):
    """True when `text` is `CMD <seq> <body> <mac8>` whose MAC the host verifies."""
    parts = text.strip().split()
    if len(parts) < 4 or parts[0].upper() != "CMD" or not parts[1].isascii() or not parts[1].isdigit():
        return False
    return sms_mac8(MESSAGE_KEY, PAN, int(parts[1]), " ".join(parts[2:-1])) == parts[-1].lower()


def _pdu(sender, text, rng=None):
    from host_tools.sim.modem.sms_pdu import deliver_pdus
    try:
        parts = deliver_pdus(sender if sender.startswith("+") and sender[1:].isdigit() else "+22236000002",
                             text, EPOCH, ref=rng.getrandbits(8) if rng else 0)
    except Exception:
        parts = deliver_pdus("+22236000002", "SOLDE", EPOCH)
    return parts[0][0].hex()
