"""Persistent meter state that survives any power cut: records (`Store`), the event log, wear accounting.

`from store import Store, StoreMissing, StoreCorrupt`; the event log, block devices and wear counter
are imported from their own modules when needed (`store.eventlog`, `store.blockdev`, `store.wear`).
"""
from store.records import Store, StoreError, StoreMissing, StoreCorrupt  # noqa: F401
