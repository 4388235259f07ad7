"""The utility's head-end: meter registry, STS vending, delivery over MQTT with retry, and ingest of
results, readings, events and statements (SQLite). `meterkit headend ...` is its CLI."""
