"""`meterkit selftest`: ask a meter to check itself (metering chip, calibration, relay, modem, flash,
clock) and report each item with pass/fail and the meter's reason."""
from host_tools.provision.session import privileged_session


def run_selftest(client, db=None, timeout=15.0):
    """The meter's self-test reply ({"items": [...], "passed", "failed"}). A meter that has left
    factory mode needs a session: its service key comes from the record DB `db`."""
    with privileged_session(client, db, "the self-test") as s:
        out = client.call("selftest", timeout=timeout)
    ident = s.ident
    return {"meter_id": ident.get("meter_id"), "pan": ident.get("pan"), "items": out["items"],
            "passed": out["passed"], "failed": out["failed"]}
