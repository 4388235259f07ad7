"""The head-end's doors for outside data, as targets of the shared harness: uplink ingest (genuine,
signed-with-junk-fields at any depth, reflected downlinks, replays, other meters' keys, mutated bytes)
and the provisioning CSV import (field and byte mutations). The generators are the head-end bench's
(host_tools/bench/fuzz_bench.py), which keeps its own loop figures.

Invariants: ingest answers a type or `rejected:<why>`, never raises; a rejected uplink changes no table
but the audit log (`events` rows of source headend), and `up_seq` moves only upwards for an accepted
one. The CSV import takes every row (each passing an independent check) or nothing."""
import csv
import io
import json
import random
import sqlite3
from pathlib import Path

from host_tools.bench import fuzz_bench as fb
from host_tools.errors import MeterkitError
from host_tools.fuzz.harness import Violation
from host_tools.fuzz.mutate import junk, mutate_bytes, mutate_value
from host_tools.headend import envelope
from host_tools.headend.demo import CSV_COLUMNS, make_fleet
from host_tools.headend.store import Store

KINDS = ("genuine", "junk_fields", "deep_junk", "reflected", "replay", "other_key", "bytes")


class IngestTarget:
    name = "headend_ingest"
    cover = ("/host_tools/headend/",)

    def __init__(self, work):
        from host_tools.headend.service import HeadEnd
        from host_tools.sim.net.headend_client import SimHeadEndClient
        from host_tools.sim.net.mqttbroker import SimBroker
        self.work = Path(work) / "ingest"
        self.clock = fb._Clock()
        csv_path, _, rows = make_fleet(str(self.work), 2, rng=random.Random(7))
        self.store = Store(self.work / "he.db", clock=self.clock)
        self.store.import_csv(csv_path)
        self.he = HeadEnd(self.store, "mqtt://in-process", clock=self.clock,
                          client=SimHeadEndClient(SimBroker(self.clock), clock=self.clock)).start()
        self.keys = {r["meter_id"]: bytes.fromhex(r["message_key_hex"]) for r in rows}
        self.ids = sorted(self.keys)
        self.tables = [r["name"] for r in self.store.q("SELECT name FROM sqlite_master WHERE type='table'")]
        self.sent = []

    def close(self):
        self.he.stop()
        self.store.close()

    def seeds(self):
        rng = random.Random(1)
        return [{"m": i, "kind": "genuine", "inner": fb._good_inner(rng, t), "ds": 1}
                for i in (0, 1) for t in fb._UP_TYPES]

    def generate(self, rng):
        t = rng.choice(fb._UP_TYPES)
        x = {"m": rng.randrange(2), "kind": rng.choice(KINDS), "inner": fb._good_inner(rng, t),
             "ds": rng.choice((1, 1, 2, 3, 0, -1, 10 ** 6))}
        if x["kind"] == "junk_fields":
            for f in rng.sample(fb._FIELDS[t], rng.randint(1, 2)):
                x["inner"][f] = junk(rng)
        elif x["kind"] == "deep_junk":
            x["inner"] = mutate_value(rng, x["inner"])
        elif x["kind"] == "bytes":
            x = {"m": x["m"], "raw": mutate_bytes(rng, self._payload(x)).hex()}
        return x

    def mutate(self, rng, x):
        if "raw" in x:
            return {"m": x["m"], "raw": mutate_bytes(rng, bytes.fromhex(x["raw"])).hex()}
        x = dict(x)
        if rng.random() < 0.2:
            x["kind"] = rng.choice(KINDS[:6])
        x["inner"] = mutate_value(rng, x["inner"])
        return x

    def _payload(self, x):
        mid = self.ids[x["m"] % 2]
        other = self.ids[(x["m"] + 1) % 2]
        last = self.store.meter(mid)["up_seq"] or 0
        seq = max(last + x["ds"], 0)
        inner = x["inner"]
        try:
            if x["kind"] == "reflected":
                return envelope.seal(self.keys[mid], mid, seq, {"t": "cmd", "id": "c", "cmd": "relay_open", "args": {}},
                                     direction=envelope.DOWN)
            if x["kind"] == "replay" and self.sent:
                return self.sent[(x["ds"] & 0xFFFF) % len(self.sent)]
            key = self.keys[other] if x["kind"] == "other_key" else self.keys[mid]
            p = envelope.seal(key, mid, seq, inner, direction=envelope.UP)
        except (TypeError, ValueError):
            p = json.dumps({"m": mid, "s": seq, "p": str(inner)[:200], "h": ""}).encode()
        if x["kind"] == "genuine" and len(self.sent) < 64:
            self.sent.append(p)
        return p

    def _counts(self):
        out = {}
        for t in self.tables:
            if t == "events":
                out[t] = self.store.q1("SELECT count(*) AS n FROM events WHERE source != 'headend'")["n"]
            else:
                out[t] = self.store.q1("SELECT count(*) AS n FROM %s" % t)["n"]
        return out

    def run(self, x):
        mid = self.ids[x["m"] % 2]
        payload = bytes.fromhex(x["raw"]) if "raw" in x else self._payload(x)
        before_seq = self.store.meter(mid)["up_seq"]
        before = self._counts()
        before_row = dict(self.store.meter(mid))
        out = self.he.ingest(mid, payload)
        self.clock.t += 1
        after_seq = self.store.meter(mid)["up_seq"]
        if not isinstance(out, str):
            raise Violation("ingest answered %r, not a type or a rejection" % (out,))
        if out.startswith("rejected:"):
            after = self._counts()
            after_row = dict(self.store.meter(mid))
            moved = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            moved.update({k: (before_row[k], after_row[k]) for k in before_row if before_row[k] != after_row[k]})
            if moved:
                raise Violation("a rejected uplink (%s) changed the store: %s" % (out, moved))
            return out
        s = json.loads(payload)["s"]
        if after_seq != s or (before_seq is not None and s <= before_seq):
            raise Violation("accepted uplink s=%s moved up_seq %s -> %s" % (s, before_seq, after_seq))
        return "accepted:" + out


