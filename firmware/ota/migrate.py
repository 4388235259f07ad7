"""Record migrations that come with a new image, run only once it has marked itself valid: during its
trial, and after a rollback, every record stays in the format the old image reads, so credit is never
lost or created by an update or a rollback.

A step is (record name, the format it upgrades from, function old value -> new value); the record's
format is its "f" field (1 when absent). The ota record notes the last image whose steps ran, so a step
never runs twice. This release changes no record format: STEPS is empty, and the mechanism is proved by
tests/test_ota_meter.py with steps of its own."""
STEPS = ()


def run(store, version, steps=STEPS, emit=None):
    """Apply `steps` whose record is still in the format they upgrade from; returns the names migrated."""
    done = []
    for name, from_format, fn in steps:
        try:
            v = store.load(name)
        except Exception:
            continue                  # never written (or unreadable: the app reports that itself)
        if not isinstance(v, dict) or v.get("f", 1) != from_format:
            continue
        store.commit(name, fn(v))
        done.append(name)
        if emit is not None:
            emit("record_migrated", {"record": name, "from": from_format, "version": version})
    return done
