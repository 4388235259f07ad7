"""SMS through the simulated modem and SMS centre: delivery with +CMTI and AT+CMGR in PDU and text
mode, sending with AT+CMGS in both modes, concatenated UCS2 Arabic reassembled exactly, GSM 7-bit
packing with extension characters and UDH fill bits, and errors the modem reports."""
import pytest

from host_tools.sim.modem import sms_pdu
from host_tools.sim.modem.smsc import SMSC
from test_sim_modem import ATClient

ARABIC = ("رصيدك الحالي هو ١٢٣٫٤٥ أوقية. الأيام المتبقية المقدرة: ٦. "
          "شكراً لاستخدامكم خدمة الدفع المسبق للكهرباء. للاستفسار اتصلوا بنا على الرقم المجاني.")
CUSTOMER = "+22236123456"


def ready(**kw):
    c = ATClient(**kw)
    c.boot()
    return c


def cmti_indices(c, n=1, timeout_ms=5000):
    end = c.now + timeout_ms
    while c.now < end and c.rx.count(b"+CMTI:") < n:
        c.advance(20)
    return [int(ln.split(",")[1]) for ln in c.lines() if ln.startswith('+CMTI: "SM",')]


def cmti_index(c, timeout_ms=5000):
    (idx,) = cmti_indices(c, 1, timeout_ms)
    return idx


def test_incoming_sms_pdu_mode_cmti_cmgr_cmgd():
    c = ready()
    assert c.at("AT+CMGF=0")[-1] == "OK" and c.at("AT+CNMI=2,1,0,0,0")[-1] == "OK"
    c.m.smsc.deliver("+22245000001", "BAL", unix_s=1767571200)
    idx = cmti_index(c)
    lines = c.at(f"AT+CMGR={idx}")
    head, pdu_hex = lines[0], lines[1]
    assert head.startswith("+CMGR: 0,,")
    pdu = bytes.fromhex(pdu_hex)
    tpdu = pdu[1 + pdu[0]:]
    assert int(head.split(",")[-1]) == len(tpdu)
    # SMS-DELIVER fields, parsed here by hand: sender, DCS 0, timestamp 26-01-05 00:00:00, "BAL"
    assert tpdu[0] & 0x03 == 0
    num, i = sms_pdu.decode_address(tpdu, 1)
    assert num == "+22245000001"
    assert tpdu[i + 1] == 0x00 and tpdu[i + 2:i + 9].hex() == "62105000000000"
    udl = tpdu[i + 9]
    assert sms_pdu.gsm7_text(sms_pdu.unpack_septets(tpdu[i + 10:], udl)) == "BAL"
    assert c.at(f"AT+CMGR={idx}")[0].startswith("+CMGR: 1,,")   # now read
    assert c.at(f"AT+CMGD={idx}")[-1] == "OK"
    assert c.at(f"AT+CMGR={idx}") == ["OK"]


def test_incoming_long_ucs2_arrives_as_concatenated_parts_with_udh():
    c = ready()
    c.at("AT+CMGF=0")
    c.at("AT+CNMI=2,1")
    n = c.m.smsc.deliver("+22245000001", ARABIC)
    assert n == 3
    texts = {}
    indices = cmti_indices(c, n)
    assert len(indices) == 3
    for idx in indices:
        lines = c.at(f"AT+CMGR={idx}")
        pdu = bytes.fromhex(lines[1])
        tpdu = pdu[1 + pdu[0]:]
        assert tpdu[0] & 0x40                                   # UDHI
        num, i = sms_pdu.decode_address(tpdu, 1)
        ud = tpdu[i + 10:]
        ies = sms_pdu.parse_udh(ud[1:1 + ud[0]])
        ref, total, seq = ies[0x00]
        assert total == 3
        texts[seq] = ud[1 + ud[0]:].decode("utf-16-be")
    assert "".join(texts[i] for i in (1, 2, 3)) == ARABIC


