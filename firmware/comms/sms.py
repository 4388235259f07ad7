"""SMS as the meter's second channel: long texts split into concatenated PDU parts (GSM 7-bit when
every character allows, else UCS2), incoming texts reassembled and understood (a token from any
number, BAL/SOLDE/رصيد from the registered numbers, authenticated utility commands from the utility's
numbers), and replies, warnings, receipts and statements queued for the supervisor to send with AT+CMGS.

The balance is the customer's business: it is answered only to the customer's and the utility's
numbers unless `balance_from_registered` is off. Utility commands by SMS are the few in
`SMS_COMMANDS` (never `set_config` or `fw_offer`: docs/protocol.md section 5), and a sender whose
command MACs keep failing is throttled (3 free failures, then 60 s doubling to 1 h, per sender, in
RAM), so the 32-bit SMS MAC cannot be searched by text."""
from micropython import const
from comms.protocol import ascii_digits, TOKEN_LENGTHS

_GSM_SINGLE = const(160)
_GSM_PART = const(153)  # 160 septets less the 7 that hold the concatenation header
_UCS2_SINGLE = const(140)  # octets: 70 characters
_UCS2_PART = const(134)  # octets: 67 characters after the 6-octet header
_MAX_PARTS = const(8)  # outgoing texts are cut here rather than cost the customer more
_MAX_IN_PARTS = const(4)  # incoming commands and tokens are short; longer ones are not for us
_MAX_PARTIAL = const(4)  # concatenated messages being reassembled at once
_THROTTLE_SENDERS = const(8)  # senders whose failed command MACs are counted (RAM stays bounded)
_THROTTLE_FIRST_S = const(60)
_THROTTLE_CAP_S = const(3600)
# Commands a registered number may send by SMS (docs/protocol.md section 5).
SMS_COMMANDS = ("relay_open", "relay_close", "set_time", "get_readings", "get_statement", "clear_tamper")


def _codecs():
    """gsm7, pdu and smstext: loaded while a text is encoded, decoded or written, and forgotten after
    it (`_forget`), so the SMS codecs hold no heap between texts (about 12 KB on a 32-bit meter that
    runs from .mpy files; texts come a few times a day)."""
    from comms import gsm7, pdu, smstext
    return gsm7, pdu, smstext


def _forget():
    from util import unload
    for n in ("smstext", "pdu", "gsm7"):
        unload("comms." + n)


def encode(dest, text, ref=0):
    """The PDU parts for `text` to `dest`: a list of (TPDU length for AT+CMGS, hex with the "00"
    default-SMSC prefix)."""
    gsm7, pdu, _ = _codecs()
    sep = gsm7.septets(text)
    chunks = []
    if sep is not None:
        if len(sep) <= _GSM_SINGLE:
            chunks.append(sep)
        else:
            i = 0
            while i < len(sep):
                j = i + _GSM_PART
                if j < len(sep) and sep[j - 1] == gsm7.ESC:
                    j -= 1  # an escape and its character stay in one part
                chunks.append(sep[i:j])
                i = j
    else:
        u = pdu.ucs2(text)
        if len(u) <= _UCS2_SINGLE:
            chunks.append(u)
        else:
            i = 0
            while i < len(u):
                j = i + _UCS2_PART
                if j < len(u) and 0xD8 <= u[j - 2] < 0xDC:
                    j -= 2  # a surrogate pair stays in one part
                chunks.append(u[i:j])
                i = j
    chunks = chunks[:_MAX_PARTS]
    total = len(chunks)
    out = []
    for k in range(total):
        udh = pdu.concat_header(ref, total, k + 1) if total > 1 else None
        c = chunks[k]
        if sep is not None:
            if udh:
                ud = _gsm_with_header(udh, c)
                tp = pdu.submit(dest, ud, pdu.DCS_GSM7, 7 + len(c), udh)
            else:
                tp = pdu.submit(dest, gsm7.pack(c), pdu.DCS_GSM7, len(c))
        else:
            ud = (udh or b"") + c
            tp = pdu.submit(dest, ud, pdu.DCS_UCS2, len(ud), udh)
        out.append((len(tp), "00" + pdu.hexlify(tp)))
    return out


