"""SMS: GSM 7-bit and UCS2 PDUs byte-exact against vectors worked by hand from the 3GPP TS 23.040
layout, concatenation, an Arabic statement checked byte for byte, tokens and balance queries by
SMS in three languages, and authenticated utility commands."""
from comms import gsm7, pdu, sms, smstext
from comms.protocol import Protocol
from comms_support import FakeStore

KEY = b"\x11" * 32
MID = "000000000000004242"
CUSTOMER = "+22236000001"
UTILITY = "+22236000099"


# SMS-SUBMIT, "Solde" to +22236000001, worked by hand:
#   00          no SMSC address: the modem uses its default
#   11          first octet: TP-MTI 01 (SUBMIT), TP-VPF 10 (relative validity)
#   00          TP-MR (the modem fills it in)
#   0B 91       11 address digits, international numbering
#   22 32 06 00 00 F1   digits 22236000001 in swapped semi-octets, F filler
#   00 00 A7    TP-PID, TP-DCS 00 (GSM 7-bit), TP-VP A7 (24 h)
#   05          TP-UDL: 5 septets
#   D3 37 9B 5C 06      S o l d e = 53 6F 6C 64 65 packed LSB first:
#               53|(6F<<7)=D3, (6F>>1)|(6C<<6)=37, (6C>>2)|(64<<5)=9B, (64>>3)|(65<<4)=5C, 65>>4=06
SOLDE_HEX = "0011000B912232060000F10000A705D3379B5C06"

# The same to Arabic "رصيد" (U+0631 U+0635 U+064A U+062F): DCS 08, UDL 8 octets of UTF-16BE.
RASID_HEX = "0011000B912232060000F10008A7080631063506" "4A062F"

# Second part of "A"*153 + "@"*7 + "B" (161 septets, so two parts): first octet 51 (UDHI set);
# UDL 0F = 7 septets of header and fill (05 00 03 ref=01 total=02 seq=02, then 1 fill bit) + 8 text
# septets. "@" is septet 00, so bits 0-49 of the text octets are 0 (1 fill + 7x7); "B" (42) starts at
# bit 50: octet 6 gets (42 << 2) & FF = 08, octet 7 gets 42 >> 6 = 01.
PART2_HEX = "0051000B912232060000F10000A70F050003010202" "0000000000000801"


def test_gsm7_submit_pdu_matches_hand_vector():
    assert sms.encode(CUSTOMER, "Solde") == [(19, SOLDE_HEX)]


def test_ucs2_submit_pdu_matches_hand_vector():
    assert sms.encode(CUSTOMER, "رصيد") == [(22, RASID_HEX)]


def test_concatenated_gsm7_second_part_matches_hand_vector():
    parts = sms.encode(CUSTOMER, "A" * 153 + "@" * 7 + "B", ref=1)
    assert len(parts) == 2
    assert parts[1] == (28, PART2_HEX)
    first = pdu.decode(parts[0][1])
    assert parts[0][1][28:30] == "A0"  # UDL 160: 7 header septets + 153 text septets
    assert first["concat"] == (1, 2, 1) and first["text"] == "A" * 153


def test_known_septet_packing_vector():
    assert gsm7.pack(gsm7.septets("hellohello")).hex().upper() == "E8329BFD4697D9EC37"


def test_deliver_pdu_decodes_sender_time_and_text():
    # SMSC +22220000000, first octet 04 (DELIVER, more-messages-to-send off), sender, PID 00,
    # DCS 00, time stamp 26-11-25 10:30:00 zone 0, UDL 5, "Solde".
    hx = "07912222000000F0" "04" "0B912232060000F1" "0000" "62115201030000" "05D3379B5C06"
    m = pdu.decode(hx)
    assert m == {"type": "deliver", "addr": CUSTOMER, "dcs": 0, "ts": 1795602600, "concat": None, "text": "Solde"}


def test_alphanumeric_sender_and_ucs2_deliver():
    alpha = gsm7.pack(gsm7.septets("SOMELEC"))
    # 7 characters = 49 bits = 13 useful semi-octets (TS 23.040 9.1.2.5), type D0 alphanumeric.
    hx = ("00" + "04" + "0D" + "D0" + alpha.hex() + "0008" + "62115201030000" + "08" +
          "0631063506" "4A062F")
    m = pdu.decode(hx)
    assert m["addr"] == "SOMELEC" and m["text"] == "رصيد"


