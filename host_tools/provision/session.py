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
