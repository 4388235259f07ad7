"""The agency's customer CSV import (host_tools/agency/registry.py): valid files with fields replaced
by junk (phones in every form, e-mails, languages, channels, consent, arrears, unknown and shared
meters, missing columns), and mutated bytes read as the CLI reads them (UTF-8 with a BOM allowed).

Invariants: only RegistryError (a one-line refusal) may leave the import; a refused file changes no
customer, meter link or arrears row; an accepted one leaves only rows an independent check accepts."""
import csv
import io
import random
import re
from pathlib import Path

from host_tools.fuzz.harness import Violation
from host_tools.fuzz.mutate import mutate_bytes, mutate_text
from host_tools.headend.demo import make_fleet
from host_tools.headend.store import Store

COLUMNS = ("name", "phone", "meters", "whatsapp", "email", "language", "channels", "consent", "arrears_minor",
           "arrears_share_bp")
BAD = ["", " ", "+2223600000", "0022236000001", "+0223600000", "22236000001", "+22236 00 00 01", "+2223600000١",
       "+１２２２３６０００００１", "a@b", "a@b.c", "@.", "x" * 300, "fr", "ar", "en", "sms;email", "whatsapp", "fax",
       "oui", "yes", "-1", "0", "9001", "2500", "1e3", "٣", "nan", "99999999999999999999999", "\u202e", "a,b", "\"",
       "line\nbreak", "600727000000000009", "600727000000000009;600727000000000009", ";;"]
_PHONE = re.compile(r"\+[1-9][0-9]{7,14}\Z")


def _independent_ok(c, meter_ids):
    return (bool(c["name"].strip()) and bool(_PHONE.match(c["phone"])) and c["language"] in ("fr", "ar")
            and set(c["channels"].split(",")) <= {"sms", "whatsapp", "email"}
            and ("email" not in c["channels"] or c["email"]) and ("whatsapp" not in c["channels"] or c["whatsapp"])
            and all(m in meter_ids for m in c["meters"]))


class CustomerCsvTarget:
    name = "agency_csv"
    cover = ("/host_tools/agency/",)

    def __init__(self, work):
        from host_tools.agency import schema
        self.work = Path(work) / "agency"
        csv_path, _, rows = make_fleet(str(self.work / "fleet"), 4, rng=random.Random(5))
        self.store = Store(self.work / "he.db")
        self.store.import_csv(csv_path)
        schema.migrate(self.store)
        self.meters = [r["meter_id"] for r in rows]
        self.rows = [{"name": "Aminetou Mint Ahmed", "phone": "+22236000001", "meters": self.meters[0],
                      "whatsapp": "+22236000001", "email": "a@example.mr", "language": "ar",
                      "channels": "sms;whatsapp", "consent": "oui", "arrears_minor": "12000", "arrears_share_bp": "2500"},
                     {"name": "Jean Dupont", "phone": "0022236000002", "meters": ";".join(self.meters[1:3]),
                      "whatsapp": "", "email": "", "language": "fr", "channels": "sms", "consent": "0",
                      "arrears_minor": "", "arrears_share_bp": ""}]

    def close(self):
        self.store.close()

    def _text(self, rows, cols=COLUMNS):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def seeds(self):
        return [{"text": self._text(self.rows)}, {"text": self._text(self.rows[1:])}]

    def generate(self, rng):
        rs = [dict(r) for r in self.rows]
        for _ in range(rng.randint(0, 3)):
            r = rng.choice(rs)
            k = rng.choice(COLUMNS)
            r[k] = rng.choice(BAD) if rng.random() < 0.7 else mutate_text(rng, r[k])
        cols = list(COLUMNS)
        if rng.random() < 0.05:
            cols.remove(rng.choice(cols))
        return {"text": self._text(rs, cols)}

    def mutate(self, rng, x):
        if "raw" in x or rng.random() < 0.3:
            data = bytes.fromhex(x["raw"]) if "raw" in x else x["text"].encode()
            return {"raw": mutate_bytes(rng, data).hex()}
        return {"text": mutate_text(rng, x["text"])}

    def _state(self):
        return (self.store.q("SELECT * FROM customers ORDER BY id"),
                self.store.q("SELECT * FROM customer_meters ORDER BY meter_id"),
                self.store.q("SELECT * FROM arrears ORDER BY meter_id"))

    def run(self, x):
        from host_tools.agency import registry
        if "raw" in x:
            try:                     # as `meterkit agency import` reads a file
                text = bytes.fromhex(x["raw"]).decode("utf-8-sig")
            except UnicodeDecodeError:
                return "not_utf8"
        else:
            text = x["text"]
        before = self._state()
        try:
            n = registry.import_csv(self.store, text, 1767571200.0)
        except registry.RegistryError:
            if self._state() != before:
                raise Violation("a refused customer file changed the registry") from None
            return "rejected"
        for c in self.store.q("SELECT * FROM customers"):
            c = dict(c)
            c["meters"] = registry.meters_of(self.store, c["id"])
            if not _independent_ok(c, self.meters):
                raise Violation("imported a customer an independent check refuses: %r" % (c,))
        return "imported" if n else "empty"
