"""Silence alarms: the head-end notices when uplinks stop arriving, from the whole fleet (a deaf
head-end: its session taken over, a broker that stopped routing, a cut link) and from one meter (a
meter that stopped reporting), even while its own heartbeat stays fresh.

An alarm is a row in `uplink_alarms` (open while `cleared` is NULL) and an event (`uplinks_stopped` /
`uplinks_resumed` for the fleet, `meter_silent` / `meter_heard` for a meter), raised once and cleared
when uplinks come back. Only meters that have sent an uplink at least once count: a fleet imported but
not yet installed is not an alarm. The clock is the head-end's (`last_uplink` is written by ingest)."""
import json

FLEET_SILENCE_S = 600.0     # no uplink from any meter for this long while meters report: the head-end is deaf
METER_SILENCE_S = 3600.0    # four reading periods (900 s) without an uplink from one meter


class SilenceWatch:
    def __init__(self, store, clock, fleet_silence_s=FLEET_SILENCE_S, meter_silence_s=METER_SILENCE_S):
        self.store = store
        self.clock = clock
        self.fleet_silence_s = fleet_silence_s
        self.meter_silence_s = meter_silence_s
        self.started = clock()   # uplinks queued by the broker while we were down arrive after start

    def check(self, now=None):
        """Raise and clear alarms; returns {"fleet": open?, "meters": [silent meter ids]}."""
        now = self.clock() if now is None else now
        with self.store.tx() as db:
            newest = db.execute("SELECT MAX(last_uplink) AS t FROM meters").fetchone()["t"]
            open_ = {(r["meter_id"], r["kind"]): r["id"] for r in
                     db.execute("SELECT id, meter_id, kind FROM uplink_alarms WHERE cleared IS NULL")}
            fleet_silent = newest is not None and now - max(newest, self.started) > self.fleet_silence_s
            self._set(db, None, "uplinks_stopped", "uplinks_resumed", fleet_silent, open_, now,
                      {"last_uplink": newest, "silent_s": round(now - newest, 1) if newest else None})
            limit = now - self.meter_silence_s
            silent = {r["meter_id"]: r["last_uplink"] for r in
                      db.execute("SELECT meter_id, last_uplink FROM meters WHERE last_uplink < ?", (limit,))}
            if self.started > limit:
                silent = {}      # not watched long enough to say
            for meter_id, last in silent.items():
                self._set(db, meter_id, "meter_silent", "meter_heard", True, open_, now,
                          {"last_uplink": last, "silent_s": round(now - last, 1)})
            for (meter_id, kind) in list(open_):
                if kind == "meter_silent" and meter_id not in silent:
                    self._set(db, meter_id, "meter_silent", "meter_heard", False, open_, now, {})
        return {"fleet": fleet_silent, "meters": sorted(silent)}

    def _set(self, db, meter_id, kind, cleared_kind, on, open_, now, data):
        key = (meter_id, kind)
        if on and key not in open_:
            db.execute("INSERT INTO uplink_alarms (meter_id, kind, raised, data) VALUES (?,?,?,?)",
                       (meter_id, kind, now, json.dumps(data, sort_keys=True)))
            self.store.log(meter_id, "headend", kind, data, db=db)
            open_[key] = None
        elif not on and key in open_:
            if meter_id is None:       # `IS ?` is SQLite's; PostgreSQL compares with NULL only by IS NULL
                db.execute("UPDATE uplink_alarms SET cleared=? WHERE cleared IS NULL AND kind=? AND meter_id IS NULL",
                           (now, kind))
            else:
                db.execute("UPDATE uplink_alarms SET cleared=? WHERE cleared IS NULL AND kind=? AND meter_id=?",
                           (now, kind, meter_id))
            self.store.log(meter_id, "headend", cleared_kind, {}, db=db)
            del open_[key]


def open_alarms(store):
    """The alarms still open, oldest first: [{meter_id, kind, raised, data}]."""
    return [{"meter_id": r["meter_id"], "kind": r["kind"], "raised": r["raised"], "data": json.loads(r["data"])}
            for r in store.q("SELECT * FROM uplink_alarms WHERE cleared IS NULL ORDER BY id")]
