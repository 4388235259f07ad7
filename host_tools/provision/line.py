"""Provision one meter on the line: assign its serial and PAN, derive its STS decoder key (DKGA04) inside
the PKCS#11 module that holds the utility's vending key, make random message and service keys and a broker password, write
them over the service port, read the identity back and check every key by challenge, leave factory
mode, run the self-test, and write the manufacturing record.

Order matters for never losing a key: the record (with the message and service keys) is written
before the meter is locked, so a meter can never be locked with keys nobody holds; the self-test
result is added to the record afterwards. A failure before the record is written leaves the meter in
factory mode, so running again with --rekey finishes it."""
import hashlib
import json
import secrets
import time

from host_tools.device.client import ServiceClient
from host_tools.errors import DeviceError, UsageError
from host_tools.provision import keystore as _ks
from host_tools.provision.records import RecordDB
from host_tools.provision.session import authenticate, require_keys
from host_tools.vend import dkga04


def _sgc_ti(ks, sgc, ti):
    sgc = sgc if sgc is not None else ks.get("sgc")
    ti = ti if ti is not None else ks.get("ti")
    if sgc is None or ti is None:
        raise UsageError("no supply group code or tariff index", hint="give --sgc N --ti N (or sgc/ti in the keystore)")
    sgc = str(sgc)
    if not sgc.isdigit() or len(sgc) > 6:
        raise UsageError(f"SGC {sgc!r} must be up to 6 digits", hint="the supply group code, e.g. 123457")
    ti = int(ti)
    if not 0 <= ti <= 99:
        raise UsageError(f"TI {ti} must be 0..99", hint="the tariff index, 2 digits")
    return "%06d" % int(sgc), ti


def _hashes(manifest, firmware_bin):
    out = {"image_sha256": None, "firmware_sha256": None, "manifest_board": None}
    if manifest:
        try:
            m = json.loads(open(manifest, encoding="utf-8").read())
            out["image_sha256"] = m["image"]["sha256"]
            out["manifest_board"] = m.get("board")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"cannot read the build manifest {manifest}: {e}",
                             hint="give build/<board>/manifest.json from `meterkit build`") from None
    if firmware_bin:
        try:
            out["firmware_sha256"] = hashlib.sha256(open(firmware_bin, "rb").read()).hexdigest()
        except OSError as e:
            raise UsageError(f"cannot read {firmware_bin}: {e.strerror}",
                             hint="the firmware.bin that was flashed") from None
    return out


def opaygo_secrets(opaygo=False, key_hex=None, starting_code=None):
    """(key bytes, starting code) or None: given, or made at random with `opaygo` (the secret's 128
    bits and a 9-digit starting code, as an OpenPAYGO platform makes them)."""
    if key_hex is None and starting_code is None and not opaygo:
        return None
    if key_hex is not None:
        key = dkga04.parse_hex_key(key_hex, 16, "--opaygo-key", "the device's 128-bit OpenPAYGO secret")
    else:
        key = secrets.token_bytes(16)
    if starting_code is None:
        starting_code = secrets.randbelow(900000000) + 100000000
    if not 0 <= int(starting_code) <= 999999999:
        raise UsageError(f"--opaygo-starting-code {starting_code} must be 0..999999999", hint="9 digits")
    return key, int(starting_code)


def provision(port, keystore, sgc=None, ti=None, serial=None, operator=None, db=None, rekey=False,
              manifest=None, firmware_bin=None, timeout=5.0, first_serial=1, opaygo=None):
    """Provision the meter on `port`. Returns the summary dict (the record without secrets, plus the
    self-test items). Raises UsageError / DeviceError saying what was wrong and what to do."""
    ks = _ks.load(keystore)                      # every input is checked before the meter is touched
    sgc, ti = _sgc_ti(ks, sgc, ti)
    hashes = _hashes(manifest, firmware_bin)
    records = RecordDB(db) if db else RecordDB()
    try:
        with ServiceClient(port, timeout=timeout) as c:
            return _provision(c, records, ks, sgc, ti, serial, operator, rekey, hashes, first_serial, opaygo)
    finally:
        records.close()


