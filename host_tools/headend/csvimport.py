"""Checking a provisioning CSV (the factory's export) before anything is imported: every field of every
row, so that a file with any bad row imports nothing and the operator gets every problem at once, each
with its line number and reason.

What a meter record must be:
- `meter_id`: 1..32 of `A-Z a-z 0-9 _ -` (it becomes MQTT topic levels and a broker user name, so `/`,
  `#`, `+`, spaces and control characters are out), not a name reserved for the head-end's own broker
  users (`headend...`), once per file;
- `pan`: the STS meter PAN, 18 digits ending in its Luhn check digit, once per file and not another
  registered meter's;
- `serial`: up to 64 printable characters; `sgc`: the supply group code, 1..6 digits (1..999999);
  `ti`: tariff index 0..99; `krn`: key revision 1..9;
- `message_key_hex`: 64 hex digits (32 bytes); `broker_password`: 8..128 printable ASCII characters,
  no spaces.
The file is UTF-8 (a byte-order mark is fine); extra columns are ignored."""
import csv
import io
import re

from host_tools.errors import UsageError
from host_tools.vend.dkga04 import luhn_check_digit

REQUIRED_COLUMNS = ("meter_id", "pan", "serial", "sgc", "ti", "krn", "message_key_hex", "broker_password")
METER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
RESERVED_PREFIX = "headend"      # the head-end's own broker users (broker-config)
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}\Z")
_PASSWORD = re.compile(r"[\x21-\x7e]{8,128}\Z")
_SERIAL = re.compile(r"[\x20-\x7e]{0,64}\Z")
_SHOWN = 20                      # bad rows spelled out in the error message (all of them in `problems`)


class CsvRejected(UsageError):
    """The file was refused; `problems` is [(line, meter id as written or None, reason)]."""

    def __init__(self, path, problems, total_rows):
        self.problems = problems
        shown = "; ".join(f"line {n}" + (f" ({_show(m)})" if m else "") + f": {why}" for n, m, why in problems[:_SHOWN])
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        bad_lines = len({n for n, _, _ in problems})
        super().__init__(f"{path}: {bad_lines} bad row(s) of {total_rows}, nothing imported: {shown}{more}",
                         hint="fix the rows listed and import the whole file again")

    def as_dict(self):
        d = super().as_dict()
        d["problems"] = [{"line": n, "meter_id": m, "reason": why} for n, m, why in self.problems]
        return d


def _show(value, limit=40):
    """A value as text for a message: quoted, printable, cut; never re-read as a number."""
    text = repr(str(value))
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def pan_ok(pan):
    return len(pan) == 18 and pan.isascii() and pan.isdigit() and luhn_check_digit(pan[:-1]) == pan[-1]


def _digits(text, lo, hi, width):
    if not (text.isascii() and text.isdigit() and 1 <= len(text) <= width):
        return None
    n = int(text)
    return n if lo <= n <= hi else None


def check_row(r):
    """(normalised row tuple, [reasons]) for one CSV record (a dict of stripped texts)."""
    bad = []
    mid = r["meter_id"]
    if not METER_ID.match(mid):
        bad.append(f"meter_id {_show(mid)} must be 1..32 of A-Z a-z 0-9 _ -")
    elif mid.lower().startswith(RESERVED_PREFIX):
        bad.append(f"meter_id {_show(mid)} is reserved for the head-end's broker users")
    if not pan_ok(r["pan"]):
        bad.append(f"pan {_show(r['pan'])} is not 18 digits with a valid Luhn check digit")
    if not _SERIAL.match(r["serial"]):
        bad.append("serial must be up to 64 printable characters")
    sgc = _digits(r["sgc"], 1, 999999, 6)
    if sgc is None:
        bad.append(f"sgc {_show(r['sgc'])} is not a supply group code (1..6 digits, 1..999999)")
    ti = _digits(r["ti"], 0, 99, 2)
    if ti is None:
        bad.append(f"ti {_show(r['ti'])} is not a tariff index 0..99")
    krn = _digits(r["krn"], 1, 9, 1)
    if krn is None:
        bad.append(f"krn {_show(r['krn'])} is not a key revision 1..9")
    if not _HEX64.match(r["message_key_hex"]):
        bad.append(f"message_key_hex has {len(r['message_key_hex'])} characters; it must be 64 hex digits")
    pw = r["broker_password"]
    if not pw:
        bad.append("broker_password is empty")
    elif not _PASSWORD.match(pw):
        bad.append("broker_password must be 8..128 printable ASCII characters without spaces")
    row = (mid, r["pan"], r["serial"], r["sgc"], ti, krn,
           r["message_key_hex"].lower(), pw)
    return row, bad


def read(path, known_pans=None):
    """The checked rows of a provisioning CSV, as tuples (meter_id, pan, serial, sgc, ti, krn, key_hex,
    password); raises CsvRejected listing every bad row, or UsageError for an unreadable file.
    `known_pans`: {pan: meter_id} already registered (a PAN belongs to one meter)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", hint="give the factory's CSV export") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UsageError(f"{path} is not UTF-8 text: byte 0x{raw[e.start]:02x} on line {line}",
                         hint="export the CSV as UTF-8") from None
    if "\x00" in text:
        raise UsageError(f"{path} contains NUL characters: not a CSV text file", hint="give the factory's CSV export")
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra")
    fields = [(c or "").strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = fields
    missing = [c for c in REQUIRED_COLUMNS if c not in fields]
    if missing:
        raise UsageError(f"{path} lacks column(s) {', '.join(missing)}" +
                         (f" (its header is {_show(','.join(fields), 80)})" if fields else " (it is empty)"),
                         hint="columns needed: " + ",".join(REQUIRED_COLUMNS))
    dup_cols = sorted({c for c in fields if fields.count(c) > 1 and c in REQUIRED_COLUMNS})
    if dup_cols:
        raise UsageError(f"{path} has column(s) {', '.join(dup_cols)} more than once", hint="one column each")
    known_pans = known_pans or {}
    problems, rows, ids, pans = [], [], {}, {}
    total = 0
    try:
        for r in reader:
            line = reader.line_num
            if not any((v or "").strip() for k, v in r.items() if k != "\x00extra"):
                continue                      # a blank line
            total += 1
            if any(r.get(c) is None for c in REQUIRED_COLUMNS):
                problems.append((line, (r.get("meter_id") or "").strip() or None, "too few fields"))
                continue
            rec = {c: r[c].strip() for c in REQUIRED_COLUMNS}
            row, bad = check_row(rec)
            mid, pan = rec["meter_id"], rec["pan"]
            if mid in ids:
                bad.append(f"meter_id also on line {ids[mid]}")
            else:
                ids[mid] = line
            if pan in pans:
                bad.append(f"pan also on line {pans[pan]}")
            else:
                pans[pan] = line
                if known_pans.get(pan, mid) != mid:
                    bad.append(f"pan is already registered to meter {known_pans[pan]!r}")
            problems.extend((line, mid or None, why) for why in bad)
            if not bad:
                rows.append(row)
    except csv.Error as e:
        problems.append((reader.line_num, None, f"not CSV: {e}"))
    if problems:
        raise CsvRejected(path, problems, total)
    if not rows:
        raise UsageError(f"{path} has no meter rows", hint="one row per meter under the header line")
    return rows
