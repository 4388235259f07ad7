"""Fuzzing the head-end's two doors for outside data (issue 16): uplink ingest (envelopes, results,
readings, events, statements, rejects: mutated bytes, reflected downlinks, replays, and correctly
signed messages whose fields are junk) and the provisioning CSV import (field and byte mutations).

Invariants checked on every input: nothing escapes but a rejection (ingest) or a UsageError (import);
`up_seq` moves only for an accepted uplink and only upwards; an import either takes every row, each of
which passes an independent check, or nothing. `make bench-long` runs 10^5 inputs each, `make bench`
10^4; the tests run a seeded sample. Keys: fuzz_ingest_inputs, fuzz_ingest_per_s, fuzz_ingest_accepted, fuzz_ingest_crashes,
fuzz_csv_inputs, fuzz_csv_per_s, fuzz_csv_imported, fuzz_csv_crashes."""
import csv
import io
import json
import random
import re
import tempfile
import time
import traceback
from pathlib import Path

from host_tools.errors import MeterkitError
from host_tools.fuzz.mutate import mutate_bytes
from host_tools.headend import envelope
from host_tools.headend.demo import CSV_COLUMNS, make_fleet
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store
from host_tools.vend.dkga04 import luhn_check_digit

N = 100_000

_JUNK = [None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 80, -2 ** 70, 1.5, float("inf"), float("nan"), "",
         "x", "0", "1e999", "2026-13", "2026-01", "meters/#", "\u0000", "é" * 50, "x" * 300, [], [1, "a"],
         ["tamper", "cover"], {}, {"a": {"b": [1]}}, {"rssi": -70}]
_UP_TYPES = ("result", "reading", "event", "statement", "reject")
_FIELDS = {"result": ("ref", "code", "detail"),
           "reading": ("ts", "import_wh", "export_wh", "credit", "debt", "p_w", "supply", "tamper", "reasons",
                       "link", "mode"),
           "event": ("seq", "ts", "kind", "data"), "statement": ("month", "import_wh", "cost", "topups", "credit"),
           "reject": ("why", "s")}


class _Clock:
    def __init__(self):
        self.t = 1767571200.0

    def __call__(self):
        return self.t


def _good_inner(rng, t):
    if t == "result":
        return {"t": t, "ref": "t-%x" % rng.getrandbits(24), "code": rng.choice(["accepted", "used", "done", "old"]),
                "detail": {"credit": rng.randrange(10 ** 6)}}
    if t == "reading":
        return {"t": t, "ts": 1767571200 + rng.randrange(10 ** 6), "import_wh": rng.randrange(10 ** 7),
                "export_wh": 0, "credit": rng.randrange(10 ** 6), "debt": 0, "p_w": rng.randrange(5000),
                "supply": "closed", "tamper": [], "reasons": rng.choice(["", "NO_CREDIT|REMOTE", []]),
                "link": {"rssi": -70}, "mode": "money"}
    if t == "event":
        return {"t": t, "seq": rng.randrange(1000), "ts": 1767571200, "kind": "low_credit", "data": {}}
    if t == "statement":
        return {"t": t, "month": "2026-%02d" % rng.randint(1, 12), "import_wh": 1, "cost": 2, "topups": 0, "credit": 5}
    return {"t": t, "why": "stale", "s": rng.randrange(100)}


def fuzz_ingest(n=N, seed=1):
    """Feed n uplinks to a real HeadEnd (in-process broker, virtual clock, SQLite in a temp folder)."""
    from host_tools.sim.net.headend_client import SimHeadEndClient
    from host_tools.sim.net.mqttbroker import SimBroker
    rng = random.Random(seed)
    stats = {"inputs": 0, "accepted": 0, "rejected": {}, "crashes": [], "counter_errors": []}
    with tempfile.TemporaryDirectory(prefix="fuzz-ingest-") as d:
        clock = _Clock()
        csv_path, _, rows = make_fleet(d, 2, rng=random.Random(seed))
        store = Store(Path(d) / "he.db", clock=clock)
        store.import_csv(csv_path)
        he = HeadEnd(store, "mqtt://in-process", clock=clock,
                     client=SimHeadEndClient(SimBroker(clock), clock=clock)).start()
        keys = {r["meter_id"]: bytes.fromhex(r["message_key_hex"]) for r in rows}
        ids = list(keys)
        seqs = {m: 0 for m in ids}
        sent = []                                    # genuine uplinks, for replays
        t0 = time.perf_counter()
        for i in range(n):
            mid = rng.choice(ids)
            other = ids[1] if mid == ids[0] else ids[0]
            t = rng.choice(_UP_TYPES)
            inner = _good_inner(rng, t)
            kind = rng.random()
            seq = seqs[mid] + rng.randint(1, 3)
            if kind < 0.25:                          # genuine
                payload = envelope.seal(keys[mid], mid, seq, inner, direction=envelope.UP)
                sent.append((mid, payload))
            elif kind < 0.45:                        # signed, with junk fields (the MAC does not save us here)
                for f in rng.sample(_FIELDS[t], rng.randint(1, 2)):
                    inner[f] = rng.choice(_JUNK)
                if rng.random() < 0.1:
                    inner["t"] = rng.choice(["token", "cmd", "x", 7, None])
                try:
                    payload = envelope.seal(keys[mid], mid, seq, inner, direction=envelope.UP)
                except (TypeError, ValueError):      # nan/inf in JSON are fine for json.dumps; keep going
                    continue
            elif kind < 0.55:                        # reflected downlink (our own, signed for `down`)
                payload = envelope.seal(keys[mid], mid, seq + 100, {"t": "cmd", "id": "c-%d" % i, "cmd": "relay_open",
                                                                    "args": {}}, direction=envelope.DOWN)
            elif kind < 0.65 and sent:               # replay of an earlier genuine uplink
                mid, payload = rng.choice(sent)
            elif kind < 0.72:                        # another meter's key / topic
                payload = envelope.seal(keys[other], mid, seq, inner, direction=envelope.UP)
            else:                                    # mutated bytes of a genuine one
                payload = mutate_bytes(rng, envelope.seal(keys[mid], mid, seq, inner, direction=envelope.UP))
            before = store.meter(mid)["up_seq"]
            stats["inputs"] += 1
            try:
                out = he.ingest(mid, payload)
            except Exception:
                stats["crashes"].append((payload[:200], traceback.format_exc(limit=3)))
                continue
            after = store.meter(mid)["up_seq"]
            if out.startswith("rejected:"):
                why = out.split(":", 1)[1]
                stats["rejected"][why] = stats["rejected"].get(why, 0) + 1
                if after != before:
                    stats["counter_errors"].append((out, before, after))
            else:
                stats["accepted"] += 1
                s = json.loads(payload)["s"]
                if after != s or (before is not None and s <= before):
                    stats["counter_errors"].append((out, before, after, s))
                seqs[mid] = max(seqs[mid], s)
            clock.t += 1
        stats["seconds"] = time.perf_counter() - t0
        he.stop()
        store.close()
    return stats


