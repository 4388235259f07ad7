"""Post-paid arrears, loaded on the meter as debt and recovered there (issue 15): the meter takes its
arrears share of every top-up, whatever the channel (a purchase here, a token typed on the keypad or sent
by SMS), and never opens the supply for arrears. The agency takes nothing at payment time.

The agency keeps the book. `arrears` (one row per meter): `original_minor` is the arrears given to the
meter in total, `balance_minor` what is left as the meter last reported it (until its first report, what
was given), `recovered_minor` what was recovered (at payment time before migration 3, then by the meter's
`debt_recovered` reports), `share_bp` the share of each top-up. `arrears_loads`: each amount sent, with
its state: pending (to send) -> queued (a `load_debt` command in the head-end's outbox, message id from the
meter and the load's ref) -> loaded (the meter's `done`, applied or already applied) | refused (the meter's
or the head-end's refusal, with why). `sync()` moves them on and reads the meters' reports; it is part of
the agency worker's round."""
import json

from host_tools.errors import MeterkitError
from host_tools.headend import debt

SHARE_MAX_BP = 9000          # the meter never takes more of a top-up for arrears (credit/ledger.py)
AMOUNT_MAX_MINOR = debt.AMOUNT_MAX_MINOR


class ArrearsError(ValueError):
    pass


def check(amount_minor, share_bp):
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or not 0 <= amount_minor <= AMOUNT_MAX_MINOR:
        raise ArrearsError("arrears must be 0..%d minor units" % AMOUNT_MAX_MINOR)
    if isinstance(share_bp, bool) or not isinstance(share_bp, int) or not 0 < share_bp <= SHARE_MAX_BP:
        raise ArrearsError("the arrears share must be 1..%d bp (a share of each top-up, never all of it)"
                           % SHARE_MAX_BP)


def add_load(db, meter_id, customer_id, amount_minor, share_bp, now):
    """Add `amount_minor` of arrears to the meter's (in the caller's transaction): a pending load that the
    worker sends to the meter. Returns the load's ref."""
    check(amount_minor, share_bp)
    if amount_minor <= 0:
        raise ArrearsError("an arrears load must be above 0")
    n = db.execute("SELECT COUNT(*) FROM arrears_loads WHERE meter_id=?", (meter_id,)).fetchone()[0]
    ref = "arrears-%d" % (n + 1)
    db.execute("INSERT INTO arrears_loads (meter_id, customer_id, amount_minor, share_bp, ref, state, created, updated)"
               " VALUES (?,?,?,?,?,?,?,?)", (meter_id, customer_id, amount_minor, share_bp, ref, "pending", now, now))
    row = db.execute("SELECT meter_id FROM arrears WHERE meter_id=?", (meter_id,)).fetchone()
    if row is None:
        db.execute("INSERT INTO arrears (meter_id, customer_id, original_minor, balance_minor, share_bp, created)"
                   " VALUES (?,?,?,?,?,?)", (meter_id, customer_id, amount_minor, amount_minor, share_bp, now))
    else:
        db.execute("UPDATE arrears SET customer_id=?, original_minor=original_minor+?, balance_minor=balance_minor+?,"
                   " share_bp=? WHERE meter_id=?", (customer_id, amount_minor, amount_minor, share_bp, meter_id))
    return ref


def set_total(db, meter_id, customer_id, total_minor, share_bp, now):
    """The meter's arrears from post-paid are `total_minor` in all (a CSV import): load what was not given yet,
    so importing the same file twice loads nothing twice. A total below what was given is refused (a meter's
    debt is not taken back by an import). Returns the ref of a new load, or None."""
    check(total_minor, share_bp)
    row = db.execute("SELECT original_minor FROM arrears WHERE meter_id=?", (meter_id,)).fetchone()
    given = row[0] if row is not None else 0
    if total_minor < given:
        raise ArrearsError("meter %s was given %d of arrears already; an import cannot lower it to %d"
                           % (meter_id, given, total_minor))
    if total_minor == given:
        return None
    return add_load(db, meter_id, customer_id, total_minor - given, share_bp, now)


