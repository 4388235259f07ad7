"""Fault tickets from customers and from alarms: open -> assigned -> in_progress -> closed, each change
recorded and told to the customer by SMS."""
from host_tools.agency import i18n

STATES = ("open", "assigned", "in_progress", "closed")
CATEGORIES = ("no_power", "meter_display", "token", "billing", "other")


class TicketError(ValueError):
    pass


class Tickets:
    def __init__(self, store, settings, notifier):
        self.store = store
        self.settings = settings
        self.notifier = notifier

    def open(self, customer_id, meter_id, category, description, source="customer", alarm_id=None, actor="customer"):
        if category not in CATEGORIES:
            raise TicketError("choose a category")
        description = (description or "").strip()
        if not 3 <= len(description) <= 2000:
            raise TicketError("describe the fault in 3 to 2000 characters")
        now = self.settings.clock()
        with self.store.tx() as db:
            # RETURNING: the new id in SQLite (3.35+) and PostgreSQL alike
            tid = db.execute("INSERT INTO tickets (customer_id, meter_id, category, description, state, source, alarm_id,"
                             " created, updated) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                             (customer_id, meter_id, category, description, "open", source, alarm_id, now, now)).fetchone()[0]
            db.execute("INSERT INTO ticket_events (ticket_id, at, actor, change, note) VALUES (?,?,?,?,?)",
                       (tid, now, actor, "open", None))
        self._tell(tid)
        return tid

    def change(self, ticket_id, actor, state=None, assigned_to=None, note=None):
        t = self.store.q1("SELECT * FROM tickets WHERE id=?", (ticket_id,))
        if t is None:
            raise TicketError("no ticket %s" % ticket_id)
        if state is not None and state not in STATES:
            raise TicketError("state must be one of " + ", ".join(STATES))
        if assigned_to and state is None and t["state"] == "open":
            state = "assigned"
        now = self.settings.clock()
        changes = []
        with self.store.tx() as db:
            if state and state != t["state"]:
                db.execute("UPDATE tickets SET state=?, updated=? WHERE id=?", (state, now, ticket_id))
                changes.append("state:" + state)
            if assigned_to is not None and assigned_to != (t["assigned_to"] or ""):
                db.execute("UPDATE tickets SET assigned_to=?, updated=? WHERE id=?", (assigned_to or None, now, ticket_id))
                changes.append("assigned:" + (assigned_to or "-"))
            for c in changes or (["note"] if note else []):
                db.execute("INSERT INTO ticket_events (ticket_id, at, actor, change, note) VALUES (?,?,?,?,?)",
                           (ticket_id, now, actor, c, note))
        if any(c.startswith("state:") for c in changes):
            self._tell(ticket_id)
        return changes

    def _tell(self, ticket_id):
        t = self.store.q1("SELECT * FROM tickets WHERE id=?", (ticket_id,))
        if t["customer_id"] is None or self.notifier is None:
            return
        c = self.store.q1("SELECT * FROM customers WHERE id=?", (t["customer_id"],))
        lang = i18n.lang_of(c["language"])
        self.notifier.to_customer(c, "ticket", i18n.sms(lang, "ticket", id=t["id"], state=i18n.t(lang, "t_" + t["state"])),
                                  channels=["sms"])