def _gsm_with_header(udh, sep):
    # 6 header octets (48 bits) + 1 fill bit = 7 septets, so the text starts on a septet boundary
    # at bit 49: packing with one fill bit from the octet after the header gives exactly that.
    return udh + _codecs()[0].pack(sep, 1)


def parse(text):
    """What an incoming text asks: ("token", digits), ("balance", lang), ("cmd", seq, body, mac8,
    name, args) or None."""
    t = text.strip()
    compact = t.replace(" ", "").replace("-", "")
    if len(compact) in TOKEN_LENGTHS and ascii_digits(compact):
        return ("token", compact)
    # char by char: MicroPython's str.strip works on bytes and would cut the UTF-8 of "؟" in half
    word = t
    while word and word[-1] in "?.!؟ ":
        word = word[:-1]
    while word and word[0] in "?.!؟ ":
        word = word[1:]
    word = word.upper()
    if word == "BAL":
        return ("balance", "en")
    if word == "SOLDE":
        return ("balance", "fr")
    if word == "رصيد":
        return ("balance", "ar")
    parts = t.split()
    if len(parts) >= 4 and parts[0].upper() == "CMD" and ascii_digits(parts[1]) and len(parts[1]) < 10:
        args = {}
        for a in parts[3:-1]:
            if "=" not in a:
                return None
            k, v = a.split("=", 1)
            args[k] = int(v) if ascii_digits(v) and len(v) <= 12 else v
        return ("cmd", int(parts[1]), " ".join(parts[2:-1]), parts[-1], parts[2], args)
    return None


