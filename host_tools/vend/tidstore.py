"""The vending side's memory of the last TID issued to each meter and key (SQLite, in the data
folder), so two tokens vended in the same minute never share a TID: a meter refuses the second as
`used`. The head-end keeps the same rule in its own store (headend/vending.py)."""
import os
import sqlite3
import time

from host_tools.errors import UsageError
from host_tools.paths import data_dir

DEFAULT_NAME = "vend-tids.sqlite"


def default_path():
    return str(data_dir() / DEFAULT_NAME)


class TidStore:
    def __init__(self, path=None):
        self.path = path or default_path()
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise UsageError(f"no folder {parent} for the TID store", hint="create it or give --tid-store FILE")
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS last_tid (meter TEXT PRIMARY KEY, tid INTEGER, at REAL)")

    @staticmethod
    def meter_key(pan, sgc, ti, krn, kt, base_date):
        # A TID is unique per decoder key: a new key (KRN, TI, SGC...) starts its own sequence.
        return "%s/%s/%s/%s/%s/%s" % (pan, sgc, ti, krn, kt, base_date)

    def next_tid(self, meter, wanted):
        """max(wanted, last + 1), recorded at once (BEGIN IMMEDIATE: parallel vends never share one)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT tid FROM last_tid WHERE meter=?", (meter,)).fetchone()
            tid = wanted if row is None else max(wanted, row[0] + 1)
            self.db.execute("INSERT OR REPLACE INTO last_tid (meter, tid, at) VALUES (?,?,?)", (meter, tid, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return tid

    def last(self, meter):
        row = self.db.execute("SELECT tid FROM last_tid WHERE meter=?", (meter,)).fetchone()
        return None if row is None else row[0]

    def record(self, meter, tid):
        """An explicitly chosen TID: remembered if it is the highest yet."""
        last = self.last(meter)
        if last is None or tid > last:
            self.db.execute("INSERT OR REPLACE INTO last_tid (meter, tid, at) VALUES (?,?,?)", (meter, tid, time.time()))
        return last

    def close(self):
        self.db.close()