# -- CSV import -----------------------------------------------------------------------------------------
_BAD_VALUES = ["", " ", "meters/#", "a+b", "headend", "x" * 33, "notapan", "600727000000010009", "1e999", "nan",
               "-1", "0", "100", "abc", "ab" * 31, "zz" * 32, "é", "\u202e", "a\tb", "pw", "p w space",
               "\"quoted\"", "a,b", "line\nbreak", "٣٤٥", "0x10", "１２３"]
_METER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


def _row_ok(r):
    """An independent check of a stored meter row (not csvimport's own code)."""
    pan = r["pan"]
    return (bool(_METER_ID.match(r["meter_id"])) and not r["meter_id"].lower().startswith("headend")
            and len(pan) == 18 and pan.isascii() and pan.isdigit() and luhn_check_digit(pan[:-1]) == pan[-1]
            and r["sgc"].isascii() and r["sgc"].isdigit() and 1 <= int(r["sgc"]) <= 999999
            and 0 <= r["ti"] <= 99 and 1 <= r["krn"] <= 9 and len(bytes.fromhex(r["message_key_hex"])) == 32
            and 8 <= len(r["broker_password"]) <= 128 and " " not in r["broker_password"])


def fuzz_csv(directory, n=N, seed=1):
    """Import n mutated provisioning files into one store; returns counts and any escaped exception."""
    rng = random.Random(seed)
    directory = Path(directory)
    _, _, rows = make_fleet(str(directory / "fleet"), 3, rng=random.Random(seed))
    store = Store(directory / "fuzz.db")
    path = directory / "fuzz.csv"
    stats = {"inputs": 0, "imported": 0, "rejected": 0, "crashes": [], "bad_rows_imported": 0}
    t0 = time.perf_counter()
    for i in range(n):
        rs = [dict(r) for r in rows]
        for _ in range(rng.randint(0, 3)):
            rs[rng.randrange(len(rs))][rng.choice(CSV_COLUMNS)] = rng.choice(_BAD_VALUES)
        if rng.random() < 0.2:
            rs.append(dict(rng.choice(rs)))          # duplicate
        buf = io.StringIO()
        cols = list(CSV_COLUMNS)
        if rng.random() < 0.05:
            cols.remove(rng.choice(cols))
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator=rng.choice(["\n", "\r\n"]))
        w.writeheader()
        w.writerows(rs)
        data = buf.getvalue().encode("utf-8")
        p = rng.random()
        if p < 0.1:
            data = b"\xef\xbb\xbf" + data
        elif p < 0.15:
            data = buf.getvalue().encode("latin-1", "replace") + b"\xe9"
        elif p < 0.35:
            data = mutate_bytes(rng, data)
        path.write_bytes(data)
        stats["inputs"] += 1
        try:
            store.import_csv(str(path))
        except MeterkitError:
            stats["rejected"] += 1
            continue
        except Exception:
            stats["crashes"].append((data[:300], traceback.format_exc(limit=3)))
            continue
        stats["imported"] += 1
        if i % 50 == 0 or stats["imported"] < 50:
            stats["bad_rows_imported"] += sum(1 for r in store.q("SELECT * FROM meters") if not _row_ok(r))
    stats["seconds"] = time.perf_counter() - t0
    store.close()
    return stats


def run_long():
    return run(N)


def run(n=N // 10):
    out = {}
    s = fuzz_ingest(n)
    out.update(fuzz_ingest_inputs=s["inputs"], fuzz_ingest_per_s=round(s["inputs"] / s["seconds"]),
               fuzz_ingest_accepted=s["accepted"], fuzz_ingest_crashes=len(s["crashes"]),
               fuzz_ingest_counter_errors=len(s["counter_errors"]))
    with tempfile.TemporaryDirectory(prefix="fuzz-csv-") as d:
        c = fuzz_csv(d, n)
    out.update(fuzz_csv_inputs=c["inputs"], fuzz_csv_per_s=round(c["inputs"] / c["seconds"]),
               fuzz_csv_imported=c["imported"], fuzz_csv_crashes=len(c["crashes"]),
               fuzz_csv_bad_rows_imported=c["bad_rows_imported"])
    if s["crashes"] or c["crashes"] or s["counter_errors"] or c["bad_rows_imported"]:
        raise RuntimeError(f"fuzzing found faults: {out}; first: {(s['crashes'] + c['crashes'] + s['counter_errors'])[:2]}")
    return out
