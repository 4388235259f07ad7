"""A demonstration fleet: vending settings and a provisioning CSV for N meters with random keys, in the
format the factory exports (meter_id,pan,serial,sgc,ti,krn,message_key_hex,broker_password), and a
vending key in a PKCS#11 module: the one configured ($METERKIT_HSM_PIN set), else a throwaway SoftHSM
token beside the fleet. For tests, the benchmark and trying the head-end without a factory."""
import csv
import json
import os
import secrets

from host_tools.keys.softhsm import ensure_vending_module
from host_tools.vend.dkga04 import luhn_check_digit

CSV_COLUMNS = ("meter_id", "pan", "serial", "sgc", "ti", "krn", "message_key_hex", "broker_password")


def make_fleet(directory, n, sgc="123457", ti=1, krn=1, iin="600727", seed_serial=1000, rng=None):
    """Write keystore.json (the vending settings, no key) and meters.csv into directory; returns
    (csv_path, keystore_path, rows). `rng` (a random.Random) makes the keys reproducible, for seeded
    scenarios; by default they come from the system's secure source. The vending key is the configured
    module's; without one, a demo key (from `rng` too) goes into a SoftHSM token made in `directory`."""
    def token_hex(n):
        return "%0*x" % (2 * n, rng.getrandbits(8 * n)) if rng is not None else secrets.token_hex(n)
    os.makedirs(directory, exist_ok=True)
    ks_path = os.path.join(directory, "keystore.json")
    demo_vending_key = token_hex(20)      # drawn first, as it always was: the seeded keys below stay the same
    ensure_vending_module(directory, demo_vending_key)
    with open(ks_path, "w") as f:
        json.dump({"sgc": int(sgc), "kt": 2, "base_date": "14"}, f)
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