def test_incoming_sms_text_mode_ucs2_charset():
    c = ready()
    c.at("AT+CMGF=1")
    c.at('AT+CSCS="UCS2"')
    c.at("AT+CNMI=2,1")
    c.m.smsc.deliver("+22245000001", "رصيد")
    idx = cmti_index(c)
    lines = c.at(f"AT+CMGR={idx}")
    parts = lines[0].split(",")
    assert parts[0] == '+CMGR: "REC UNREAD"'
    assert bytes.fromhex(parts[1].strip('"')).decode("utf-16-be") == "+22245000001"
    assert bytes.fromhex(lines[1]).decode("utf-16-be") == "رصيد"
    c.at('AT+CSCS="IRA"')
    c.m.smsc.deliver("+22245000001", "SOLDE")
    idx = cmti_index(c)
    assert c.at(f"AT+CMGR={idx}")[1] == "SOLDE"


def send_pdu(c, tpdu):
    c.take()
    c.send_raw(f"AT+CMGS={len(tpdu)}\r".encode())
    c.wait_for("> ")
    c.send_raw(("00" + tpdu.hex().upper()).encode() + b"\x1a")
    return wait_final(c)


def wait_final(c, timeout_ms=8000):
    end = c.now + timeout_ms
    while c.now < end:
        c.advance(50)
        if c.rx.endswith(b"OK\r\n") or b"ERROR" in c.rx:
            return c.lines()
    raise AssertionError(bytes(c.rx))


def test_outgoing_pdu_mode_concatenated_ucs2_arabic_reassembled_exactly():
    c = ready()
    c.at("AT+CMGF=0")
    parts = sms_pdu.split_text(ARABIC, sms_pdu.DCS_UCS2)
    assert len(parts) == 3
    mrs = []
    for i, part in enumerate(parts):
        udh = bytes([0x08, 0x04, 0x12, 0x34, len(parts), i + 1])     # 16-bit reference this time
        lines = send_pdu(c, sms_pdu.submit_pdu(CUSTOMER, part, sms_pdu.DCS_UCS2, mr=0, udh=udh))
        assert lines[-1] == "OK"
        mrs.append(int(next(ln for ln in lines if ln.startswith("+CMGS:")).split()[1]))
    assert len(set(mrs)) == 3
    (msg,) = c.m.smsc.sent
    assert msg.to == CUSTOMER and msg.text == ARABIC and msg.parts == 3 and msg.encoding == "ucs2"


def test_outgoing_pdu_mode_gsm7_with_extension_chars_and_udh_fill_bits():
    c = ready()
    c.at("AT+CMGF=0")
    text = "Solde: 12,50 € [reçu] " + "x" * 150 + " {fin}"
    parts = sms_pdu.split_text(text.replace("ç", "c"), sms_pdu.DCS_GSM7)
    assert len(parts) == 2
    for i, part in enumerate(parts):
        udh = bytes([0x00, 0x03, 0x55, 2, i + 1])
        assert send_pdu(c, sms_pdu.submit_pdu(CUSTOMER, part, sms_pdu.DCS_GSM7, udh=udh))[-1] == "OK"
    assert c.m.smsc.sent[0].text == text.replace("ç", "c") and c.m.smsc.sent[0].encoding == "gsm7"


def test_outgoing_text_mode_numbered_parts_in_ucs2():
    c = ready()
    c.at("AT+CMGF=1")
    c.at('AT+CSCS="UCS2"')
    c.at("AT+CSMP=17,167,0,8")
    parts = sms_pdu.split_text(ARABIC, sms_pdu.DCS_UCS2)
    num_hex = CUSTOMER.encode("utf-16-be").hex().upper()
    for i, part in enumerate(parts):
        c.take()
        c.send_raw(f'AT+CMGS="{num_hex}"\r'.encode())
        c.wait_for("> ")
        body = f"({i + 1}/{len(parts)}) " + part
        c.send_raw(body.encode("utf-16-be").hex().upper().encode() + b"\x1a")
        assert wait_final(c)[-1] == "OK"
    (msg,) = c.m.smsc.sent
    assert msg.text == ARABIC and msg.mode == "text" and msg.encoding == "ucs2" and msg.to == CUSTOMER


