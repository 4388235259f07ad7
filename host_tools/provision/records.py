"""The manufacturing records: one row per meter (SQLite), the history of every provisioning run, and
the head-end import CSV. The DB is SECRET: it holds each meter's message key, service key and
broker password (the head-end and field service need them). It never holds the STS decoder key (the
vending side derives that again from the vending key)."""
import csv
import io
import json
import os
import sqlite3
import time

from host_tools.errors import UsageError

DEFAULT_DB = "factory-records.sqlite"
CSV_COLUMNS = ("meter_id", "pan", "serial", "sgc", "ti", "krn", "message_key_hex", "broker_password")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
    serial INTEGER PRIMARY KEY, pan TEXT UNIQUE NOT NULL, meter_id TEXT UNIQUE NOT NULL,
    board TEXT, firmware TEXT, image_sha256 TEXT, firmware_sha256 TEXT,
    sgc TEXT, ti INTEGER, krn INTEGER, kt INTEGER, ken INTEGER, base_date TEXT,
    message_key_hex TEXT NOT NULL, service_key_hex TEXT NOT NULL, broker_password TEXT NOT NULL,
    provisioned_at REAL, operator TEXT, selftest_passed INTEGER, selftest TEXT, runs INTEGER DEFAULT 1,
    opaygo_key_hex TEXT, opaygo_starting_code INTEGER);
CREATE TABLE IF NOT EXISTS reserved (serial INTEGER PRIMARY KEY, at REAL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial INTEGER, at REAL, operator TEXT, action TEXT,
    ok INTEGER, detail TEXT);
CREATE TABLE IF NOT EXISTS sealing (
    mac TEXT PRIMARY KEY, at REAL, board TEXT, operator TEXT, flash_size TEXT, firmware_sha256 TEXT,
    fs_sha256 TEXT, flash_key_sha256 TEXT, efuses TEXT, chip_revision INTEGER, secure_boot INTEGER,
    secure_boot_key_digest TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial INTEGER, meter_id TEXT, at REAL, folder TEXT, files TEXT);
