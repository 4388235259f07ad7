"""Firmware updates from the head-end: packages, campaigns in stages, per-meter states, and the chunk
server meters download from (docs/ota.md).

Schema: its own tables (`ota_packages`, `ota_campaigns`, `ota_targets`), created beside the head-end's
(`ensure_schema`), so the core store's migrations stay untouched. Delivery of the offer rides the head-end's
outbox (`fw_offer`, signed, retried, queued for meters that are offline until they return); the meter's
`ota_*` events (logged by the head-end's ingest) move each target's state; chunk requests on
`meters/<id>/fwreq` are answered on `meters/<id>/fw`, each chunk MACed with that meter's message key.

Per-meter states: pending (not yet offered: a later stage) -> offered -> downloading (bytes) ->
installed (switched, proving itself) -> valid | rolled_back (reason) | refused (result code) | failed;
cancelled (the campaign cancelled before the meter took its offer)."""
import base64
import hashlib
import hmac
import json
import math
import struct

from host_tools.errors import UsageError
from host_tools.ota import keys, package

FINAL = ("valid", "rolled_back", "refused", "failed", "cancelled")
ATTEMPTS = 3            # offers per meter when a rollback came from a reset (a power cut in the trial)
RESET_ROLLBACK = "reset before"   # how the meter words a rollback no health check asked for
REQUEST_FILTER = "meters/+/fwreq"


def ensure_schema(store):
    """The OTA tables come with the store's migrations (store.py, version 7): nothing to do."""
    return None


def upload(store, path, trusted):
    """Check a package as a meter would (signature by a trusted key, image hash) and keep it."""
    ensure_schema(store)
    pkg = package.read(path)
    package.check(pkg, trusted)
    h = pkg.header
    blob = package.MAGIC + pkg.offer[8:] + pkg.image
    with store.tx() as db:
        db.execute("INSERT OR IGNORE INTO ota_packages (sha256, version, board, header, blob, uploaded) VALUES "
                   "(?,?,?,?,?,?)", (h["sha256"], h["version"], h["board"], pkg.header_bytes.decode(), blob,
                                     store.clock()))
    return {"sha256": h["sha256"], "version": h["version"], "board": h["board"], "size": h["size"]}


def _package(store, ref):
    rows = store.q("SELECT * FROM ota_packages WHERE sha256 LIKE ? OR version=?", (ref + "%", ref))
    if len(rows) != 1:
        raise UsageError(f"{'no' if not rows else 'more than one'} uploaded package matches {ref!r}",
                         hint="give the version or the SHA-256 `headend ota upload` printed")
    return rows[0]


def _order(campaign_key, meter_id):
    return hashlib.sha256((campaign_key + meter_id).encode()).hexdigest()


def start_campaign(store, ref, meters="all", share=100.0, stages=(1, 10, 100), threshold_pct=95.0,
                   stage_timeout_s=86400.0):
    """A campaign for `meters` ("all" or a list of ids), a `share` % of them, rolled out in `stages`
    (cumulative % of the targets); returns its id."""
    ensure_schema(store)
    pkg = _package(store, ref)
    stages = [float(s) for s in stages]
    if not stages or any(not 0 < s <= 100 for s in stages) or stages != sorted(stages) or stages[-1] != 100:
        raise UsageError(f"stages {stages} must rise and end at 100 (% of the targets)", hint="e.g. 1,10,100")
    if not 0 < share <= 100 or not 0 <= threshold_pct <= 100:
        raise UsageError("share must be in (0, 100] and threshold in [0, 100]")
    ids = [r["meter_id"] for r in store.meters()] if meters == "all" else list(meters)
    for m in ids:
        store.meter(m)              # unknown ids are refused before anything is written
    key = pkg["sha256"]
    ids.sort(key=lambda m: _order(key, m))
    ids = ids[:max(1, math.ceil(len(ids) * share / 100.0))] if ids else []
    if not ids:
        raise UsageError("no meters to update", hint="import meters first, or name them with --meters")
    now = store.clock()
    with store.tx() as db:
        cid = db.execute("INSERT INTO ota_campaigns (sha256, state, stages, stage, threshold_pct, stage_started, "
                         "stage_timeout_s, created) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                         (key, "running", json.dumps(stages), 0, threshold_pct, now, stage_timeout_s, now)
                         ).fetchone()[0]
        for i, m in enumerate(ids):
            stage = next(k for k, s in enumerate(stages) if i < math.ceil(len(ids) * s / 100.0))
            db.execute("INSERT INTO ota_targets (campaign_id, meter_id, stage, state, updated) VALUES (?,?,?,?,?)",
                       (cid, m, stage, "pending", now))
    return cid


