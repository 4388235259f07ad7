"""A demonstration fleet: a keystore and a provisioning CSV for N meters with random keys, in the format
the factory exports (meter_id,pan,serial,sgc,ti,krn,message_key_hex,broker_password). For tests, the
benchmark and trying the head-end without a factory."""
import csv
import json
import os
import secrets

from host_tools.vend.dkga04 import luhn_check_digit

CSV_COLUMNS = ("meter_id", "pan", "serial", "sgc", "ti", "krn", "message_key_hex", "broker_password")


def make_fleet(directory, n, sgc="123457", ti=1, krn=1, iin="600727", seed_serial=1000, rng=None):
    """Write keystore.json and meters.csv into directory; returns (csv_path, keystore_path, rows).
    `rng` (a random.Random) makes the keys reproducible, for seeded scenarios; by default they come from
    the system's secure source."""
    def token_hex(n):
        return "%0*x" % (2 * n, rng.getrandbits(8 * n)) if rng is not None else secrets.token_hex(n)
    os.makedirs(directory, exist_ok=True)
    ks_path = os.path.join(directory, "keystore.json")
    with open(ks_path, "w") as f:
        json.dump({"vending_key_hex": token_hex(20), "sgc": int(sgc), "kt": 2, "base_date": "14"}, f)
    rows = []
    for i in range(n):
        body = iin + "%011d" % (seed_serial + i)
        pan = body + luhn_check_digit(body)
        rows.append({"meter_id": pan, "pan": pan, "serial": "SN%08d" % (seed_serial + i), "sgc": sgc, "ti": ti,
                     "krn": krn, "message_key_hex": token_hex(32), "broker_password": token_hex(8)})
    csv_path = os.path.join(directory, "meters.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return csv_path, ks_path, rows
