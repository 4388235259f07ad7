"""A poisoned provisioning CSV imports nothing: every field of every row is checked (meter id charset and
length, PAN with Luhn, SGC, TI, KRN, key length, password, duplicates, encoding, BOM), and the operator
gets every bad row with its line number and reason, exit non-zero, never a traceback."""
import csv
import io
import json
import os
import random
import subprocess
import sys

import pytest

from host_tools.errors import UsageError
from host_tools.headend import csvimport
from host_tools.headend.demo import CSV_COLUMNS, make_fleet
from host_tools.headend.store import Store


def meterkit(*args):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def good_rows(tmp_path):
    _, _, rows = make_fleet(str(tmp_path / "fleet"), 3, rng=random.Random(3))
    return rows


def write(path, rows, bom=False, encoding="utf-8"):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode(encoding))
    return str(path)


POISON = [
    ("meter_id", "meters/#", "meter_id 'meters/#' must be"),
    ("meter_id", "+", "meter_id '+' must be"),
    ("meter_id", "x" * 33, "must be 1..32"),
    ("meter_id", "headend", "reserved for the head-end"),
    ("broker_password", "", "broker_password is empty"),
    ("broker_password", "short", "8..128 printable"),
    ("pan", "notapan", "pan 'notapan' is not 18 digits"),
    ("pan", "600727000000010009", "valid Luhn"),
    ("sgc", "abc", "sgc 'abc' is not a supply group code"),
    ("sgc", "0", "sgc '0'"),
    ("ti", "100", "ti '100' is not a tariff index"),
    ("ti", "nan", "ti 'nan'"),
    ("krn", "0", "krn '0' is not a key revision"),
    ("krn", "1e999", "krn '1e999'"),
    ("message_key_hex", "ab" * 31, "62 characters; it must be 64 hex digits"),
    ("message_key_hex", "zz" * 32, "64 hex digits"),
]


@pytest.mark.parametrize("field, value, reason", POISON)
def test_each_poisoned_field_rejects_the_whole_file_with_line_and_reason(tmp_path, good_rows, field, value, reason):
    rows = [dict(r) for r in good_rows]
    rows[1][field] = value
    store = Store(tmp_path / "he.db")
    with pytest.raises(csvimport.CsvRejected) as e:
        store.import_csv(write(tmp_path / "m.csv", rows))
    assert [(n, why) for n, _, why in e.value.problems if reason in why], e.value.problems
    assert {n for n, _, _ in e.value.problems} == {3}, e.value.problems
    assert store.q1("SELECT COUNT(*) AS n FROM meters")["n"] == 0


def test_every_bad_row_is_listed_by_the_cli_as_json_and_nothing_is_imported(tmp_path, good_rows):
    rows = [dict(r) for r in good_rows]
    rows[0]["meter_id"] = "meters/#"
    rows[2]["broker_password"] = ""
    rows.append(dict(rows[1]))                                   # a duplicate of line 3
    db = str(tmp_path / "he.db")
    r = meterkit("headend", "import", write(tmp_path / "m.csv", rows), "--db", db, "--json")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    lines = sorted({p["line"] for p in out["problems"]})
    assert lines == [2, 4, 5], out
    dup = [p["reason"] for p in out["problems"] if p["line"] == 5]
    assert "meter_id also on line 3" in dup and "pan also on line 3" in dup, dup
    assert "3 bad row(s) of 4, nothing imported" in out["error"]
    assert Store(db).q1("SELECT COUNT(*) AS n FROM meters")["n"] == 0
    # the text form says the same on stderr, one line
    r = meterkit("headend", "import", str(tmp_path / "m.csv"), "--db", db)
    assert r.returncode == 2 and "line 2 ('meters/#')" in r.stderr and "line 4" in r.stderr


def test_a_bom_is_fine_and_a_non_utf8_file_is_a_clear_error(tmp_path, good_rows):
    store = Store(tmp_path / "he.db")
    assert store.import_csv(write(tmp_path / "bom.csv", good_rows, bom=True)) == 3
    rows = [dict(r) for r in good_rows]
    rows[2]["serial"] = "SN-é"
    latin = write(tmp_path / "latin.csv", rows, encoding="latin-1")
    r = meterkit("headend", "import", latin, "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "is not UTF-8 text: byte 0xe9 on line 4" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_short_rows_nul_bytes_empty_files_and_known_pans(tmp_path, good_rows):
    store = Store(tmp_path / "he.db")
    p = tmp_path / "short.csv"
    p.write_text(",".join(CSV_COLUMNS) + "\n" + "m1,600727000000010008\n")
    with pytest.raises(csvimport.CsvRejected, match="line 2.*too few fields"):
        store.import_csv(str(p))
    p.write_bytes(b"meter_id,pan\x00\n")
    with pytest.raises(UsageError, match="NUL"):
        store.import_csv(str(p))
    p.write_text("")
    with pytest.raises(UsageError, match="lacks column"):
        store.import_csv(str(p))
    p.write_text(",".join(CSV_COLUMNS) + "\n\n")
    with pytest.raises(UsageError, match="no meter rows"):
        store.import_csv(str(p))
    assert store.import_csv(write(tmp_path / "ok.csv", good_rows)) == 3
    other = dict(good_rows[0], meter_id="another-meter")          # a registered meter's PAN for a new id
    with pytest.raises(csvimport.CsvRejected, match="already registered to meter"):
        store.import_csv(write(tmp_path / "steal.csv", [other]))
    # re-importing the same meters (new keys) is an update, not a conflict
    again = [dict(r, message_key_hex="cd" * 32) for r in good_rows]
    assert store.import_csv(write(tmp_path / "again.csv", again)) == 3
    assert store.meter(good_rows[0]["meter_id"])["message_key_hex"] == "cd" * 32


def test_fuzzed_csv_files_never_escape_as_anything_but_a_usage_error(tmp_path, good_rows):
    """A seeded sample of the benchmark's 10^5 (host_tools/bench/fuzz_bench.py)."""
    from host_tools.bench.fuzz_bench import fuzz_csv
    stats = fuzz_csv(tmp_path, 300, seed=5)
    assert stats["crashes"] == [], stats["crashes"][:3]
    assert stats["rejected"] > 200 and stats["imported"] >= 1, stats
    assert stats["bad_rows_imported"] == 0, stats