class CsvTarget:
    name = "headend_csv"
    cover = ("/host_tools/headend/",)

    def __init__(self, work):
        self.work = Path(work) / "csv"
        _, _, self.rows = make_fleet(str(self.work / "fleet"), 3, rng=random.Random(3))
        self.store = Store(self.work / "fuzz.db")
        self.path = self.work / "fuzz.csv"

    def close(self):
        self.store.close()

    def _csv(self, rows, cols=CSV_COLUMNS, term="\n"):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator=term)
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def seeds(self):
        return [{"text": self._csv(self.rows)}, {"text": self._csv(self.rows[:1], term="\r\n")}]

    def generate(self, rng):
        rs = [dict(r) for r in self.rows]
        for _ in range(rng.randint(0, 3)):
            rs[rng.randrange(len(rs))][rng.choice(CSV_COLUMNS)] = rng.choice(fb._BAD_VALUES)
        if rng.random() < 0.2:
            rs.append(dict(rng.choice(rs)))
        cols = list(CSV_COLUMNS)
        if rng.random() < 0.05:
            cols.remove(rng.choice(cols))
        return {"text": self._csv(rs, cols, rng.choice(["\n", "\r\n"]))}

    def mutate(self, rng, x):
        data = x["raw"] if "raw" in x else x["text"].encode().hex()
        return {"raw": mutate_bytes(rng, bytes.fromhex(data)).hex()}

    def run(self, x):
        data = bytes.fromhex(x["raw"]) if "raw" in x else x["text"].encode()
        self.path.write_bytes(data)
        before = self.store.q("SELECT * FROM meters ORDER BY meter_id")
        try:
            self.store.import_csv(str(self.path))
        except MeterkitError:
            if self.store.q("SELECT * FROM meters ORDER BY meter_id") != before:
                raise Violation("a refused import changed the meters table") from None
            return "rejected"
        bad = [r["meter_id"] for r in self.store.q("SELECT * FROM meters") if not fb._row_ok(r)]
        if bad:
            raise Violation("the import took rows an independent check refuses: %s" % bad[:3])
        return "imported"
