"""The head-end's SQLite database: meter registry and keys, vended tokens (TIDs never reused), the
downlink outbox with delivery state, uplink sequence numbers, readings, statements and the event log.
One file shared by `serve` and the operator verbs (WAL mode, short transactions)."""
import json
import sqlite3
import threading
import time

from host_tools.errors import UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
  meter_id TEXT PRIMARY KEY, pan TEXT NOT NULL, serial TEXT, sgc TEXT NOT NULL, ti INTEGER NOT NULL,
  krn INTEGER NOT NULL, message_key_hex TEXT NOT NULL, broker_password TEXT,
  down_seq INTEGER NOT NULL DEFAULT 0,      -- last downlink seq used (persisted before publishing)
  up_seq INTEGER,                           -- last uplink seq accepted (NULL: none yet)
  status TEXT NOT NULL DEFAULT 'unknown', last_seen REAL, imported REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vends (
  id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, sgc TEXT NOT NULL, ti INTEGER NOT NULL,
  krn INTEGER NOT NULL, tid INTEGER NOT NULL, token TEXT NOT NULL, what TEXT NOT NULL,
  quantity INTEGER NOT NULL, msg_id TEXT, created REAL NOT NULL,
  UNIQUE (meter_id, sgc, ti, krn, tid));
CREATE TABLE IF NOT EXISTS messages (
  msg_id TEXT PRIMARY KEY, meter_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',    -- pending (not yet sent) | sent (awaiting result) | done
  attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_seq INTEGER,
  code TEXT, detail TEXT, created REAL NOT NULL, done_at REAL);
CREATE INDEX IF NOT EXISTS messages_due ON messages (state, next_try);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, meter_id TEXT, at REAL NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_meter ON events (meter_id, id);
CREATE TABLE IF NOT EXISTS readings (
  meter_id TEXT NOT NULL, ts INTEGER NOT NULL, import_wh INTEGER, export_wh INTEGER, credit INTEGER,
  debt INTEGER, p_w INTEGER, supply TEXT, raw TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS readings_meter ON readings (meter_id, ts);
CREATE TABLE IF NOT EXISTS statements (
  meter_id TEXT NOT NULL, month TEXT NOT NULL, import_wh INTEGER, cost INTEGER, topups INTEGER,
  received REAL NOT NULL, PRIMARY KEY (meter_id, month));
CREATE TABLE IF NOT EXISTS sms_commands (
  meter_id TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (meter_id, seq));
CREATE TABLE IF NOT EXISTS service (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uplink_alarms (
  id INTEGER PRIMARY KEY, meter_id TEXT,    -- NULL: the whole fleet
  kind TEXT NOT NULL, raised REAL NOT NULL, cleared REAL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uplink_alarms_open ON uplink_alarms (cleared, kind);
"""



class Store:
    """Thread-safe access to the head-end database (one connection guarded by a lock)."""

    def __init__(self, path, clock=time.time):
        self.path = str(path)
        self.clock = clock             # event times: wall seconds, or a scenario's virtual seconds
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise UsageError(f"cannot open head-end database {self.path}: {e}",
                             hint="give --db a writable SQLite file (it is created if missing)") from None

    def _migrate(self):
        """Columns added since the first schema (an older database gains them at open)."""
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(vends)")}
        if "request_key" not in cols:
            # The caller's idempotency key for a top-up request: one request, one vend, ever.
            self.db.execute("ALTER TABLE vends ADD COLUMN request_key TEXT")
        if "last_uplink" not in {r[1] for r in self.db.execute("PRAGMA table_info(meters)")}:
            # When the meter's last accepted uplink arrived (head-end clock): silence alarms.
            self.db.execute("ALTER TABLE meters ADD COLUMN last_uplink REAL")
        self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS vends_request ON vends (meter_id, request_key) "
                        "WHERE request_key IS NOT NULL")

    def close(self):
        with self._lock:
            self.db.close()

    # -- small helpers ---------------------------------------------------------------------------
    def tx(self):
        """A write transaction taken at once (BEGIN IMMEDIATE), so two processes never interleave."""
        return _Tx(self)

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
        self.store.db.execute("BEGIN IMMEDIATE")
        return self.store.db

    def __exit__(self, et, ev, tb):
        try:
            self.store.db.execute("COMMIT" if et is None else "ROLLBACK")
        finally:
            self.store._lock.release()
        return False
