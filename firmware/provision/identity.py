"""The meter's identity (meter id, PAN, serial, head-end broker) and keys (STS decoder key with its
identifiers, message key, service key, broker password) as two store records
(their checks are in `provision.request`).

Other subsystems read them with `load_identity(store)` / `load_keys(store)` (the token decoder, comms).
Both records are written together by one `commit_many`, so a power cut leaves all or none."""
from binascii import unhexlify

from store.records import StoreMissing

IDENTITY = "identity"
KEYS = "keys"
FACTORY = "factory"

# Key name (as the service port spells it) -> (record field, length in bytes).
KEY_FIELDS = {"sts": ("sts_key", 16), "message": ("message_key", 32), "service": ("service_key", 32)}


class ProvisionError(Exception):
    """A provisioning request that cannot be applied; the text says what to send instead."""


def _load(store, name):
    # StoreMissing means "never provisioned"; StoreCorrupt propagates (the caller reports it).
    if store is None:
        return None
    try:
        return store.load(name)
    except StoreMissing:
        return None


def load_identity(store):
    """The identity dict (meter_id, pan, serial, broker {host, port, username}, provisioned_at), or None
    if the meter was never provisioned."""
    return _load(store, IDENTITY)


def load_keys(store):
    """The keys dict, or None if never provisioned: sts_key, message_key, service_key as bytes;
    sgc (6-digit text), ti, krn, kt, ken, base_date; broker_password (text)."""
    k = _load(store, KEYS)
    if k is None:
        return None
    for field, _n in KEY_FIELDS.values():
        k[field] = unhexlify(k[field])
    return k


def keys_or_refuse(store):
    """load_keys for the service commands: a record that cannot be read becomes a ProvisionError
    that says what to do."""
    try:
        return load_keys(store)
    except Exception as e:
        raise ProvisionError("keys unreadable (%s): rekey" % type(e).__name__)
