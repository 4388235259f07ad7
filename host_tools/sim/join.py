"""Put a simulated meter on a running head-end from the command line (`meterkit sim start --headend DB`):
give it a PAN and keys as the factory would, register it in the head-end's database (as `headend
import` does), provision it over its service port with the broker's address, and power-cycle it so its
cellular side connects through the simulated modem to the real broker. The head-end then delivers
top-ups to it like to any meter."""
import csv
import os
import secrets
import tempfile

from host_tools.errors import SimulationError, UsageError
from host_tools.headend import vending
from host_tools.headend.broker import parse_url
from host_tools.headend.demo import CSV_COLUMNS
from host_tools.headend.store import Store
from host_tools.vend.dkga04 import luhn_check_digit

SIM_IIN = "600727"
SIM_SERIAL_BASE = 90000000     # simulated meters' serials: far from a factory's


def broker_of(store, broker_url=None):
    """(host, port) of the broker: --broker, else the address `headend serve` recorded in its DB."""
    url = broker_url or store.service("broker_address")
    if not url:
        raise UsageError("no broker known for this head-end",
                         hint="start `meterkit headend serve --db DB` first (it records its broker), or give "
                              "--broker mqtt://HOST:PORT")
    host, port, _, _ = parse_url(url)
    return host, port


def register_meters(store, keystore, n):
    """Make `n` new meter rows (PAN, serial, message key, broker password) and import them."""
    taken = [int(r["serial"][2:]) for r in store.meters()
             if (r["serial"] or "").startswith("SN9") and r["serial"][2:].isdigit()]
    first = max([SIM_SERIAL_BASE] + [s + 1 for s in taken])
    rows = []
    for i in range(n):
        body = SIM_IIN + "%011d" % (first + i)
        pan = body + luhn_check_digit(body)
        rows.append({"meter_id": pan, "pan": pan, "serial": "SN%08d" % (first + i),
                     "sgc": "%06d" % int(keystore.get("sgc", 123457)), "ti": int(keystore.get("ti", 1)),
                     "krn": int(keystore.get("krn", 1)), "message_key_hex": secrets.token_hex(32),
                     "broker_password": secrets.token_hex(8)})
    fd, path = tempfile.mkstemp(suffix=".csv", prefix="sim-meters-")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        store.import_csv(path)
    finally:
        os.unlink(path)
    return rows


def provision_meter(meter, store, keystore, row, broker):
    """Write identity and keys into a booted simulated meter and restart it so its link comes up."""
    dk = vending.decoder_key(keystore, store.meter(row["meter_id"]))
    r = meter.request("provision", pan=row["pan"], serial=int(row["serial"][2:]), meter_id=row["meter_id"],
                      sgc=row["sgc"], ti=int(row["ti"]), krn=int(row["krn"]), kt=int(keystore["kt"]),
                      sts_key=dk.hex(), message_key=row["message_key_hex"], service_key=secrets.token_hex(32),
                      base_date=str(keystore["base_date"]),
                      broker={"host": broker[0], "port": broker[1], "username": row["meter_id"],
                              "password": row["broker_password"]})
    if not r.get("ok"):
        raise SimulationError("the simulated meter refused provisioning: %s" % r.get("error"),
                              hint="see %s" % meter.log_path)
    meter.power_cut()          # the application starts its cellular side at boot, once provisioned


class HeadendJoin:
    """What `serve` needs to join its meters: open with the head-end DB (a SQLite file or a
    postgresql:// URL, as `headend serve --db` takes), vending settings (the vending
    key is in the PKCS#11 module) and broker."""

    def __init__(self, db, keystore_path=None, broker_url=None):
        from host_tools.headend.db import is_url
        if not db or not is_url(db) and not os.path.exists(db):   # a SQLite file, or a PostgreSQL URL
            raise UsageError(f"no head-end database at {db}",
                             hint="start `meterkit headend serve --db DB` (it creates it) and give the same --headend DB")
        self.keystore = vending.load_keystore(keystore_path)
        self.store = Store(db)
        try:
            self.broker = broker_of(self.store, broker_url)
        except BaseException:
            self.store.close()
            raise
        self.rows = []

    def prepare(self, n):
        self.rows = register_meters(self.store, self.keystore, n)
        return self.rows

    def join(self, meter, i):
        provision_meter(meter, self.store, self.keystore, self.rows[i], self.broker)
        return self.rows[i]["meter_id"]

    def online(self, meter_ids):
        """True when the head-end sees every one of `meter_ids` connected (its broker status topic)."""
        status = {r["meter_id"]: r["status"] for r in self.store.meters()}
        return all(status.get(mid) == "online" for mid in meter_ids)

    def close(self):
        self.store.close()