def test_extension_characters_never_split_across_parts():
    text = "x" * 152 + "€" + "y" * 10
    parts = sms.encode(CUSTOMER, text)
    texts = [pdu.decode(h)["text"] for _, h in parts]
    assert "".join(texts) == text and texts[0] == "x" * 152


def test_split_sizes_153_gsm_and_67_ucs2():
    g = sms.encode(CUSTOMER, "a" * 400)
    assert [len(pdu.decode(h)["text"]) for _, h in g] == [153, 153, 94]
    u = sms.encode(CUSTOMER, "ب" * 150)
    assert [len(pdu.decode(h)["text"]) for _, h in u] == [67, 67, 16]
    assert len(sms.encode(CUSTOMER, "a" * 160)) == 1 and len(sms.encode(CUSTOMER, "ب" * 70)) == 1


ARABIC_STATEMENT = ("كشف شهر 2026-10: الاستهلاك 123.4 ك.و.س، المبلغ 4567.89 أوقية، الشحن 5000.00 أوقية. "
                    "الرصيد 1234.50 أوقية.")


def test_arabic_statement_byte_for_byte_in_ucs2():
    text = smstext.render("statement", "ar", month="2026-10", wh=123456, cost=456789, topups=500000, credit=123450)
    assert text == ARABIC_STATEMENT
    parts = sms.encode(CUSTOMER, text, ref=9)
    assert len(parts) == 2
    body = b""
    for n, hx in parts:
        raw = bytes.fromhex(hx)[1:]
        assert len(raw) == n and raw[0] == 0x51 and raw[11] == 0x08  # UDHI, DCS UCS2
        udl = raw[13]
        ud = raw[14:]
        assert udl == len(ud) and ud[:4] == bytes([5, 0, 3, 9])
        body += ud[6:]
    # CPython's own UTF-16BE codec as the independent reference.
    assert body == ARABIC_STATEMENT.encode("utf-16-be")


def test_french_texts_stay_in_gsm7():
    t = smstext.render("low_credit", "fr", credit=995, days=2)
    assert t == "Attention: crédit faible (9,95 MRU), environ 2 jours. Rechargez rapidement."
    assert pdu.decode(sms.encode(CUSTOMER, t)[0][1])["dcs"] == 0
    assert gsm7.septets(smstext.render("topup", "fr", amount=50000, credit=51234)) is not None
    assert gsm7.septets(smstext.render("statement", "fr", month="2026-10", wh=5, cost=1, topups=0, credit=0))


def test_every_french_text_is_gsm7():
    for table in (smstext._TEXT["fr"], smstext._RESULTS["fr"]):
        for k, v in table.items():
            assert gsm7.septets(v) is not None, k


def test_money_formatting_in_mru():
    assert smstext.money(123450, "fr") == "1234,50"
    assert smstext.money(5, "ar") == "0.05"
    assert smstext.money(-1205, "en") == "-12.05"
    assert smstext.money(7, "fr", minor_per_unit=1) == "7"


def deliver(sender, text):
    sep = gsm7.septets(text)
    if sep is not None:
        dcs, udl, ud = 0, len(sep), gsm7.pack(sep)
    else:
        ud = pdu.ucs2(text)
        dcs, udl = 8, len(ud)
    return "00" + (bytes([4]) + pdu.address(sender) + bytes([0, dcs]) + bytes.fromhex("62115201030000") +
                   bytes([udl]) + ud).hex()


class Meter:
    def __init__(self):
        self.tokens = []
        self.commands = []
        self.proto = Protocol(MID, KEY, FakeStore(), lambda e: None, on_command=self.cmd)
        self.svc = sms.SmsService(self.proto, self.token, lambda: (123450, 12), CUSTOMER, [UTILITY], "ar")

    def token(self, digits, source):
        self.tokens.append((digits, source))
        return ("accepted" if len(self.tokens) == 1 else "used"), {}

    def cmd(self, name, args):
        self.commands.append((name, args))
        return "done", {}

    def replies(self):
        out = [(pdu.decode(h)["addr"], pdu.decode(h)["text"], pdu.decode(h)["dcs"]) for _, h in self.svc.outbox]
        self.svc.outbox = []
        return out