class ArrearsBook:
    def __init__(self, store, settings):
        self.store = store
        self.settings = settings

    def sync(self):
        """Send pending loads, record the meters' answers, and read their reports. Returns counts."""
        now = self.settings.clock()
        did = {"queued": 0, "loaded": 0, "refused": 0, "reports": 0}
        for ld in self.store.q("SELECT * FROM arrears_loads WHERE state='pending' ORDER BY id"):
            try:
                q = debt.queue_debt(self.store, ld["meter_id"], ld["amount_minor"], ld["ref"], ld["share_bp"], now=now)
            except MeterkitError as e:       # a kWh meter, a meter gone from the registry: said, never retried
                self._move(ld["id"], "pending", "refused", code="not_sent", note=str(e)[:200])
                did["refused"] += 1
                continue
            did["queued"] += self._move(ld["id"], "pending", "queued", msg_id=q["msg_id"])
        rows = self.store.q("SELECT l.id, m.code, m.detail FROM arrears_loads l JOIN messages m ON m.msg_id=l.msg_id "
                            "WHERE l.state='queued' AND m.state='done'")
        for r in rows:
            detail = json.loads(r["detail"] or "{}")
            if r["code"] == "done":
                did["loaded"] += self._move(r["id"], "queued", "loaded", code="done")
            else:
                did["refused"] += self._move(r["id"], "queued", "refused", code=r["code"],
                                             note=str(detail.get("why") or detail)[:200])
        did["reports"] = self._reports()
        return did

    def _move(self, load_id, frm, to, **cols):
        sets = ", ".join(["state=?", "updated=?"] + ["%s=?" % k for k in cols])
        with self.store.tx() as db:
            return db.execute("UPDATE arrears_loads SET %s WHERE id=? AND state=?" % sets,
                              [to, self.settings.clock()] + list(cols.values()) + [load_id, frm]).rowcount

    def _reports(self):
        """The meters' `debt_loaded` and `debt_recovered` events since the last round, in the order they were
        received: each says what arrears the meter holds now; a recovery adds to what was recovered."""
        cur = self.store.q1("SELECT value FROM cursors WHERE name='arrears_events'")
        last = cur["value"] if cur else 0
        rows = self.store.q("SELECT id, meter_id, kind, at, data FROM events WHERE id>? AND source='meter' AND kind IN "
                            "('debt_loaded', 'debt_recovered') ORDER BY id LIMIT 5000", (last,))
        if not rows:
            return 0
        n = 0
        with self.store.tx() as db:
            for e in rows:
                last = e["id"]
                d = (json.loads(e["data"]) or {}).get("data") or {}
                left = d.get("arrears_left") if e["kind"] == "debt_recovered" else d.get("arrears")
                got = d.get("arrears", 0) if e["kind"] == "debt_recovered" else 0
                if not isinstance(left, int) or isinstance(left, bool) or left < 0:
                    continue                 # a recovery of friendly-period debt only, or an older meter
                got = got if isinstance(got, int) and not isinstance(got, bool) and got > 0 else 0
                n += db.execute("UPDATE arrears SET balance_minor=?, recovered_minor=recovered_minor+?, reported_at=? "
                                "WHERE meter_id=?", (left, got, e["at"], e["meter_id"])).rowcount
            db.execute("INSERT INTO cursors (name, value) VALUES ('arrears_events', ?) ON CONFLICT (name) DO "
                       "UPDATE SET value=excluded.value", (last,))
        return n


def recovered_by_period(store, period):
    """{period: arrears minor units the meters reported recovered} (period(ts) -> key)."""
    out = {}
    for e in store.q("SELECT at, data FROM events WHERE source='meter' AND kind='debt_recovered'"):
        d = (json.loads(e["data"]) or {}).get("data") or {}
        a = d.get("arrears")
        if isinstance(a, int) and not isinstance(a, bool) and a > 0:
            k = period(e["at"])
            out[k] = out.get(k, 0) + a
    return out
