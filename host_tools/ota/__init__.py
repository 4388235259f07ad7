"""Signed firmware update packages (`meterkit ota ...`): key generation, packing, inspection, and the
checks a meter makes before it downloads one. Format and result codes: docs/ota.md."""
