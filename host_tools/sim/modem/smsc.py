"""The simulated SMS centre: delivers texts to the meter's modem (from any number, GSM 7-bit or UCS2,
long texts as concatenated parts) and captures what the meter sends, decoding its SMS-SUBMIT PDUs with
an independent decoder (sms_pdu) and reassembling concatenated parts (UDH in PDU mode, "(i/n) " prefixes
in text mode, as docs/sim-modem.md says)."""
import re

from host_tools.sim.modem import sms_pdu

_TEXT_PART = re.compile(r"^\((\d+)/(\d+)\) ")


class SentMessage:
    """One message the meter sent, reassembled: to, text, parts, encoding ('gsm7'|'ucs2'|'8bit')."""

    def __init__(self, to, text, parts, encoding, mode):
        self.to, self.text, self.parts, self.encoding, self.mode = to, text, parts, encoding, mode

    def __repr__(self):
        return f"SentMessage(to={self.to!r}, parts={self.parts}, {self.encoding}, {self.text!r})"


class SMSC:
    def __init__(self, number="+22200000000"):
        self.number = number
        self.inbound = []           # (sender, pdu_bytes_with_sca, tpdu_len, text_of_part, dcs) for the modem
        self.sent = []              # SentMessage, complete
        self.raw_submits = []       # every decoded submit, in order
        self.errors = []            # PDUs the decoder refused (a firmware encoder bug)
        self._partial = {}          # (to, ref, total) -> {seq: text}
        self._ref = 0
        self._mr = 0

    # -- towards the meter -------------------------------------------------------------------------
    def deliver(self, sender, text, unix_s=0, encoding=None):
        """Queue an SMS for the meter; returns the number of parts. encoding: None (auto), 'gsm7', 'ucs2'."""
        dcs = {None: None, "gsm7": sms_pdu.DCS_GSM7, "ucs2": sms_pdu.DCS_UCS2}[encoding]
        dcs = sms_pdu.choose_dcs(text) if dcs is None else dcs
        self._ref = (self._ref + 1) & 0xFF
        pdus = sms_pdu.deliver_pdus(sender, text, unix_s, sca=self.number, ref=self._ref, dcs=dcs)
        parts = sms_pdu.split_text(text, dcs)
        for (pdu, n), part in zip(pdus, parts):
            self.inbound.append({"sender": sender, "pdu": pdu, "tpdu_len": n, "text": part, "dcs": dcs,
                                 "unix_s": unix_s})
        return len(pdus)

    def take_inbound(self):
        out, self.inbound = self.inbound, []
        return out

    # -- from the meter ----------------------------------------------------------------------------
    def _next_mr(self):
        self._mr = (self._mr + 1) & 0xFF
        return self._mr

    def submit_pdu(self, tpdu):
        """A TPDU (bytes, SCA stripped) the meter sent; returns the message reference, or raises PduError."""
        try:
            d = sms_pdu.decode_submit(tpdu)
        except sms_pdu.PduError as e:
            self.errors.append((tpdu.hex(), str(e)))
            raise
        self.raw_submits.append(d)
        enc = {sms_pdu.DCS_GSM7: "gsm7", sms_pdu.DCS_UCS2: "ucs2"}.get(d["dcs"], "8bit")
        if d["concat"] is None:
            self.sent.append(SentMessage(d["to"], d["text"], 1, enc, "pdu"))
        else:
            ref, total, seq = d["concat"]
            self._add_part((d["to"], ref, total), seq, d["text"], enc, "pdu")
        return self._next_mr()

    def submit_text(self, to, text, encoding):
        """A text-mode submission; "(i/n) " prefixed parts are reassembled."""
        self.raw_submits.append({"to": to, "text": text, "dcs": encoding, "concat": None})
        m = _TEXT_PART.match(text)
        if m and 1 <= int(m.group(1)) <= int(m.group(2)) and int(m.group(2)) > 1:
            self._add_part((to, "text", int(m.group(2))), int(m.group(1)), text[m.end():], encoding, "text")
        else:
            self.sent.append(SentMessage(to, text, 1, encoding, "text"))
        return self._next_mr()

    def _add_part(self, key, seq, text, enc, mode):
        parts = self._partial.setdefault(key, {})
        parts[seq] = text
        if len(parts) == key[2] and all(i in parts for i in range(1, key[2] + 1)):
            del self._partial[key]
            self.sent.append(SentMessage(key[0], "".join(parts[i] for i in range(1, key[2] + 1)), key[2], enc, mode))

    def incomplete(self):
        """Concatenated messages with parts still missing: {(to, ref, total): [seqs received]}."""
        return {k: sorted(v) for k, v in self._partial.items()}
