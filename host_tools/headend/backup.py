"""Backup and restore of the head-end's store. SQLite: the online backup API (a consistent copy while
`serve` writes); PostgreSQL: `pg_dump` custom format and `pg_restore` in one transaction. A backup is
written beside its destination and renamed into place (0600), so a failure leaves no half-written file.
A restore refuses while `serve` runs on the store; the schema's forward migrations run right after it,
so an older backup comes back at today's schema version."""
import os
import shutil
import sqlite3
import subprocess
import time

from host_tools.errors import UsageError
from host_tools.headend import db as dbapi

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


def _pg_tool(name):
    from host_tools.headend.pgserver import pg_bin
    d = pg_bin()
    exe = os.path.join(d, name) if d and os.path.exists(os.path.join(d, name)) else shutil.which(name)
    if not exe:
        raise UsageError(f"{name} is not installed", hint="apt-get install -y postgresql-client")
    return exe


def _partial(dest):
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {dest}: folder {parent} does not exist", hint="give a path in an existing folder")
    tmp = dest + ".partial"
    if os.path.exists(tmp):
        os.unlink(tmp)
    os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
    return dest, tmp


def backup(target, dest):
    """Copy the store at `target` (path or URL) to the file `dest`; returns {"file", "bytes", "format", ...}."""
    if not str(dest).strip():
        raise UsageError("the backup's file name is empty", hint="e.g. meterkit headend backup he-backup.sqlite")
    if os.path.isdir(dest):
        raise UsageError(f"{dest} is a folder", hint="give the backup's file name")
    dest, tmp = _partial(dest)
    try:
        if dbapi.is_url(target):
            r = subprocess.run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", tmp, target],
                               capture_output=True, text=True)
            if r.returncode:
                raise UsageError("pg_dump failed: " + (r.stderr.strip().splitlines() or ["?"])[-1],
                                 hint="check the database URL and that PostgreSQL runs")
            fmt = "pg_dump custom"
        else:
            if not os.path.exists(target):
                raise UsageError(f"no head-end database at {target}", hint="give --db")
            src = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30)
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)               # online: pages copied consistently while others write
                dst.execute("PRAGMA journal_mode=DELETE")   # the backup is one self-contained file
                ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                dst.close()
                src.close()
            if ok != "ok":
                raise UsageError(f"the copy of {target} failed its integrity check: {ok}", hint="try again")
            fmt = "sqlite"
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"file": dest, "bytes": os.path.getsize(dest), "format": fmt, "db": dbapi.redact(str(target))}


def file_format(path):
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", hint="give a file made by `meterkit headend backup`") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "pg_dump custom"
    raise UsageError(f"{path} is not a head-end backup", hint="give a file made by `meterkit headend backup`")


def restore(target, src, running=False):
    """Replace the store at `target` with the backup `src`; returns {"restored", "schema_version", ...}."""
    from host_tools.headend.store import Store
    if running:
        raise UsageError("the head-end service is running on this database",
                         hint="stop `meterkit headend serve` first, then restore")
    fmt = file_format(src)
    kept = _audit_rows(target)
    if dbapi.is_url(target):
        if fmt != "pg_dump custom":
            raise UsageError(f"{src} is a SQLite backup; this store is PostgreSQL",
                             hint="restore a pg_dump backup, or give --db the SQLite file")
        r = subprocess.run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                            "--exit-on-error", "--dbname", target, src], capture_output=True, text=True)
        if r.returncode:
            raise UsageError("pg_restore failed (nothing changed): " + (r.stderr.strip().splitlines() or ["?"])[-1],
                             hint="is it a head-end backup of this PostgreSQL version?")
    else:
        if fmt != "sqlite":
            raise UsageError(f"{src} is a PostgreSQL backup; this store is SQLite",
                             hint="restore it with --db postgresql://...")
        probe = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            ok = probe.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{src} is not a readable SQLite file: {e}", hint="give a head-end backup") from None
        if ok != "ok" or not {"meters", "vends", "messages"} <= tables:
            probe.close()
            raise UsageError(f"{src} is not a head-end backup (integrity {ok}, tables {len(tables)})",
                             hint="give a file made by `meterkit headend backup`")
        if not os.path.exists(target):
            dbapi._create_private(target)
        dst = sqlite3.connect(target, timeout=30)
        try:
            probe.backup(dst)                  # one transaction on the destination: all or nothing
        finally:
            dst.close()
            probe.close()
        os.chmod(target, 0o600)
    store = Store(target)                      # forward migrations for an older backup
    try:
        carried = _carry_audit(store, kept)
        out = {"audit_carried_over": carried, "restored": src, "format": fmt, "db": store.shown, "schema_version": store.schema_version(),
               "migrated": store.migrated, "meters": store.q1("SELECT COUNT(*) AS n FROM meters")["n"],
               "at": time.time()}
    finally:
        store.close()
    return out


_AUDIT_COLS = ("at", "operator", "origin", "action", "target", "args", "result", "detail", "msg_id")


def _audit_rows(target):
    """The audit as it stands before a restore (the restore must not erase who did what since the backup)."""
    from host_tools.headend.store import Store
    if not dbapi.is_url(target) and not os.path.exists(target):
        return []
    s = Store(target)
    try:
        return [tuple(r[c] for c in _AUDIT_COLS) for r in s.q("SELECT * FROM headend_audit ORDER BY id")]
    finally:
        s.close()


def _carry_audit(store, rows):
    """Append the audit entries the backup does not have (made after it); returns how many."""
    have = {tuple(r[c] for c in _AUDIT_COLS) for r in store.q("SELECT * FROM headend_audit")}
    missing = [r for r in rows if r not in have]
    with store.tx() as db:
        for r in missing:
            db.execute("INSERT INTO headend_audit (%s) VALUES (%s)" % (",".join(_AUDIT_COLS), ",".join("?" * len(r))), r)
    return len(missing)


def register(sub, common):
    b = sub.add_parser("backup", help="copy the head-end store to a file (online; SQLite or pg_dump format)")
    common(b)
    b.add_argument("file", help="the backup file to write (replaced atomically)")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser("restore", help="replace the head-end store with a backup (stop `serve` first)")
    common(r)
    r.add_argument("file", help="a file made by `meterkit headend backup`")
    r.set_defaults(func=cmd_restore)


def cmd_backup(args):
    from host_tools.cli import emit
    from host_tools.headend.cli import _store
    _store(args).close()                       # exists, and at today's schema
    out = backup(args.db, args.file)
    args.audit["detail"] = {"file": out["file"], "bytes": out["bytes"]}
    if args.json:
        emit(out, True)
    else:
        print(f"backed up {out['db']} to {out['file']} ({out['bytes']} bytes, {out['format']})")
    return 0


def cmd_restore(args):
    from host_tools.cli import emit
    from host_tools.headend.cli import service_running
    from host_tools.headend.store import Store
    running = False
    if dbapi.is_url(args.db) or os.path.exists(args.db):
        s = Store(args.db)
        running = service_running(s)
        s.close()
    out = restore(args.db, args.file, running=running)
    args.audit["detail"] = {"file": out["restored"], "schema_version": out["schema_version"]}
    if args.json:
        emit(out, True)
    else:
        print(f"restored {out['db']} from {out['restored']}: {out['meters']} meter(s), schema version "
              f"{out['schema_version']}" + (f" (migrated {out['migrated']})" if out["migrated"] else ""))
    return 0
