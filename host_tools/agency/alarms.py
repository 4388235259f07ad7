"""Alarms for operators: faults, tamper and relay failures reported by meters, meters silent too long,
payments stuck. Raised once per (kind, ref); acknowledged and assigned from the console."""
import json

METER_EVENT_ALARMS = ("tamper", "relay_failed", "relay_welded", "meter_silent", "meter_garbage", "meter_reset",
                      "meter_cal_error", "ledger_lost", "auth_failed")


class Alarms:
    def __init__(self, store, settings):
        self.store = store
        self.settings = settings

    def raise_(self, kind, meter_id, ref, detail):
        """Open an alarm unless one exists for (kind, ref); returns 1 if new."""
        now = self.settings.clock()
        with self.store.tx() as db:
            if db.execute("SELECT id FROM alarms WHERE kind=? AND ref=?", (kind, ref)).fetchone():
                return 0
            db.execute("INSERT INTO alarms (kind, meter_id, ref, detail, state, created, updated) VALUES "
                       "(?,?,?,?,?,?,?)", (kind, meter_id, ref, json.dumps(detail, sort_keys=True), "open", now, now))
        return 1

    def scan(self):
        """Turn new meter events into alarms and flag silent meters; returns the number raised."""
        raised = 0
        cur = self.store.q1("SELECT value FROM cursors WHERE name='alarm_events'")
        last = cur["value"] if cur else 0
        marks = ",".join("?" * len(METER_EVENT_ALARMS))
        rows = self.store.q("SELECT * FROM events WHERE id>? AND source='meter' AND kind IN (%s) ORDER BY id LIMIT 5000"
                            % marks, (last,) + METER_EVENT_ALARMS)
        for e in rows:
            raised += self.raise_(e["kind"], e["meter_id"], "event:%d" % e["id"], json.loads(e["data"]))
            last = e["id"]
        if rows:
            with self.store.tx() as db:
                db.execute("INSERT INTO cursors (name, value) VALUES ('alarm_events', ?) ON CONFLICT (name) DO "
                           "UPDATE SET value=excluded.value", (last,))
        now = self.settings.clock()
        for m in self.store.q("SELECT meter_id, last_seen FROM meters WHERE last_seen IS NOT NULL AND last_seen<?",
                              (now - self.settings.silent_after_s,)):
            # one alarm per silence: the ref carries the hour it started
            raised += self.raise_("silent", m["meter_id"], "silent:%s:%d" % (m["meter_id"], int(m["last_seen"]) // 3600),
                                  {"last_seen": m["last_seen"]})
        return raised

    def update(self, alarm_id, state=None, assigned_to=None):
        now = self.settings.clock()
        sets, args = ["updated=?"], [now]
        if state:
            sets.append("state=?")
            args.append(state)
        if assigned_to is not None:
            sets.append("assigned_to=?")
            args.append(assigned_to or None)
        with self.store.tx() as db:
            return db.execute("UPDATE alarms SET %s WHERE id=?" % ", ".join(sets), args + [alarm_id]).rowcount
