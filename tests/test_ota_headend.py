"""Head-end update campaigns (host_tools/headend/ota.py, `meterkit headend ota ...`): stages gated by the
success rate, per-meter states moved by offer results and the meters' ota_* events, pause, resume and
cancel, offers queued for offline meters, and the chunk server answering only meters in a campaign."""
import base64
import hashlib
import hmac
import json
import struct

import pytest
from cli_support import mk

from host_tools.flash import imagegen
from host_tools.headend import ota
from host_tools.headend.demo import make_fleet
from host_tools.headend.store import Store
from host_tools.ota import keys, package


@pytest.fixture(scope="module")
def pkgfile(tmp_path_factory):
    d = tmp_path_factory.mktemp("he-ota")
    keys.generate(d / "k.pem")
    key = keys.load_private(d / "k.pem")
    (d / "p.ota").write_bytes(package.build(imagegen.app(20 * 1024, version="0.2.0"), "sim", "0.2.0", key))
    return d


@pytest.fixture
def he(tmp_path, pkgfile):
    csv_path, _ks, rows = make_fleet(str(tmp_path / "fleet"), 20)
    store = Store(tmp_path / "he.db")
    store.import_csv(csv_path)
    ota.upload(store, pkgfile / "p.ota", [keys.load_public(pkgfile / "k.pub.pem")])
    sent = []
    svc = ota.OtaService(store, lambda t, p: sent.append((t, p)))
    yield store, svc, sent, [r["meter_id"] for r in rows], tmp_path
    store.close()


def meter_event(store, meter_id, kind, **data):
    store.log(meter_id, "meter", kind, {"seq": 1, "ts": 0, "data": data})


def targets(store, cid):
    return {t["meter"]: t for t in ota.status(store, cid)["meters"]}


def offered(store, cid):
    return sorted(m for m, t in targets(store, cid).items() if t["state"] != "pending")


def test_stages_open_one_after_another_when_the_success_rate_holds(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 50, 100), threshold_pct=90)
    svc.tick()
    first = offered(store, cid)
    assert len(first) == 2, first                      # 10 % of 20
    msgs = store.q("SELECT meter_id, body FROM messages WHERE kind='cmd'")
    assert sorted(m["meter_id"] for m in msgs) == first
    body = json.loads(msgs[0]["body"])
    assert body["cmd"] == "fw_offer" and base64.b64decode(body["args"]["offer"])[:8] == package.MAGIC
    for m in first:
        meter_event(store, m, "ota_switch", version="0.2.0")
    svc.tick()
    assert {t["state"] for m, t in targets(store, cid).items() if m in first} == {"installed"}
    assert len(offered(store, cid)) == 2, "the next stage opened before the first finished"
    for m in first:
        meter_event(store, m, "ota_valid", version="0.2.0")
    svc.tick()
    svc.tick()
    assert ota.status(store, cid)["stage"] == 1 and len(offered(store, cid)) == 10


def test_a_stage_below_the_threshold_halts_the_campaign_until_an_operator_resumes_it(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 100), threshold_pct=90)
    svc.tick()
    a, b = offered(store, cid)
    meter_event(store, a, "ota_valid", version="0.2.0")
    meter_event(store, b, "ota_rolled_back", version="0.2.0", reason="not healthy within 600 s: link")
    svc.tick()
    svc.tick()
    st = ota.status(store, cid)
    assert st["state"] == "halted" and "50.0 %" in st["note"], st
    assert targets(store, cid)[b]["state"] == "rolled_back" and "link" in targets(store, cid)[b]["reason"]
    assert len(offered(store, cid)) == 2
    ota.set_state(store, cid, "resume")
    svc.tick()
    assert ota.status(store, cid)["state"] == "running" and len(offered(store, cid)) == 20


def test_refusals_carry_the_meters_result_code_and_a_reset_rollback_is_offered_again(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", ids[:2], stages=(100,))
    svc.tick()
    t = targets(store, cid)
    m1, m2 = sorted(t)
    with store.tx() as db:
        db.execute("UPDATE messages SET code='wrong_board', detail=?, state='done' WHERE msg_id=?",
                   (json.dumps({"why": "for board esp32_atm90e26"}), store.q1(
                       "SELECT msg_id FROM ota_targets WHERE meter_id=?", (m1,))["msg_id"]))
    meter_event(store, m2, "ota_rolled_back", version="0.2.0", reason="reset before the new image proved itself")
    svc.tick()
    t = targets(store, cid)
    assert t[m1]["state"] == "refused" and t[m1]["code"] == "wrong_board", t[m1]
    assert t[m2]["state"] == "offered", "a rollback caused by a reset must be offered again"
    assert store.q1("SELECT COUNT(*) AS n FROM messages WHERE meter_id=? AND kind='cmd'", (m2,))["n"] == 2


def test_pause_stops_new_offers_and_cancel_drops_the_meters_not_yet_offered(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 100), threshold_pct=0)
    ota.set_state(store, cid, "pause")
    svc.tick()
    assert offered(store, cid) == []
    ota.set_state(store, cid, "resume")
    svc.tick()
    assert len(offered(store, cid)) == 2
    st = ota.set_state(store, cid, "cancel")
    assert st["state"] == "cancelled" and st["counts"]["cancelled"] == 20
    svc.tick()
    # the two offers were still in the outbox (never delivered): withdrawn with the rest
    assert ota.status(store, cid)["counts"] == {"cancelled": 20}
    assert store.q1("SELECT COUNT(*) AS n FROM messages WHERE kind='cmd'")["n"] == 2, "a cancelled meter was offered"
    with pytest.raises(Exception) as e:
        ota.set_state(store, cid, "resume")
    assert "cancelled" in str(e.value)