def set_state(store, cid, action):
    """pause | resume | cancel a campaign."""
    ensure_schema(store)
    row = store.q1("SELECT state FROM ota_campaigns WHERE id=?", (cid,))
    if row is None:
        raise UsageError(f"no campaign {cid}", hint="`meterkit headend ota status` lists them")
    allowed = {"pause": ("running",), "resume": ("paused", "halted"), "cancel": ("running", "paused", "halted")}
    if row["state"] not in allowed[action]:
        raise UsageError(f"campaign {cid} is {row['state']}: cannot {action} it")
    new = {"pause": "paused", "resume": "running", "cancel": "cancelled"}[action]
    c = store.q1("SELECT stage, stages FROM ota_campaigns WHERE id=?", (cid,))
    with store.tx() as db:
        if action == "resume" and row["state"] == "halted" and c["stage"] + 1 < len(json.loads(c["stages"])):
            # the operator looked at the halted stage and lets the rollout go on
            db.execute("UPDATE ota_campaigns SET stage=stage+1 WHERE id=?", (cid,))
        db.execute("UPDATE ota_campaigns SET state=?, note=NULL, stage_started=CASE WHEN ?='running' THEN ? "
                   "ELSE stage_started END WHERE id=?", (new, new, store.clock(), cid))
        if new == "cancelled":
            _cancel(store, db, cid)
    return status(store, cid)


def _cancel(store, db, cid):
    """Withdraw what the meters have not taken: targets not yet offered, and offers still in the outbox
    (not answered: queued for an offline meter, or sent with no result) are dropped from it, those
    targets cancelled. A meter has no way to drop an offer it took (no cancel command on the meter), so
    meters that accepted it or are downloading are served to the end and followed (`tick`); a withdrawn
    offer the meter got after all (the broker held it) shows as a chunk request and is served too
    (`on_request`), never left `busy` for the 6 hours until it abandons the download."""
    now = store.clock()
    why = "campaign %d cancelled" % cid
    withdrawn = 0
    for t in db.execute("SELECT t.meter_id, t.msg_id FROM ota_targets t JOIN messages m ON m.msg_id=t.msg_id WHERE "
                        "t.campaign_id=? AND t.state='offered' AND m.state!='done' FOR UPDATE", (cid,)).fetchall():
        db.execute("UPDATE messages SET state='done', code='withdrawn', detail=?, done_at=? WHERE msg_id=?",
                   (json.dumps({"why": why}), now, t["msg_id"]))
        db.execute("UPDATE ota_targets SET state='cancelled', reason='offer withdrawn', updated=? WHERE "
                   "campaign_id=? AND meter_id=?", (now, cid, t["meter_id"]))
        store.log(t["meter_id"], "headend", "command_withdrawn", {"msg_id": t["msg_id"], "cmd": "fw_offer",
                                                                  "why": why}, db=db)
        withdrawn += 1
    db.execute("UPDATE ota_targets SET state='cancelled', reason='not offered', updated=? WHERE campaign_id=? AND "
               "state='pending'", (now, cid))
    served = db.execute("SELECT COUNT(*) AS n FROM ota_targets WHERE campaign_id=? AND state IN "
                        "('offered','downloading','installed')", (cid,)).fetchone()["n"]
    db.execute("UPDATE ota_campaigns SET note=? WHERE id=?",
               ("cancelled: %d offers withdrawn, %d meters that took it served to the end" % (withdrawn, served), cid))


def status(store, cid=None):
    ensure_schema(store)
    rows = store.q("SELECT * FROM ota_campaigns" + (" WHERE id=?" if cid is not None else "") + " ORDER BY id",
                   (cid,) if cid is not None else ())
    if cid is not None and not rows:
        raise UsageError(f"no campaign {cid}", hint="`meterkit headend ota status` lists them")
    out = []
    for c in rows:
        pkg = store.q1("SELECT version FROM ota_packages WHERE sha256=?", (c["sha256"],))
        targets = store.q("SELECT * FROM ota_targets WHERE campaign_id=? ORDER BY meter_id", (c["id"],))
        counts = {}
        for t in targets:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        out.append({"id": c["id"], "version": pkg["version"] if pkg else None, "sha256": c["sha256"],
                    "state": c["state"], "stage": c["stage"], "stages": json.loads(c["stages"]),
                    "threshold_pct": c["threshold_pct"], "note": c["note"], "counts": counts,
                    "meters": [{"meter": t["meter_id"], "stage": t["stage"], "state": t["state"], "bytes": t["bytes"],
                                "code": t["code"], "reason": t["reason"]} for t in targets]})
    return {"campaigns": out} if cid is None else out[0]


