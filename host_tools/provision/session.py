"""Host side of the meter's service-port security: the challenge-response that opens a privileged
session (HMAC-SHA-256(service key, nonce)) and key checks that prove a key is in the meter without
reading it back (the MAC formula is the firmware's own, `provision.info.key_check_mac`)."""
import hashlib
import hmac
import secrets

from host_tools.errors import DeviceError
from host_tools.fwimport import firmware_module

_info = firmware_module("provision.info")


def authenticate(client, service_key):
    """Open a privileged session on a locked meter; DeviceError if the meter refuses the MAC."""
    nonce = bytes.fromhex(client.call("auth_challenge")["nonce"])
    return client.call("auth", mac=hmac.new(service_key, nonce, hashlib.sha256).hexdigest())


def key_check(client, name, key):
    """True if the meter's key `name` (sts, message, service) is `key`: it MACs a fresh challenge."""
    challenge = secrets.token_bytes(16)
    got = client.call("key_check", key=name, challenge=challenge.hex())["mac"]
    return hmac.compare_digest(got, _info.key_check_mac(key, challenge).hex())


def require_keys(client, keys):
    """Check each (name, key) by challenge; DeviceError naming the first that does not match."""
    for name, key in keys:
        if not key_check(client, name, key):
            raise DeviceError(f"the meter's {name} key does not match what was written",
                              hint="re-provision with --rekey (the meter is still in factory mode)")


class privileged_session:
    """`with privileged_session(client, db):` runs privileged service commands: nothing to do while
    the meter is in factory mode; once it is locked, a session opened with the service key the
    manufacturing record DB holds for it (and ended afterwards). `db` may be None for a meter in
    factory mode; `ident` is the meter's identity reply once entered."""

    def __init__(self, client, db=None, what="this command"):
        self.client, self.db, self.what = client, db, what
        self.ident = None
        self.opened = False

    def __enter__(self):
        self.ident = self.client.call("identity")
        if self.ident.get("factory_mode"):
            return self
        mid = self.ident.get("meter_id")
        if not self.db:
            raise DeviceError(f"meter {mid} has left factory mode: {self.what} needs its service key",
                              hint="give --db with the manufacturing record DB it was provisioned with "
                                   "(or set $METERKIT_FACTORY_DB)")
        import os
        from host_tools.errors import UsageError
        from host_tools.provision.records import RecordDB
        if not os.path.exists(self.db):
            raise UsageError(f"no record DB {self.db}", hint="give the DB `meterkit provision --db` wrote")
        records = RecordDB(self.db)
        try:
            rec = records.by_meter_id(mid)
        finally:
            records.close()
        if rec is None:
            raise DeviceError(f"no record for meter {mid} in {self.db}", hint="give the DB it was provisioned with")
        authenticate(self.client, bytes.fromhex(rec["service_key_hex"]))
        self.opened = True
        return self

    def __exit__(self, *exc):
        if self.opened:
            try:
                self.client.call("auth_end")
            except DeviceError:
                if exc[0] is None:
                    raise