def _provision(c, records, ks, sgc, ti, serial, operator, rekey, hashes, first_serial, opaygo=None):
    before = c.call("identity")
    if before["provisioned"] and not rekey:
        raise UsageError(f"the meter is already provisioned as PAN {before['pan']} (serial {before['serial']})",
                         hint="pass --rekey to give it new keys (its record is replaced)")
    if serial is None:
        serial = before["serial"] if before["provisioned"] else records.reserve_serial(first_serial)
    serial = int(serial)
    if serial < 0:
        raise UsageError(f"serial {serial} must be positive", hint="give --serial N or let the DB pick the next")
    taken = records.by_serial(serial)
    if taken and not (rekey and taken["meter_id"] == before.get("meter_id")):
        raise UsageError(f"serial {serial} is already recorded for PAN {taken['pan']}",
                         hint="leave --serial out to take the next free one, or --rekey that meter")
    pan = _ks.pan_for(ks["iin"], serial)
    meter_id = pan
    if not before["factory_mode"]:
        # A locked meter takes new keys only inside a session opened with its current service key.
        old = records.by_meter_id(before["meter_id"])
        if old is None:
            raise DeviceError(f"the meter ({before['meter_id']}) has left factory mode and this record DB has "
                              "no service key for it", hint="use the record DB it was provisioned with (--db)")
        authenticate(c, bytes.fromhex(old["service_key_hex"]))
    sts_key = ks["vending_key"].decoder_key(sgc, ti, ks["krn"], ks["kt"], pan, ks["base_date"])
    message_key, service_key = secrets.token_bytes(32), secrets.token_bytes(32)
    password = secrets.token_urlsafe(18)
    broker = dict(ks["broker"], username=meter_id, password=password)
    extra = {}
    if opaygo is not None:
        extra = {"opaygo_key": opaygo[0].hex(), "opaygo_starting_code": opaygo[1]}
    c.call("provision", pan=pan, serial=serial, meter_id=meter_id, sts_key=sts_key.hex(), sgc=sgc, ti=ti,
           krn=ks["krn"], kt=ks["kt"], ken=ks["ken"], base_date=ks["base_date"], message_key=message_key.hex(),
           service_key=service_key.hex(), broker=broker, rekey=bool(before["provisioned"]), **extra)
    after = c.call("identity")
    want = {"provisioned": True, "pan": pan, "serial": serial, "meter_id": meter_id, "key_revision": ks["krn"]}
    wrong = {k: after.get(k) for k, v in want.items() if after.get(k) != v}
    if wrong:
        raise DeviceError(f"identity read back wrong: {wrong}", hint="re-provision with --rekey")
    require_keys(c, (("sts", sts_key), ("message", message_key), ("service", service_key)))
    rec = {"serial": serial, "pan": pan, "meter_id": meter_id, "board": after.get("board"),
           "firmware": after.get("firmware"), "image_sha256": hashes["image_sha256"],
           "firmware_sha256": hashes["firmware_sha256"], "sgc": sgc, "ti": ti, "krn": ks["krn"], "kt": ks["kt"],
           "ken": ks["ken"], "base_date": ks["base_date"], "message_key_hex": message_key.hex(),
           "service_key_hex": service_key.hex(), "broker_password": password, "provisioned_at": time.time(),
           "operator": operator, "selftest_passed": None, "selftest": None,
           "opaygo_key_hex": opaygo[0].hex() if opaygo else None, "opaygo_starting_code": opaygo[1] if opaygo else None}
    replacing = bool(before["provisioned"]) or bool(taken)
    records.save(rec, rekey=replacing)           # keys recorded before the lock: never a locked orphan
    c.call("factory_lock")
    authenticate(c, service_key)                 # proves the service key by use, and opens the session
    test = c.call("selftest", timeout=max(c.timeout, 15.0))
    records.set_selftest(serial, test["passed"], test["items"], operator)
    c.call("auth_end")
    summary = {k: rec[k] for k in ("serial", "pan", "meter_id", "board", "firmware", "image_sha256",
                                   "firmware_sha256", "sgc", "ti", "krn", "operator")}
    summary.update(opaygo=bool(opaygo), opaygo_starting_code=opaygo[1] if opaygo else None)
    summary.update(rekey=replacing, factory_mode=False, selftest_passed=bool(test["passed"]),
                   selftest=test["items"], failed=test["failed"])
    return summary