class OtaService:
    """Runs the campaigns (`tick`, called on the head-end's loop) and serves chunks (`on_request`).
    `publish(topic, payload)` sends on the broker."""

    def __init__(self, store, publish, rng=None):
        self.store = store
        self.publish = publish
        self.rng = rng
        self.stats = {"chunks": 0, "chunk_bytes": 0, "offers": 0, "requests_refused": 0}
        self._pkg_cache = {}
        ensure_schema(store)

    # -- chunks ------------------------------------------------------------------------------------
    def _blob(self, sha):
        b = self._pkg_cache.get(sha)
        if b is None:
            row = self.store.q1("SELECT blob FROM ota_packages WHERE sha256=?", (sha,))
            if row is None:
                return None
            b = self._pkg_cache[sha] = package.parse(bytes(row["blob"]))
        return b

    def on_request(self, meter_id, payload):
        """A meter asks "SHA8 OFFSET LENGTH": answer with that chunk if it is in a campaign for it."""
        try:
            sha8, off, n = payload.decode().split()
            off, n = int(off), int(n)
        except (ValueError, UnicodeDecodeError):
            self.stats["requests_refused"] += 1
            return False
        t = self.store.q1("SELECT t.campaign_id, c.sha256, m.message_key_hex FROM ota_targets t JOIN ota_campaigns c "
                          "ON c.id=t.campaign_id JOIN meters m ON m.meter_id=t.meter_id WHERE t.meter_id=? AND "
                          "c.sha256 LIKE ? AND (t.state IN ('offered','downloading') OR (t.state='cancelled' AND "
                          "t.msg_id IS NOT NULL)) ORDER BY t.state='cancelled', t.campaign_id DESC",
                          (meter_id, sha8 + "%"))
        # (a cancelled campaign's meters that took the offer are served to the end: the meter has no
        # cancel, and one refused its chunks would answer `busy` to every offer until it gave up)
        pkg = self._blob(t["sha256"]) if t else None
        if pkg is None or off < 0 or not 0 < n <= 4096 or off + n > len(pkg.image):
            self.stats["requests_refused"] += 1
            return False
        data = pkg.image[off:off + n]
        key = bytes.fromhex(t["message_key_hex"])
        mac = hmac.new(key, b"fw" + sha8.encode() + struct.pack("<I", off) + data, hashlib.sha256).digest()[:8]
        # text, no CR/LF: a modem in transparent mode watches the stream for "\r\nCLOSED\r\n"
        self.publish("meters/%s/fw" % meter_id, b"FC %s %d %s %s" % (sha8.encode(), off, base64.b64encode(data),
                                                                      mac.hex().encode()))
        self.stats["chunks"] += 1
        self.stats["chunk_bytes"] += n
        with self.store.tx() as db:
            db.execute("UPDATE ota_targets SET state='downloading', bytes=?, updated=?, reason=CASE WHEN "
                       "state='cancelled' THEN 'took the offer before it was withdrawn' ELSE reason END WHERE "
                       "campaign_id=? AND meter_id=? AND state IN ('offered','downloading','cancelled')",
                       (off + n, self.store.clock(), t["campaign_id"], meter_id))
        return True

    # -- campaigns ---------------------------------------------------------------------------------
    def tick(self):
        # a cancelled campaign is followed while meters that took its offer are still on their way
        for c in self.store.q("SELECT * FROM ota_campaigns c WHERE state IN ('running','paused','halted') OR "
                              "(state='cancelled' AND EXISTS (SELECT 1 FROM ota_targets t WHERE t.campaign_id=c.id "
                              "AND t.state IN ('offered','downloading','installed')))"):
            self._follow(c)
            if c["state"] == "running":
                self._advance(c)

    def _follow(self, c):
        """Move targets by the results of their offers and by the meters' ota_* events."""
        pkg_version = json.loads(self.store.q1("SELECT header FROM ota_packages WHERE sha256=?",
                                               (c["sha256"],))["header"])["version"]
        now = self.store.clock()
        for t in self.store.q("SELECT * FROM ota_targets WHERE campaign_id=? AND state NOT IN "
                              "('pending','valid','refused','cancelled')", (c["id"],)):
            new, code, reason = t["state"], t["code"], t["reason"]
            if t["msg_id"] and t["state"] == "offered":
                m = self.store.q1("SELECT code, detail FROM messages WHERE msg_id=?", (t["msg_id"],))
                if m and m["code"] and m["code"] != "accepted" and m["code"] != "fault":
                    new, code = "refused", m["code"]
                    reason = (json.loads(m["detail"] or "{}") or {}).get("why")
            last = t["last_event"]
            for e in self.store.q("SELECT id, kind, data FROM events WHERE meter_id=? AND id>? AND kind LIKE 'ota_%' "
                                  "ORDER BY id", (t["meter_id"], t["last_event"])):
                last = e["id"]
                d = (json.loads(e["data"]).get("data") or {})
                if d.get("version") not in (None, pkg_version) and e["kind"] != "ota_rolled_back":
                    continue
                k = e["kind"]
                if k == "ota_switch":
                    new = "installed"
                elif k == "ota_valid" and d.get("version") == pkg_version:
                    new, code, reason = "valid", None, None
                elif k == "ota_rolled_back" and d.get("version") == pkg_version:
                    new, reason = "rolled_back", d.get("reason")
                    if str(reason).startswith(RESET_ROLLBACK) and t["attempts"] < ATTEMPTS and \
                            c["state"] != "cancelled":
                        new = "pending"      # a cut, not the image: offered again (its slot keeps the image)
                elif k == "ota_failed":
                    new, code, reason = "failed", d.get("code"), d.get("why")
                elif k == "ota_refused" and new == "offered":
                    new, code, reason = "refused", d.get("code"), d.get("why")
            if (new, code, reason, last) != (t["state"], t["code"], t["reason"], t["last_event"]):
                with self.store.tx() as db:
                    db.execute("UPDATE ota_targets SET state=?, code=?, reason=?, last_event=?, updated=? WHERE "
                               "campaign_id=? AND meter_id=?", (new, code, reason, last, now, c["id"], t["meter_id"]))

    def _advance(self, c):
        from host_tools.headend import vending
        stages = json.loads(c["stages"])
        stage = c["stage"]
        now = self.store.clock()
        pkg = self._blob(c["sha256"])
        offer = base64.b64encode(pkg.offer).decode()
        for t in self.store.q("SELECT meter_id FROM ota_targets WHERE campaign_id=? AND stage<=? AND state='pending'",
                              (c["id"], stage)):
            mid = vending.queue_command(self.store, t["meter_id"], "fw_offer", {"offer": offer}, rng=self.rng)
            self.stats["offers"] += 1
            with self.store.tx() as db:
                db.execute("UPDATE ota_targets SET state='offered', msg_id=?, attempts=attempts+1, updated=? WHERE "
                           "campaign_id=? AND meter_id=?", (mid, now, c["id"], t["meter_id"]))
        rows = self.store.q("SELECT state FROM ota_targets WHERE campaign_id=? AND stage<=?", (c["id"], stage))
        done = [r["state"] for r in rows if r["state"] in FINAL]
        timed_out = now - c["stage_started"] >= c["stage_timeout_s"]
        if len(done) < len(rows) and not timed_out:
            return
        # The success rate counts the meters that tried the image (a refusal, e.g. another board, is
        # reported but is not the image failing). A stage proceeds only on evidence: at least one meter
        # installed it and proved it valid, and valid / tried is at least the threshold. A stage with no
        # meter finished (all offline at its timeout) or none that tried it (all refused) halts.
        tried = [d for d in done if d in ("valid", "rolled_back", "failed")]
        valid = tried.count("valid")
        rate = 100.0 * valid / len(tried) if tried else 0.0
        if stage + 1 >= len(stages):
            if len(done) == len(rows):
                with self.store.tx() as db:
                    db.execute("UPDATE ota_campaigns SET state='done', note=? WHERE id=?",
                               ("%d of %d tried it: %.1f %% valid" % (len(tried), len(rows), rate) if tried
                                else "no meter tried the image", c["id"]))
            return
        if valid and valid * 100.0 >= c["threshold_pct"] * len(tried):
            with self.store.tx() as db:
                db.execute("UPDATE ota_campaigns SET stage=?, stage_started=?, note=NULL WHERE id=?",
                           (stage + 1, now, c["id"]))
            return
        if tried:
            why = "%.1f %% valid (%d of %d that tried it): %s" % (
                rate, valid, len(tried), "below %.1f %%" % c["threshold_pct"] if valid else "no valid install")
        elif done:
            refused = done.count("refused")
            why = "no meter tried the image: %d of %d finished, %d refused" % (len(done), len(rows), refused)
        else:
            why = "no meter finished within %.0f s: 0 of %d" % (c["stage_timeout_s"], len(rows))
        with self.store.tx() as db:
            db.execute("UPDATE ota_campaigns SET state='halted', note=? WHERE id=?",
                       ("stage %d: %s" % (stage, why), c["id"]))


def attach(headend, rng=None):
    """Serve firmware updates from a running head-end: chunk requests on its session, campaigns on its
    loop (pass `service.tick` as `serve`'s on_tick)."""
    service = OtaService(headend.store, lambda topic, payload: headend.client.publish(topic, payload, qos=0), rng)
    headend.topic_handlers["fwreq"] = service.on_request
    return service


def trusted_keys(paths):
    return [keys.load_public(p) for p in paths]