def test_outgoing_text_mode_plain_ira():
    c = ready()
    c.at("AT+CMGF=1")
    c.send_raw(b'AT+CMGS="+22236123456"\r')
    c.wait_for("> ")
    c.send_raw(b"Credit faible: 2 jours\x1a")
    assert wait_final(c)[-1] == "OK"
    assert c.m.smsc.sent[0].text == "Credit faible: 2 jours" and c.m.smsc.sent[0].encoding == "gsm7"


def test_bad_pdu_and_no_service_are_cms_errors():
    c = ready()
    c.at("AT+CMGF=0")
    tpdu = sms_pdu.submit_pdu(CUSTOMER, "hello")
    c.send_raw(f"AT+CMGS={len(tpdu) + 3}\r".encode())          # wrong length
    c.wait_for("> ")
    c.send_raw(("00" + tpdu.hex()).encode() + b"\x1a")
    assert any(ln.startswith("+CMS ERROR: 304") for ln in wait_final(c))
    c.m.set_coverage(False)
    c.send_raw(f"AT+CMGS={len(tpdu)}\r".encode())
    c.wait_for("> ")
    c.send_raw(("00" + tpdu.hex()).encode() + b"\x1a")
    assert any(ln.startswith("+CMS ERROR: 331") for ln in wait_final(c))
    assert c.m.smsc.sent == []


def test_sms_waits_in_centre_until_registered():
    c = ATClient()
    c.m.smsc.deliver("+22245000001", "BAL")
    c.boot()
    c.at("AT+CNMI=2,1")
    c.advance(200)
    assert c.m.smsc.inbound == [] and len(c.m._sim) == 1
    assert any(ln.startswith("+CMGL: 0,0,,") for ln in c.at("AT+CMGL=4"))


@pytest.mark.parametrize("text", ["@£$¥ èé ΔΦ ^{}\\[~]|€", "a" * 160, "a" * 161, "é" * 70, "é€" * 40])
def test_gsm7_and_ucs2_roundtrip_through_submit_decoder(text):
    dcs = sms_pdu.choose_dcs(text)
    parts = sms_pdu.split_text(text, dcs)
    smsc = SMSC()
    for i, part in enumerate(parts):
        udh = bytes([0, 3, 9, len(parts), i + 1]) if len(parts) > 1 else b""
        smsc.submit_pdu(sms_pdu.submit_pdu(CUSTOMER, part, dcs, udh=udh))
    assert [m.text for m in smsc.sent] == [text]


def test_known_gsm7_packing_vector():
    # "hellohello" packs to the textbook septet sequence
    assert sms_pdu.pack_septets(sms_pdu.gsm7_codes("hellohello")).hex() == "e8329bfd4697d9ec37"


# -- the firmware's own SMS code against this independent model (both directions) --------------------
def test_firmware_encoder_output_decoded_exactly_by_smsc():
    fw_sms = pytest.importorskip("comms.sms")
    c = ready()
    c.at("AT+CMGF=0")
    for text in (ARABIC, "Recharge de 500,00 MRU acceptée. Nouveau solde: 600,00 MRU. " * 3, "Solde"):
        for n, hexpdu in fw_sms.encode(CUSTOMER, text, ref=5):
            c.take()
            c.send_raw(f"AT+CMGS={n}\r".encode())
            c.wait_for("> ")
            c.send_raw(hexpdu.encode() + b"\x1a")
            assert wait_final(c)[-1] == "OK", c.m.smsc.errors
    assert [m.text for m in c.m.smsc.sent] == [ARABIC, "Recharge de 500,00 MRU acceptée. Nouveau solde: "
                                               "600,00 MRU. " * 3, "Solde"]
    assert c.m.smsc.errors == []


def test_smsc_deliver_pdus_decoded_by_firmware():
    fw_pdu = pytest.importorskip("comms.pdu")
    smsc = SMSC()
    smsc.deliver("+22245000001", ARABIC, unix_s=1767571200)
    got = {}
    for m in smsc.take_inbound():
        d = fw_pdu.decode(m["pdu"].hex())
        assert d is not None and d["addr"] == "+22245000001"
        got[d["concat"][2]] = d["text"]
    assert "".join(got[i] for i in sorted(got)) == ARABIC