class SmsService:
    """Incoming SMS -> actions and replies; outgoing texts -> `outbox` of PDU parts."""

    def __init__(self, protocol, on_token, on_balance, customer=None, registered=(), lang="fr",
                 minor_per_unit=100, emit=None, outbox_parts=16, tokens_from_registered=False,
                 balance_from_registered=True, clock=None):
        self.protocol = protocol  # authenticates CMD texts, runs commands
        self.on_token = on_token  # (digits, source) -> (code, detail)
        self.on_balance = on_balance  # () -> (credit minor units, days left)
        self.customer = customer
        self.registered = tuple(registered)
        # True: tokens only from the utility's numbers and the customer's; else from anyone, each
        # sender with its own failed-entry lockout (the source "sms:<number>").
        self.tokens_from_registered = tokens_from_registered
        # True: the balance only to the utility's numbers and the customer's (it is private).
        self.balance_from_registered = balance_from_registered
        self.clock = clock  # board clock (ticks) for the failed-MAC throttle; None: no throttle
        self._throttle = {}  # sender -> Lockout
        self.lang = lang
        self.minor_per_unit = minor_per_unit
        self.emit = emit or (lambda kind, data: None)
        self.outbox = []  # [(tpdu length, pdu hex)], sent in order by the supervisor
        self.outbox_parts = outbox_parts
        self._ref = 0
        self._partial = []  # [[key, total, {seq: text}]]
        self.stats = {"in": 0, "out": 0, "ignored": 0, "dropped": 0, "bad": 0}

    # -- outgoing ----------------------------------------------------------------------------
    def send(self, number, text):
        n = number[1:] if number[:1] == "+" else number
        if not ascii_digits(n) or len(n) > 20:
            self.stats["dropped"] += 1  # an alphanumeric or junk sender ("BANK") cannot be answered
            return False
        self._ref = (self._ref + 1) & 0xFF
        parts = encode(number, text, self._ref)
        if len(self.outbox) + len(parts) > self.outbox_parts:
            self.stats["dropped"] += 1  # never unbounded: a flood of requests cannot queue costs
            return False
        self.outbox.extend(parts)
        self.stats["out"] += 1
        return True

    def notify(self, kind, **values):
        """A warning, receipt or statement for the customer's registered number in their language."""
        if not self.customer:
            return False
        try:
            return self.send(self.customer, _codecs()[2].render(kind, self.lang, self.minor_per_unit, **values))
        finally:
            _forget()

    # -- incoming ----------------------------------------------------------------------------
    def incoming(self, pdu_hex):
        """Handle one stored message (hex PDU as AT+CMGR/CMGL print it); returns what it was."""
        try:
            return self._incoming(pdu_hex)
        finally:
            _forget()

    def _incoming(self, pdu_hex):
        m = _codecs()[1].decode(pdu_hex)
        if m is None or m["type"] != "deliver":
            self.stats["bad"] += 1
            return "bad"
        self.stats["in"] += 1
        text = m["text"]
        if m["concat"]:
            text = self._reassemble(m["addr"], m["concat"], text)
            if text is None:
                return "part"
        return self.handle(m["addr"], text)

    def _reassemble(self, addr, concat, text):
        ref, total, seq = concat
        if total > _MAX_IN_PARTS:
            self.stats["ignored"] += 1
            return None
        key = addr + "/" + str(ref)
        for e in self._partial:
            if e[0] == key and e[1] == total:
                break
        else:
            e = [key, total, {}]
            self._partial.append(e)
            if len(self._partial) > _MAX_PARTIAL:
                self._partial.pop(0)
        e[2][seq] = text
        if len(e[2]) < total:
            return None
        self._partial.remove(e)
        return "".join([e[2][i] for i in range(1, total + 1)])

    def handle(self, sender, text):
        req = parse(text)
        if req is None:
            self.stats["ignored"] += 1
            return "ignored"
        kind = req[0]
        if kind == "token":
            if self.tokens_from_registered and sender not in self.registered and sender != self.customer:
                self.emit("sms_token_refused", {"from": sender})
                return "refused"
            code, _ = self.on_token(req[1], "sms:" + sender)
            self.send(sender, _codecs()[2].render("token", self.lang, self.minor_per_unit, token=req[1],
                                                  result=code))
            return "token"
        if kind == "balance":
            if self.balance_from_registered and sender not in self.registered and sender != self.customer:
                self.emit("sms_balance_refused", {"from": sender})
                return "refused"
            credit, days = self.on_balance()
            self.send(sender, _codecs()[2].render("balance", req[1], self.minor_per_unit, credit=credit,
                                                  days=days))
            return "balance"
        if sender not in self.registered:
            self.emit("sms_cmd_refused", {"from": sender})
            return "refused"
        _, seq, body, mac8, name, args = req
        lock = self._throttle.get(sender)
        if lock is not None and lock.locked():
            # Not even checked: a forger cannot try MACs faster than the throttle allows.
            self.emit("sms_cmd_throttled", {"from": sender, "s": seq})
            return "throttled"
        code, detail = self.protocol.sms_command(seq, body, mac8, name, args, SMS_COMMANDS)
        if code is None:
            if detail == "bad_mac":
                self._failed(sender)
            return detail  # bad_mac or stale: not acted on, not answered (no oracle for forgers)
        if lock is not None:
            lock.success()
        self.send(sender, _codecs()[2].render("cmd", "en", seq=seq, code=code) + _detail(detail))
        return "cmd"


    def _failed(self, sender):
        if self.clock is None:
            return
        lock = self._throttle.get(sender)
        if lock is None:
            if len(self._throttle) >= _THROTTLE_SENDERS:
                for k in self._throttle:      # forget one not locked (or, if all are, any)
                    if not self._throttle[k].locked():
                        break
                self._throttle.pop(k)
            from tokens.lockout import Lockout
            lock = self._throttle[sender] = Lockout(self.clock, _THROTTLE_CAP_S, _THROTTLE_FIRST_S)
        ms = lock.failure()
        if ms:
            self.emit("sms_cmd_throttled", {"from": sender, "lock_s": ms // 1000})


def _detail(detail, room=140):
    """" k=v k=v" of a command's answer (one level of nesting as a.b=v), within `room` characters."""
    out = ""
    if not isinstance(detail, dict):
        return out
    for k in sorted(detail):
        v = detail[k]
        items = [(k + "." + j, v[j]) for j in sorted(v)] if isinstance(v, dict) else [(k, v)]
        for name, val in items:
            if isinstance(val, (dict, list)):
                continue
            piece = " %s=%s" % (name, val)
            if len(out) + len(piece) > room:
                return out
            out += piece
    return out