def test_an_offline_meter_keeps_its_offer_queued_until_it_returns(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", [ids[3]], stages=(100,))
    svc.tick()
    msg = store.q1("SELECT state FROM messages WHERE meter_id=?", (ids[3],))
    assert msg["state"] == "pending" and targets(store, cid)[ids[3]]["state"] == "offered"


def test_chunks_are_served_only_to_meters_in_a_campaign_with_a_mac_under_their_key(he):
    store, svc, sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", [ids[0]], stages=(100,))
    svc.tick()
    sha = ota.status(store, cid)["sha256"]
    assert svc.on_request(ids[0], ("%s 1024 1024" % sha[:8]).encode())
    topic, payload = sent[-1]
    fc, sha8, off, b64, mac = payload.split(b" ")
    data = base64.b64decode(b64)
    pkg = package.parse(bytes(store.q1("SELECT blob FROM ota_packages")["blob"]))
    assert topic == "meters/%s/fw" % ids[0] and fc == b"FC" and int(off) == 1024 and data == pkg.image[1024:2048]
    key = bytes.fromhex(store.meter(ids[0])["message_key_hex"])
    assert bytes.fromhex(mac.decode()) == hmac.new(key, b"fw" + sha8 + struct.pack("<I", 1024) + data,
                                                   hashlib.sha256).digest()[:8]
    assert b"\r" not in payload and b"\n" not in payload
    assert targets(store, cid)[ids[0]]["state"] == "downloading" and targets(store, cid)[ids[0]]["bytes"] == 2048
    n = len(sent)
    assert not svc.on_request(ids[1], ("%s 0 1024" % sha[:8]).encode()), "a meter outside the campaign got a chunk"
    assert not svc.on_request(ids[0], ("%s %d 1024" % (sha[:8], len(pkg.image))).encode()), "past the end"
    assert not svc.on_request(ids[0], b"junk")
    assert len(sent) == n


def test_headend_ota_verbs(he, pkgfile):
    store, _svc, _sent, ids, tmp = he
    store.close()
    db = str(tmp / "he.db")
    r = mk("headend", "ota", "upload", str(pkgfile / "p.ota"), "--trust", str(pkgfile / "k.pub.pem"), "--db", db, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == "0.2.0", r.stderr
    r = mk("headend", "ota", "campaign", "start", "0.2.0", "--meters", ",".join(ids[:4]), "--stages", "25,100",
           "--db", db, "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["state"] == "running" and out["counts"] == {"pending": 4}, r.stderr
    cid = str(out["id"])
    for verb, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        r = mk("headend", "ota", "campaign", verb, cid, "--db", db, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["state"] == state, (verb, r.stderr)
    r = mk("headend", "ota", "status", "--db", db, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["campaigns"][0]["state"] == "cancelled"
    r = mk("headend", "ota", "campaign", "start", "9.9.9", "--db", db)
    assert r.returncode == 2 and "no uploaded package" in r.stderr and "Traceback" not in r.stderr
    r = mk("headend", "ota", "campaign", "start", "0.2.0", "--meters", "nosuch", "--db", db)
    assert r.returncode == 2 and "unknown meter" in r.stderr
    r = mk("headend", "ota", "campaign", "start", "0.2.0", "--stages", "50,20", "--db", db)
    assert r.returncode == 2 and "stages" in r.stderr


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_a_stage_where_no_meter_finished_halts_at_its_timeout_instead_of_opening_the_next(he):
    """Audit of issue 14: 10 meters, stages 10,100, the one stage-0 meter never answered; after 24 h the
    success rate defaulted to 100 % and all 10 were offered."""
    store, svc, _sent, ids, _ = he
    store.clock = clock = Clock()
    cid = ota.start_campaign(store, "0.2.0", ids[:10], stages=(10, 100), threshold_pct=90)
    svc.tick()
    assert len(offered(store, cid)) == 1
    clock.t += 86400
    svc.tick()
    st = ota.status(store, cid)
    assert st["state"] == "halted" and st["stage"] == 0, st
    assert "no meter" in st["note"] and "0 of 1" in st["note"], st["note"]
    svc.tick()
    assert len(offered(store, cid)) == 1, "a stage without evidence opened the next one"


def test_a_stage_where_every_meter_refused_halts_the_campaign(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 100), threshold_pct=90)
    svc.tick()
    for m in offered(store, cid):
        meter_event(store, m, "ota_refused", version="0.2.0", code="bad_signature", why="key not trusted")
    svc.tick()
    svc.tick()
    st = ota.status(store, cid)
    assert st["state"] == "halted" and "refused" in st["note"], st
    assert len(offered(store, cid)) == 2


def test_a_stage_needs_a_valid_install_even_with_a_zero_threshold(he):
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 100), threshold_pct=0)
    svc.tick()
    for m in offered(store, cid):
        meter_event(store, m, "ota_failed", version="0.2.0", code="hash_mismatch", why="slot hashes to 00")
    svc.tick()
    svc.tick()
    st = ota.status(store, cid)
    assert st["state"] == "halted" and "0.0 %" in st["note"], st
    assert len(offered(store, cid)) == 2


def test_a_success_rate_equal_to_the_threshold_lets_the_stage_proceed(he):
    """docs/ota.md: a stage proceeds when the share valid is at least the threshold (rate >= threshold)."""
    store, svc, _sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", "all", stages=(10, 100), threshold_pct=50)
    svc.tick()
    a, b = offered(store, cid)
    meter_event(store, a, "ota_valid", version="0.2.0")
    meter_event(store, b, "ota_rolled_back", version="0.2.0", reason="not healthy within 600 s: link")
    svc.tick()
    svc.tick()
    st = ota.status(store, cid)
    assert st["state"] == "running" and st["stage"] == 1 and len(offered(store, cid)) == 20, st


def test_cancel_withdraws_offers_not_taken_and_serves_meters_that_took_one_to_the_end(he):
    """Audit of issue 14: cancel marked only pending targets; queued fw_offers stayed in the outbox, so an
    offline meter returning later accepted an offer nobody served and answered `busy` for 6 h."""
    store, svc, sent, ids, _ = he
    cid = ota.start_campaign(store, "0.2.0", ids[:4], stages=(100,))
    svc.tick()
    sha8 = ota.status(store, cid)["sha256"][:8]
    took, mid_dl, queued, sent_unanswered = sorted(targets(store, cid))
    msg = {m: store.q1("SELECT msg_id FROM ota_targets WHERE meter_id=?", (m,))["msg_id"] for m in ids[:4]}
    with store.tx() as db:
        db.execute("UPDATE messages SET state='done', code='accepted' WHERE msg_id IN (?,?)", (msg[took], msg[mid_dl]))
        db.execute("UPDATE messages SET state='sent', attempts=1 WHERE msg_id=?", (msg[sent_unanswered],))
    assert svc.on_request(mid_dl, ("%s 0 1024" % sha8).encode())
    st = ota.set_state(store, cid, "cancel")
    t = targets(store, cid)
    assert t[queued]["state"] == t[sent_unanswered]["state"] == "cancelled", t
    assert t[took]["state"] == "offered" and t[mid_dl]["state"] == "downloading", t
    assert "2 offers withdrawn" in st["note"], st["note"]
    left = store.q("SELECT msg_id FROM messages WHERE kind='cmd' AND state!='done'")
    assert left == [], "an offer of a cancelled campaign is still in the outbox"
    for m in (queued, sent_unanswered):
        row = store.q1("SELECT code FROM messages WHERE msg_id=?", (msg[m],))
        assert row["code"] == "withdrawn", row
    # meters that took it are served to the end and followed
    n = len(sent)
    assert svc.on_request(mid_dl, ("%s 1024 1024" % sha8).encode())
    assert svc.on_request(took, ("%s 0 1024" % sha8).encode())
    # the broker held the sent offer: the meter took it after all, and is served rather than left busy
    assert svc.on_request(sent_unanswered, ("%s 0 1024" % sha8).encode())
    assert len(sent) == n + 3
    meter_event(store, mid_dl, "ota_switch", version="0.2.0")
    meter_event(store, mid_dl, "ota_valid", version="0.2.0")
    meter_event(store, took, "ota_rolled_back", version="0.2.0", reason="reset before the new image proved itself")
    svc.tick()
    t = targets(store, cid)
    assert t[mid_dl]["state"] == "valid" and t[sent_unanswered]["state"] == "downloading", t
    assert t[took]["state"] == "rolled_back", "a cancelled campaign offered again after a reset rollback"
    assert ota.status(store, cid)["state"] == "cancelled"
    assert store.q1("SELECT COUNT(*) AS n FROM messages WHERE kind='cmd'")["n"] == 4, "a cancelled campaign offered"