def test_token_by_sms_from_any_number_is_entered_and_answered():
    m = Meter()
    assert m.svc.incoming(deliver("+22244556677", "1234-5678 9012-3456 7890")) == "token"
    assert m.tokens == [("12345678901234567890", "sms:+22244556677")]      # its own lockout
    assert m.replies() == [("+22244556677", "الرمز 12345678901234567890: مقبول.", 8)]
    m.svc.incoming(deliver("+22244556677", "123 456 789"))
    assert m.tokens[-1] == ("123456789", "sms:+22244556677") and "مستعمل" in m.replies()[0][1]


def test_balance_query_answered_in_the_language_of_the_request():
    m = Meter()
    m.svc.incoming(deliver(CUSTOMER, "BAL"))
    m.svc.incoming(deliver(CUSTOMER, "solde"))
    m.svc.incoming(deliver(UTILITY, "رصيد"))
    r = m.replies()
    assert r[0] == (CUSTOMER, "Balance: 1234.50 MRU, about 12 days left.", 0)
    assert r[1] == (CUSTOMER, "Solde: 1234,50 MRU, environ 12 jours restants.", 0)
    assert r[2] == (UTILITY, "رصيدك 1234.50 أوقية، يكفي حوالي 12 يوما.", 8)


def test_balance_is_not_told_to_unregistered_numbers_unless_configured():
    m = Meter()
    events = []
    m.svc.emit = lambda k, d: events.append((k, d))
    assert m.svc.incoming(deliver("+22211111111", "BAL")) == "refused"
    assert m.replies() == [], "the credit leaked to a stranger"
    assert events == [("sms_balance_refused", {"from": "+22211111111"})]
    m.svc.balance_from_registered = False          # setting sms_balance_registered_only = 0
    assert m.svc.incoming(deliver("+22211111111", "BAL")) == "balance"
    assert m.replies()[0][0] == "+22211111111"


def test_set_config_and_fw_offer_are_not_accepted_by_sms_even_signed():
    m = Meter()
    for seq, name in ((5, "set_config language=en"), (6, "fw_offer version=9")):
        mac = m.proto.sms_mac(seq, name)
        assert m.svc.incoming(deliver(UTILITY, "CMD %d %s %s" % (seq, name, mac))) == "cmd"
        assert m.replies() == [(UTILITY, "CMD %d: refused why=not_by_sms" % seq, 0)]
    assert m.commands == [], "a command SMS may not carry reached the application: %r" % m.commands
    # the refused command took its seq: replaying it is stale, not a second try
    assert m.svc.incoming(deliver(UTILITY, "CMD 6 fw_offer version=9 %s" % m.proto.sms_mac(6, "fw_offer version=9"))) \
        == "stale"


class Ticks:
    """A board clock's ticks, moved by hand."""

    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    def ticks_add(self, t, d):
        return t + d

    def ticks_diff(self, a, b):
        return a - b


def test_failed_sms_command_macs_are_throttled_per_sender():
    m = Meter()
    clock = m.svc.clock = Ticks()
    events = []
    m.svc.emit = lambda k, d: events.append((k, d))
    m.proto.emit = m.svc.emit
    body = "relay_open"
    outcomes = [m.svc.incoming(deliver(UTILITY, "CMD 7 %s %08x" % (body, guess))) for guess in range(6)]
    # 3 free failures, then 60 s locked: the next guesses are not even checked
    assert outcomes == ["bad_mac"] * 3 + ["throttled"] * 3, outcomes
    assert ("sms_cmd_throttled", {"from": UTILITY, "lock_s": 60}) in events
    good = "CMD 7 %s %s" % (body, m.proto.sms_mac(7, body))
    assert m.svc.incoming(deliver(UTILITY, good)) == "throttled" and m.commands == []
    # another registered sender is not held back by this one's failures
    m.svc.registered = (UTILITY, "+22236000098")
    assert m.svc.incoming(deliver("+22236000098", good)) == "cmd"
    clock.ms += 60_000
    assert m.svc.incoming(deliver(UTILITY, "CMD 8 %s 00000000" % body)) == "bad_mac"
    assert m.svc.incoming(deliver(UTILITY, "CMD 8 %s 00000001" % body)) == "throttled"   # 120 s now
    clock.ms += 120_000
    assert m.svc.incoming(deliver(UTILITY, "CMD 8 %s %s" % (body, m.proto.sms_mac(8, body)))) == "cmd"
    assert m.commands == [("relay_open", {}), ("relay_open", {})]


