"""`meterkit selftest`: ask a meter to check itself (metering chip, calibration, relay, modem, flash,
clock) and report each item with pass/fail and the meter's reason."""
from host_tools.errors import DeviceError
from host_tools.provision.records import RecordDB
from host_tools.provision.session import authenticate


def run_selftest(client, db=None, timeout=15.0):
    """The meter's self-test reply ({"items": [...], "passed", "failed"}). A meter that has left
    factory mode needs a session: its service key comes from the record DB `db`."""
    ident = client.call("identity")
    if not ident["factory_mode"]:
        if db is None:
            raise DeviceError(f"the meter {ident['meter_id']} has left factory mode: the self-test needs its "
                              "service key", hint="give --db with the factory record DB that holds it")
        records = RecordDB(db)
        try:
            rec = records.by_meter_id(ident["meter_id"])
        finally:
            records.close()
        if rec is None:
            raise DeviceError(f"no record for meter {ident['meter_id']} in {db}",
                              hint="give the DB it was provisioned with")
        authenticate(client, bytes.fromhex(rec["service_key_hex"]))
    try:
        out = client.call("selftest", timeout=timeout)
    finally:
        if not ident["factory_mode"]:
            client.call("auth_end")
    out = {"meter_id": ident.get("meter_id"), "pan": ident.get("pan"), "items": out["items"],
           "passed": out["passed"], "failed": out["failed"]}
    return out
