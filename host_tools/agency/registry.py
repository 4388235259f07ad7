"""The customer registry: customers, their meters, contact details and preferences; CSV import (all or
nothing) including post-paid arrears, recovered by a share of each purchase (never by a cut-off)."""
import csv
import io
import re

from host_tools.agency.i18n import LANGS

CHANNELS = ("sms", "whatsapp", "email")
PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ARREARS_MAX = 10 ** 12     # minor units: far above any real debt, well inside a 64-bit database integer
CSV_COLUMNS = ("name", "phone", "meters", "whatsapp", "email", "language", "channels", "consent",
               "arrears_minor", "arrears_share_bp")


class RegistryError(ValueError):
    pass


def clean_phone(text):
    t = re.sub(r"[\s.-]", "", text or "")
    if t.startswith("00"):
        t = "+" + t[2:]
    if not PHONE.match(t):
        raise RegistryError("%r is not a phone number in international form (e.g. +22236000001)" % (text,))
    return t


def clean_email(text):
    t = (text or "").strip()
    if t and not EMAIL.match(t):
        raise RegistryError("%r is not an e-mail address" % (text,))
    return t or None


def clean_channels(values):
    vals = [v.strip() for v in values if v.strip()]
    bad = [v for v in vals if v not in CHANNELS]
    if bad:
        raise RegistryError("unknown channel(s) %s (sms, whatsapp, email)" % ", ".join(bad))
    return ",".join(c for c in CHANNELS if c in vals) or "sms"


def customer(store, customer_id):
    return store.q1("SELECT * FROM customers WHERE id=?", (customer_id,))


def by_phone(store, phone):
    return store.q1("SELECT * FROM customers WHERE phone=?", (phone,))


def meters_of(store, customer_id):
    return [r["meter_id"] for r in store.q("SELECT meter_id FROM customer_meters WHERE customer_id=? ORDER BY meter_id",
                                           (customer_id,))]


def owner_of(store, meter_id):
    r = store.q1("SELECT customer_id FROM customer_meters WHERE meter_id=?", (meter_id,))
    return r["customer_id"] if r else None


def _row(store, r, n):
    try:
        name = (r.get("name") or "").strip()
        if not name:
            raise RegistryError("a name is needed")
        phone = clean_phone(r.get("phone"))
        wa = clean_phone(r["whatsapp"]) if (r.get("whatsapp") or "").strip() else None
        email = clean_email(r.get("email"))
        lang = (r.get("language") or "fr").strip() or "fr"
        if lang not in LANGS:
            raise RegistryError("language %r is not fr or ar" % lang)
        chans = clean_channels((r.get("channels") or "sms").replace(";", ",").split(","))
        if "email" in chans and not email:
            raise RegistryError("channel email chosen without an e-mail address")
        if "whatsapp" in chans and not wa:
            raise RegistryError("channel whatsapp chosen without a WhatsApp number")
        meters = [m.strip() for m in (r.get("meters") or "").replace(",", ";").split(";") if m.strip()]
        if not meters:
            raise RegistryError("at least one meter is needed")
        for m in meters:
            if store.q1("SELECT meter_id FROM meters WHERE meter_id=?", (m,)) is None:
                raise RegistryError("meter %s is not in the head-end's registry" % m)
        consent = (r.get("consent") or "0").strip().lower() in ("1", "yes", "oui", "true")
        arrears = int((r.get("arrears_minor") or "0").strip() or 0)
        share = int((r.get("arrears_share_bp") or "2500").strip() or 2500)
        if not 0 <= arrears <= ARREARS_MAX or not 0 < share <= 9000:
            raise RegistryError("arrears_minor must be 0..%d and arrears_share_bp 1..9000 (a share of each purchase)"
                                % ARREARS_MAX)
    except ValueError as e:
        raise RegistryError("line %d: %s" % (n, e)) from None
    return {"name": name, "phone": phone, "whatsapp": wa, "email": email, "language": lang, "channels": chans,
            "consent": int(consent), "meters": meters, "arrears": arrears, "share": share}


def import_csv(store, text, now):
    """Add or update customers from CSV text (columns CSV_COLUMNS; meters separated by ';'). All or
    nothing; returns the number of customers. Arrears replace any earlier arrears of the first meter."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = [c for c in ("name", "phone", "meters") if c not in (reader.fieldnames or [])]
        if missing:
            raise RegistryError("the CSV lacks column(s) %s (columns: %s)" % (", ".join(missing), ",".join(CSV_COLUMNS)))
        rows = [_row(store, r, n) for n, r in enumerate(reader, start=2)]
    except csv.Error as e:         # e.g. a bare carriage return inside a field
        raise RegistryError("line %d is not CSV: %s" % (reader.line_num, e)) from None
    seen = {}
    for i, r in enumerate(rows):
        for m in r["meters"]:
            if m in seen and seen[m] != r["phone"]:
                raise RegistryError("line %d: meter %s is given to two customers" % (i + 2, m))
            seen[m] = r["phone"]
    with store.tx() as db:
        for r in rows:
            db.execute("INSERT INTO customers (name, phone, whatsapp, email, language, channels, consent, created)"
                       " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (phone) DO UPDATE SET name=excluded.name,"
                       " whatsapp=excluded.whatsapp, email=excluded.email, language=excluded.language,"
                       " channels=excluded.channels, consent=excluded.consent",
                       (r["name"], r["phone"], r["whatsapp"], r["email"], r["language"], r["channels"],
                        r["consent"], now))
            cid = db.execute("SELECT id FROM customers WHERE phone=?", (r["phone"],)).fetchone()[0]
            for m in r["meters"]:
                db.execute("INSERT INTO customer_meters (meter_id, customer_id) VALUES (?,?) ON CONFLICT (meter_id)"
                           " DO UPDATE SET customer_id=excluded.customer_id", (m, cid))
            if r["arrears"]:
                db.execute("INSERT INTO arrears (meter_id, customer_id, original_minor, balance_minor, share_bp,"
                           " created) VALUES (?,?,?,?,?,?) ON CONFLICT (meter_id) DO UPDATE SET"
                           " customer_id=excluded.customer_id, original_minor=excluded.original_minor,"
                           " balance_minor=excluded.balance_minor, share_bp=excluded.share_bp",
                           (r["meters"][0], cid, r["arrears"], r["arrears"], r["share"], now))
    return len(rows)


def set_contact(store, customer_id, field, value):
    if field not in ("phone", "whatsapp", "email"):
        raise RegistryError("unknown contact field %r" % field)
    with store.tx() as db:
        db.execute("UPDATE customers SET %s=? WHERE id=?" % field, (value, customer_id))


def set_preferences(store, customer_id, language, channels):
    c = customer(store, customer_id)
    if language not in LANGS:
        raise RegistryError("language must be fr or ar")
    chans = clean_channels(channels)
    if "email" in chans and not c["email"]:
        raise RegistryError("add an e-mail address before choosing e-mail")
    if "whatsapp" in chans and not c["whatsapp"]:
        raise RegistryError("add a WhatsApp number before choosing WhatsApp")
    with store.tx() as db:
        db.execute("UPDATE customers SET language=?, channels=? WHERE id=?", (language, chans, customer_id))