"""


class RecordDB:
    def __init__(self, path=DEFAULT_DB):
        self.path = str(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise UsageError(f"no folder {parent} for the record DB", hint="create it or give another --db")
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_SCHEMA)
        # Added columns (older DBs get them here): the OpenPAYGO secret and starting code, when given.
        # Secure boot v2 (sealing): the silicon revision, whether it is on, the public key's digest.
        added = [("meters", c, t) for c, t in (("opaygo_key_hex", "TEXT"), ("opaygo_starting_code", "INTEGER"))]
        added += [("sealing", c, t) for c, t in (("chip_revision", "INTEGER"), ("secure_boot", "INTEGER"),
                                                   ("secure_boot_key_digest", "TEXT"))]
        have = {t: {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")} for t in ("meters", "sealing")}
        for table, col, typ in added:
            if col not in have[table]:
                try:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")
                except sqlite3.OperationalError as e:   # another station added it first
                    if "duplicate column" not in str(e):
                        raise
        self.db.commit()
        try:
            os.chmod(self.path, 0o600)  # secret: message and service keys
        except OSError:
            pass

    def close(self):
        self.db.close()

    def reserve_serial(self, first=1):
        """The next free serial, reserved at once so parallel line stations never take the same one
        (BEGIN IMMEDIATE holds SQLite's write lock between the read and the insert)."""
        self.db.isolation_level = None
        try:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT MAX(m) AS m FROM (SELECT MAX(serial) AS m FROM meters "
                                  "UNION ALL SELECT MAX(serial) FROM reserved)").fetchone()
            serial = max(first, (row["m"] or 0) + 1)
            self.db.execute("INSERT INTO reserved (serial, at) VALUES (?, ?)", (serial, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.isolation_level = ""
        return serial

    def save_seal(self, mac, board, flash_size, firmware_sha256, fs_sha256, flash_key_sha256, efuses, operator=None,
                  chip_revision=None, secure_boot=None, secure_boot_key_digest=None):
        """Record how a board was sealed (by its MAC, the key the line knows it by before provisioning):
        the eFuses burnt, a fingerprint of its flash encryption key (never the key) and, with secure boot,
        the digest of the signing key's public half that BLOCK2 holds (never the signing key)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO sealing (mac, at, board, operator, flash_size, firmware_sha256, "
                            "fs_sha256, flash_key_sha256, efuses, chip_revision, secure_boot, secure_boot_key_digest) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            (mac, time.time(), board, operator, flash_size, firmware_sha256, fs_sha256,
                             flash_key_sha256, json.dumps(efuses, sort_keys=True), chip_revision,
                             None if secure_boot is None else int(bool(secure_boot)), secure_boot_key_digest))

    def seal_record(self, mac):
        r = self.db.execute("SELECT * FROM sealing WHERE mac=?", (mac,)).fetchone()
        return dict(r) if r else None

    def by_serial(self, serial):
        r = self.db.execute("SELECT * FROM meters WHERE serial=?", (int(serial),)).fetchone()
        return dict(r) if r else None

    def by_meter_id(self, meter_id):
        r = self.db.execute("SELECT * FROM meters WHERE meter_id=?", (meter_id,)).fetchone()
        return dict(r) if r else None

    def save(self, rec, rekey=False):
        """Insert a meter's record (or replace it on a rekey) and log the run, in one transaction."""
        cols = ("serial", "pan", "meter_id", "board", "firmware", "image_sha256", "firmware_sha256", "sgc", "ti",
                "krn", "kt", "ken", "base_date", "message_key_hex", "service_key_hex", "broker_password",
                "provisioned_at", "operator", "selftest_passed", "selftest", "opaygo_key_hex",
                "opaygo_starting_code")
        vals = [rec.get(c) for c in cols]
        vals[cols.index("selftest")] = json.dumps(rec.get("selftest"))
        with self.db:
            if rekey:
                self.db.execute("DELETE FROM meters WHERE serial=? OR meter_id=?", (rec["serial"], rec["meter_id"]))
            self.db.execute(f"INSERT INTO meters ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", vals)
            self.log(rec["serial"], rec.get("operator"), "rekey" if rekey else "provision", True,
                     {"selftest_passed": rec.get("selftest_passed")}, commit=False)

    def set_selftest(self, serial, passed, items, operator=None):
        """Add the self-test result to a meter's record and log the run."""
        with self.db:
            self.db.execute("UPDATE meters SET selftest_passed=?, selftest=? WHERE serial=?",
                            (1 if passed else 0, json.dumps(items), int(serial)))
            self.log(serial, operator, "selftest", passed, {"failed": [i["item"] for i in items if not i["pass"]]},
                     commit=False)

    def log(self, serial, operator, action, ok, detail, commit=True):
        self.db.execute("INSERT INTO runs (serial, at, operator, action, ok, detail) VALUES (?,?,?,?,?,?)",
                        (serial, time.time(), operator, action, 1 if ok else 0, json.dumps(detail)))
        if commit:
            self.db.commit()

    def attach_certificate(self, meter_id, paths):
        """Keep a calibration certificate with the meter's record: the files are copied into
        `certificates/<meter id>/<time>/` beside the DB and listed in the record. Returns the stored
        paths, or [] when the DB has no such meter."""
        import shutil
        rec = self.by_meter_id(meter_id) if meter_id else None
        if rec is None:
            return []
        at = time.time()
        folder = os.path.join(os.path.dirname(os.path.abspath(self.path)), "certificates", meter_id,
                              time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)))
        os.makedirs(folder, exist_ok=True)
        stored = []
        for p in paths.values():
            dst = os.path.join(folder, os.path.basename(p))
            shutil.copy2(p, dst)
            stored.append(dst)
        with self.db:
            self.db.execute("INSERT INTO certificates (serial, meter_id, at, folder, files) VALUES (?,?,?,?,?)",
                            (rec["serial"], meter_id, at, folder, json.dumps(stored)))
            self.log(rec["serial"], None, "calibration_certificate", True, {"folder": folder}, commit=False)
        return stored

    def certificates(self, meter_id):
        return [dict(r) for r in self.db.execute("SELECT * FROM certificates WHERE meter_id=? ORDER BY id",
                                                 (meter_id,))]

    def meters(self):
        return [dict(r) for r in self.db.execute("SELECT * FROM meters ORDER BY serial")]

    def export_csv(self):
        """The head-end import CSV text (columns CSV_COLUMNS)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.meters():
            w.writerow([r[c] for c in CSV_COLUMNS])
        return out.getvalue()
