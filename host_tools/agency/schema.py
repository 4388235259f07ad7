"""The agency's own tables, in the head-end's database file, as numbered migrations applied once each
(recorded in agency_migrations). Portable SQL only (it must also run on PostgreSQL): integer money in
minor units, REAL Unix seconds for times, no SQLite-only statements."""

# (version, statements). Add new migrations at the end; never edit one that has shipped.
MIGRATIONS = [
    (1, [
        """CREATE TABLE IF NOT EXISTS customers (
          id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL UNIQUE, whatsapp TEXT, email TEXT,
          language TEXT NOT NULL DEFAULT 'fr', channels TEXT NOT NULL DEFAULT 'sms',
          consent INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS customer_meters (
          meter_id TEXT PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id))""",
        "CREATE INDEX IF NOT EXISTS customer_meters_customer ON customer_meters (customer_id)",
        # arrears carried over from post-paid billing, recovered from purchases by a share (never a cut-off)
        """CREATE TABLE IF NOT EXISTS arrears (
          meter_id TEXT PRIMARY KEY, customer_id INTEGER NOT NULL, original_minor INTEGER NOT NULL,
          balance_minor INTEGER NOT NULL, share_bp INTEGER NOT NULL, created REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS payments (
          id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, meter_id TEXT NOT NULL,
          amount_minor INTEGER NOT NULL, arrears_minor INTEGER NOT NULL DEFAULT 0, currency TEXT NOT NULL,
          request_key TEXT NOT NULL UNIQUE, provider TEXT NOT NULL, provider_ref TEXT UNIQUE,
          approve_url TEXT, state TEXT NOT NULL, msg_id TEXT, token TEXT, tid INTEGER, result_code TEXT,
          created REAL NOT NULL, updated REAL NOT NULL, paid_at REAL, vended_at REAL, credited_at REAL,
          refunded_at REAL, last_poll REAL, polls INTEGER NOT NULL DEFAULT 0, note TEXT)""",
        "CREATE INDEX IF NOT EXISTS payments_state ON payments (state, updated)",
        "CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id, id)",
        """CREATE TABLE IF NOT EXISTS payment_events (
          id INTEGER PRIMARY KEY, payment_id INTEGER, at REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS payment_events_payment ON payment_events (payment_id, id)",
        """CREATE TABLE IF NOT EXISTS operators (
          id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
          role TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS sessions (
          token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, subject_id INTEGER NOT NULL, csrf TEXT NOT NULL,
          created REAL NOT NULL, expires REAL NOT NULL, ip TEXT)""",
        """CREATE TABLE IF NOT EXISTS otp (
          id INTEGER PRIMARY KEY, purpose TEXT NOT NULL, address TEXT NOT NULL, customer_id INTEGER,
          field TEXT, code_hash TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, used INTEGER NOT NULL DEFAULT 0,
          created REAL NOT NULL, expires REAL NOT NULL, ip TEXT)""",
        "CREATE INDEX IF NOT EXISTS otp_address ON otp (address, created)",
        "CREATE INDEX IF NOT EXISTS otp_ip ON otp (ip, created)",
        """CREATE TABLE IF NOT EXISTS signin_failures (
          id INTEGER PRIMARY KEY, who TEXT NOT NULL, ip TEXT, at REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS signin_failures_who ON signin_failures (who, at)",
        """CREATE TABLE IF NOT EXISTS audit (
          id INTEGER PRIMARY KEY, at REAL NOT NULL, operator_id INTEGER, username TEXT NOT NULL,
          action TEXT NOT NULL, target TEXT, detail TEXT NOT NULL, ip TEXT)""",
        """CREATE TABLE IF NOT EXISTS alarms (
          id INTEGER PRIMARY KEY, kind TEXT NOT NULL, meter_id TEXT, ref TEXT NOT NULL, detail TEXT NOT NULL,
          state TEXT NOT NULL DEFAULT 'open', assigned_to TEXT, created REAL NOT NULL, updated REAL NOT NULL,
          UNIQUE (kind, ref))""",
        """CREATE TABLE IF NOT EXISTS tickets (
          id INTEGER PRIMARY KEY, customer_id INTEGER, meter_id TEXT, category TEXT NOT NULL,
          description TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open', assigned_to TEXT,
          source TEXT NOT NULL, alarm_id INTEGER, created REAL NOT NULL, updated REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS ticket_events (
          id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, at REAL NOT NULL, actor TEXT NOT NULL,
          change TEXT NOT NULL, note TEXT)""",
        # every message sent to a customer, on any channel (the head-end's `messages` is its outbox)
        """CREATE TABLE IF NOT EXISTS notifications (
          id INTEGER PRIMARY KEY, customer_id INTEGER, channel TEXT NOT NULL, address TEXT NOT NULL,
          kind TEXT NOT NULL, text TEXT NOT NULL, state TEXT NOT NULL, error TEXT, created REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS notifications_customer ON notifications (customer_id, id)",
        """CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
    ]),
    (2, [
        # monthly statements sent to customers: once per meter and month
        """CREATE TABLE IF NOT EXISTS statement_deliveries (
          meter_id TEXT NOT NULL, month TEXT NOT NULL, customer_id INTEGER NOT NULL, channels TEXT NOT NULL,
          sent REAL NOT NULL, PRIMARY KEY (meter_id, month))""",
    ]),
    (3, [
        # arrears are loaded on the meter as debt (issue 15): each load, sent through the head-end once
        # (its ref is unique per meter), and what the meters report of them (arrears.py)
        """CREATE TABLE IF NOT EXISTS arrears_loads (
          id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, customer_id INTEGER NOT NULL,
          amount_minor INTEGER NOT NULL, share_bp INTEGER NOT NULL, ref TEXT NOT NULL, msg_id TEXT,
          state TEXT NOT NULL, code TEXT, note TEXT, created REAL NOT NULL, updated REAL NOT NULL,
          UNIQUE (meter_id, ref))""",
        "CREATE INDEX IF NOT EXISTS arrears_loads_state ON arrears_loads (state)",
        "ALTER TABLE arrears ADD COLUMN recovered_minor INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE arrears ADD COLUMN reported_at REAL",
        # what the agency took at payment time before this migration stays recovered; the rest goes
        # to the meter as its first load
        "UPDATE arrears SET recovered_minor = original_minor - balance_minor",
        # a purchase not vended yet took nothing from the balance (that happened at the vend): vended whole
        "UPDATE payments SET arrears_minor = 0 WHERE state IN ('created', 'pending', 'paid', 'failed')",
        """INSERT INTO arrears_loads (meter_id, customer_id, amount_minor, share_bp, ref, state, created, updated)
          SELECT meter_id, customer_id, balance_minor, share_bp, 'arrears-1', 'pending', created, created
          FROM arrears WHERE balance_minor > 0""",
    ]),
]


def migrate(store):
    """Apply the migrations not yet applied; returns the versions applied now."""
    import time
    with store.tx() as db:
        db.execute("CREATE TABLE IF NOT EXISTS agency_migrations (version INTEGER PRIMARY KEY, applied REAL NOT NULL)")
        done = {r[0] for r in db.execute("SELECT version FROM agency_migrations").fetchall()}
        applied = []
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for sql in statements:
                db.execute(sql)
            db.execute("INSERT INTO agency_migrations (version, applied) VALUES (?, ?)", (version, time.time()))
            applied.append(version)
    return applied
