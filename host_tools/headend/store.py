"""The head-end's store: meter registry and keys, vended tokens (TIDs never reused), the downlink outbox
with delivery state, uplink sequence numbers, readings, statements, the event log, the operators' audit,
the top-ups meters report and the silence alarms. SQLite (a file, WAL, the embedded default) or PostgreSQL (`--db
postgresql://...`) through one thin adapter (db.py); the schema is a numbered list of migrations, applied
once each at open and recorded in `schema_version`."""
import csv
import json
import threading
import time

from host_tools.errors import UsageError
from host_tools.headend import db as dbapi

SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS meters (
  meter_id TEXT PRIMARY KEY, pan TEXT NOT NULL, serial TEXT, sgc TEXT NOT NULL, ti INTEGER NOT NULL,
  krn INTEGER NOT NULL, message_key_hex TEXT NOT NULL, broker_password TEXT,
  down_seq INTEGER NOT NULL DEFAULT 0,
  up_seq INTEGER,
  status TEXT NOT NULL DEFAULT 'unknown', last_seen REAL, imported REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS vends (
  id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, sgc TEXT NOT NULL, ti INTEGER NOT NULL,
  krn INTEGER NOT NULL, tid INTEGER NOT NULL, token TEXT NOT NULL, what TEXT NOT NULL,
  quantity INTEGER NOT NULL, msg_id TEXT, created REAL NOT NULL,
  UNIQUE (meter_id, sgc, ti, krn, tid))""",
    """CREATE TABLE IF NOT EXISTS messages (
  msg_id TEXT PRIMARY KEY, meter_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_seq INTEGER,
  code TEXT, detail TEXT, created REAL NOT NULL, done_at REAL)""",
    "CREATE INDEX IF NOT EXISTS messages_due ON messages (state, next_try)",
    """CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, meter_id TEXT, at REAL NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
  data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_meter ON events (meter_id, id)",
    """CREATE TABLE IF NOT EXISTS readings (
  meter_id TEXT NOT NULL, ts INTEGER NOT NULL, import_wh INTEGER, export_wh INTEGER, credit INTEGER,
  debt INTEGER, p_w INTEGER, supply TEXT, raw TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS readings_meter ON readings (meter_id, ts)",
    """CREATE TABLE IF NOT EXISTS statements (
  meter_id TEXT NOT NULL, month TEXT NOT NULL, import_wh INTEGER, cost INTEGER, topups INTEGER,
  received REAL NOT NULL, PRIMARY KEY (meter_id, month))""",
    """CREATE TABLE IF NOT EXISTS sms_commands (
  meter_id TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (meter_id, seq))""",
    "CREATE TABLE IF NOT EXISTS service (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]

# (version, what it does, statements). Add new ones at the end; never edit one that has shipped.
MIGRATIONS = [
    (1, "meters, vends, outbox, events, readings, statements, SMS commands", SCHEMA_V1),
    (2, "vends.request_key: the caller's idempotency key, one request one vend", [
        "ALTER TABLE vends ADD COLUMN request_key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS vends_request ON vends (meter_id, request_key) "
        "WHERE request_key IS NOT NULL",
    ]),
    (3, "headend_audit: who did what, when, with what result", [
        """CREATE TABLE IF NOT EXISTS headend_audit (
  id INTEGER PRIMARY KEY, at REAL NOT NULL, operator TEXT NOT NULL, origin TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT, args TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL,
  msg_id TEXT)""",
        "CREATE INDEX IF NOT EXISTS headend_audit_at ON headend_audit (at)",
    ]),
    (4, "topups: every top-up a meter reports, from any channel, for reconciliation", [
        """CREATE TABLE IF NOT EXISTS topups (
  meter_id TEXT NOT NULL, seq INTEGER NOT NULL, channel TEXT NOT NULL, tid INTEGER, what TEXT,
  quantity INTEGER, minor INTEGER, msg_id TEXT, at INTEGER, received REAL NOT NULL, raw TEXT NOT NULL,
  PRIMARY KEY (meter_id, seq))""",
        "CREATE INDEX IF NOT EXISTS topups_tid ON topups (meter_id, tid)",
    ]),
    (5, "meters.up_window: uplink seqs accepted below the highest (several workers take uplinks out of order)", [
        "ALTER TABLE meters ADD COLUMN up_window INTEGER NOT NULL DEFAULT 0",
    ]),
    (6, "uplink_alarms and meters.last_uplink: the head-end notices when uplinks stop (silence.py)", [
        "ALTER TABLE meters ADD COLUMN last_uplink REAL",
        """CREATE TABLE IF NOT EXISTS uplink_alarms (
  id INTEGER PRIMARY KEY, meter_id TEXT,
  kind TEXT NOT NULL, raised REAL NOT NULL, cleared REAL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS uplink_alarms_open ON uplink_alarms (cleared, kind)",
    ]),
    (7, "ota_packages, ota_campaigns, ota_targets: firmware updates in the field (ota.py)", [
        """CREATE TABLE IF NOT EXISTS ota_packages (
  sha256 TEXT PRIMARY KEY, version TEXT NOT NULL, board TEXT NOT NULL, header TEXT NOT NULL,
  blob BLOB NOT NULL, uploaded REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS ota_campaigns (
  id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, state TEXT NOT NULL, stages TEXT NOT NULL,
  stage INTEGER NOT NULL DEFAULT 0, threshold_pct REAL NOT NULL, stage_started REAL NOT NULL,
  stage_timeout_s REAL NOT NULL, note TEXT, created REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS ota_targets (
  campaign_id INTEGER NOT NULL, meter_id TEXT NOT NULL, stage INTEGER NOT NULL, state TEXT NOT NULL,
  bytes INTEGER NOT NULL DEFAULT 0, code TEXT, reason TEXT, msg_id TEXT, updated REAL NOT NULL,
  last_event INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, meter_id))""",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]



class Store:
    """Thread-safe access to the head-end database (one connection guarded by a lock).

    `target`: a SQLite file path (created 0600: it holds every meter's keys) or a postgresql:// URL."""

    def __init__(self, target, clock=time.time):
        self.path = str(target)
        self.clock = clock             # event times: wall seconds, or a scenario's virtual seconds
        self._lock = threading.RLock()
        try:
            self.db = dbapi.connect(self.path)
        except dbapi.sqlite3.DatabaseError as e:
            raise UsageError(f"cannot open head-end database {self.path}: {e}",
                             hint="give --db a writable SQLite file (it is created if missing)") from None
        self.kind = self.db.kind
        try:
            self.migrated = self._migrate()
        except dbapi.sqlite3.DatabaseError as e:
            self.db.close()
            raise UsageError(f"cannot open head-end database {self.path}: {e}",
                             hint="give --db a head-end SQLite file (it is created if missing)") from None

    @property
    def shown(self):
        """The database as it may be printed (a URL's password hidden)."""
        return dbapi.redact(self.path)

    def _migrate(self):
        """Apply every migration not yet applied, each in its own transaction; returns those applied now.
        A database from before versioning (tables, no schema_version) is recognised by its columns."""
        applied_now = []
        with self.tx() as db:
            self.db.migration_lock()
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                       " applied REAL NOT NULL)")
            have = {r[0] for r in db.execute("SELECT version FROM schema_version").fetchall()}
            if not have and "vends" in self.db.tables():
                # made before migrations were numbered: version 1, and 2 if request_key is there
                have = {1} | ({2} if "request_key" in self.db.columns("vends") else set())
                for v in sorted(have):
                    db.execute("INSERT INTO schema_version (version, name, applied) VALUES (?,?,?)",
                               (v, "found at open", time.time()))
            newer = [v for v in have if v > SCHEMA_VERSION]
            if newer:
                raise UsageError(f"head-end database {self.shown} has schema version {max(newer)}, newer than this "
                                 f"meterkit's {SCHEMA_VERSION}", hint="update meterkit before opening it")
            for version, name, statements in MIGRATIONS:
                if version in have:
                    continue
                for sql in statements:
                    db.execute(sql)
                db.execute("INSERT INTO schema_version (version, name, applied) VALUES (?,?,?)",
                           (version, name, time.time()))
                applied_now.append(version)
        return applied_now

    def schema_version(self):
        return self.q1("SELECT MAX(version) AS v FROM schema_version")["v"]

    def close(self):
        with self._lock:
            self.db.close()

    # -- small helpers ---------------------------------------------------------------------------
    def tx(self):
        """A write transaction (SQLite: BEGIN IMMEDIATE, so two processes never interleave; PostgreSQL:
        row locks where the statements ask for them, `FOR UPDATE`). It yields the connection, whose
        execute() takes `?` parameters on both backends. Commits durably unless `relaxed()` is called."""
        return _Tx(self)

    def retrying(self, fn, attempts=5):
        """fn() (which runs its own transactions), again when the database aborted it for a conflict
        between concurrent writers (PostgreSQL deadlock or serialisation failure, SQLite busy)."""
        for i in range(attempts):
            try:
                return fn()
            except Exception as e:
                if i == attempts - 1 or not self.db.is_transient(e):
                    raise
                time.sleep(0.01 * (i + 1))

    def q(self, sql, args=()):
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def q1(self, sql, args=()):
        rows = self.q(sql, args)
        return rows[0] if rows else None

    # -- meters ----------------------------------------------------------------------------------
    def import_csv(self, path):
        """Add or update meters from a provisioning export; returns the number of rows imported.
        Every field of every row is checked first (`csvimport.py`): one bad row imports nothing."""
        from host_tools.headend import csvimport
        known = {r["pan"]: r["meter_id"] for r in self.q("SELECT pan, meter_id FROM meters")}
        rows = csvimport.read(path, known)
        now = self.clock()
        with self.tx() as db:  # all or nothing
            for row in rows:
                db.execute(
                    "INSERT INTO meters (meter_id, pan, serial, sgc, ti, krn, message_key_hex, broker_password,"
                    " imported) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(meter_id) DO UPDATE SET pan=excluded.pan,"
                    " serial=excluded.serial, sgc=excluded.sgc, ti=excluded.ti, krn=excluded.krn,"
                    " message_key_hex=excluded.message_key_hex, broker_password=excluded.broker_password",
                    row + (now,))
                db.execute("INSERT INTO events (meter_id, at, source, kind, data) VALUES (?,?,?,?,?)",
                           (row[0], now, "headend", "imported", json.dumps({"serial": row[2]})))
        return len(rows)

    def meter(self, meter_id):
        row = self.q1("SELECT * FROM meters WHERE meter_id=?", (meter_id,))
        if row is None:
            known = self.q1("SELECT COUNT(*) AS n FROM meters")["n"]
            raise UsageError(f"unknown meter {meter_id!r}",
                             hint=f"`meterkit headend meters` lists the {known} registered meter(s); "
                                  "import new ones with `meterkit headend import FILE.csv`")
        return row

    def meters(self):
        return self.q("SELECT m.*, (SELECT COUNT(*) FROM messages x WHERE x.meter_id=m.meter_id AND "
                      "x.state!='done') AS undelivered FROM meters m ORDER BY meter_id")

    def message(self, msg_id):
        """One downlink message as the outbox holds it (state, code, detail, attempts, ...), or None."""
        return self.q1("SELECT * FROM messages WHERE msg_id=?", (msg_id,))

    def messages(self, meter_id, done=None):
        """A meter's downlink messages, oldest first; `done` True / False: only finished / unfinished ones."""
        where = "" if done is None else (" AND state='done'" if done else " AND state!='done'")
        return self.q("SELECT * FROM messages WHERE meter_id=?" + where + " ORDER BY created, msg_id", (meter_id,))

    def last_reading(self, meter_id):
        """The meter's newest reading as it sent it (a dict), or None."""
        row = self.q1("SELECT raw FROM readings WHERE meter_id=? ORDER BY ts DESC LIMIT 1", (meter_id,))
        return json.loads(row["raw"]) if row else None

    def message_keys(self):
        return {r["meter_id"]: bytes.fromhex(r["message_key_hex"]) for r in self.q("SELECT meter_id, message_key_hex FROM meters")}

    # -- events ----------------------------------------------------------------------------------
    def log(self, meter_id, source, kind, data=None, db=None):
        args = (meter_id, self.clock(), source, kind, json.dumps(data or {}, sort_keys=True))
        sql = "INSERT INTO events (meter_id, at, source, kind, data) VALUES (?,?,?,?,?)"
        if db is not None:
            db.execute(sql, args)
        else:
            with self._lock:
                self.db.execute(sql, args)

    def events(self, meter_id, limit=200):
        rows = self.q("SELECT * FROM events WHERE meter_id=? ORDER BY id DESC LIMIT ?", (meter_id, limit))
        return [{"id": r["id"], "at": r["at"], "source": r["source"], "kind": r["kind"],
                 "data": json.loads(r["data"])} for r in reversed(rows)]

    # -- service liveness (so operator verbs can say whether `serve` is running) ------------------
    def set_service(self, key, value):
        with self._lock:
            self.db.execute("INSERT INTO service (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                            "value=excluded.value", (key, str(value)))

    def service(self, key):
        row = self.q1("SELECT value FROM service WHERE key=?", (key,))
        return row["value"] if row else None


class _Tx:
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        self.store._lock.acquire()
        try:
            self.store.db.begin()
        except BaseException:
            self.store._lock.release()
            raise
        return self.store.db

    def __exit__(self, et, ev, tb):
        try:
            if et is None:
                self.store.db.commit()
            else:
                self.store.db.rollback()
        finally:
            self.store._lock.release()
        return False