def test_utility_command_by_sms_needs_registered_number_and_valid_mac():
    m = Meter()
    body = "set_time unix=1795602600"
    mac = m.proto.sms_mac(4, body)
    assert m.svc.incoming(deliver("+22299999999", "CMD 4 %s %s" % (body, mac))) == "refused"
    assert m.svc.incoming(deliver(UTILITY, "CMD 4 %s %s" % (body, "0" * 8))) == "bad_mac"
    assert m.commands == []
    assert m.svc.incoming(deliver(UTILITY, "CMD 4 %s %s" % (body, mac))) == "cmd"
    assert m.commands == [("set_time", {"unix": 1795602600})]
    assert m.replies() == [(UTILITY, "CMD 4: done", 0)]
    assert m.svc.incoming(deliver(UTILITY, "CMD 4 %s %s" % (body, mac))) == "stale"
    assert len(m.commands) == 1


def test_concatenated_incoming_parts_reassembled_in_any_order():
    m = Meter()
    text = "SOLDE"
    parts = []
    for seq, piece in ((2, "DE"), (1, "SOL")):
        udh = pdu.concat_header(33, 2, seq)
        sep = gsm7.septets(piece)
        ud = udh + gsm7.pack(sep, 1)
        parts.append("00" + (bytes([0x44]) + pdu.address(CUSTOMER) + bytes([0, 0]) +
                             bytes.fromhex("62115201030000") + bytes([7 + len(sep)]) + ud).hex())
    assert m.svc.incoming(parts[0]) == "part"
    assert m.svc.incoming(parts[1]) == "balance"
    assert m.replies()[0][1].startswith("Solde:")
    assert text == "SOLDE"


def test_notifications_go_to_the_customer_in_their_language():
    m = Meter()
    m.svc.notify("topup", amount=50000, credit=60000)
    assert m.replies() == [(CUSTOMER, "تم شحن 500.00 أوقية. رصيدك الجديد 600.00 أوقية.", 8)]


def test_outbox_is_bounded():
    m = Meter()
    for _ in range(40):
        m.svc.incoming(deliver(CUSTOMER, "BAL"))
    assert len(m.svc.outbox) == 16 and m.svc.stats["dropped"] == 24


def test_unrelated_texts_are_ignored():
    m = Meter()
    assert m.svc.incoming(deliver("+22211111111", "hello there")) == "ignored"
    assert m.svc.incoming("zz") == "bad"
    assert m.svc.outbox == []


def test_command_answer_carries_the_detail_within_one_text():
    assert sms._detail({}) == ""
    assert sms._detail({"supply": "open"}) == " supply=open"
    d = sms._detail({"current": {"month": "2026-02", "cost": 12}, "last": None, "x": [1]})
    assert d == " current.cost=12 current.month=2026-02 last=None"
    long = sms._detail({"k%02d" % i: "v" * 20 for i in range(20)})
    assert len(long) <= 140 and long.startswith(" k00=") and long.count("=") == len(long.split())


def test_tokens_only_from_registered_numbers_when_configured():
    m = Meter()
    m.svc.tokens_from_registered = True
    events = []
    m.svc.emit = lambda k, d: events.append((k, d))
    assert m.svc.incoming(deliver("+22244556677", "12345678901234567890")) == "refused"
    assert m.tokens == [] and m.replies() == [] and events == [("sms_token_refused", {"from": "+22244556677"})]
    assert m.svc.incoming(deliver(UTILITY, "12345678901234567890")) == "token"
    assert m.svc.incoming(deliver(CUSTOMER, "123456789")) == "token"
    assert m.tokens == [("12345678901234567890", "sms:" + UTILITY), ("123456789", "sms:" + CUSTOMER)]
