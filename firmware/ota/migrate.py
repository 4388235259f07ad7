"""Record migrations that come with a new image, run only once it has marked itself valid: during its
trial, and after a rollback, every record stays in the format the old image reads, so credit is never
lost or created by an update or a rollback.

A step is (record name, the format it upgrades from, function old value -> new value); the record's
format is its "f" field (1 when absent). The ota record's "mig" notes the image whose steps ran to the
end (ota/updater.py); a power cut after the image marked itself valid and before that runs them again
at the next boot, so `run` must be safe to repeat and every step idempotent: a step is applied only to a
record still in its `from` format, and its function must return the record in a newer format (written
in one commit), so a record migrated before the cut is left alone. This release changes no record
format: STEPS is empty, and the mechanism is proved by tests/test_ota_meter.py with steps of its own."""
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
            continue                  # not written yet in that format, or migrated already (a re-run)
        v = fn(v)
        if v.get("f", 1) == from_format:
            raise ValueError(name)    # a step that keeps the format would run again on every re-run
        store.commit(name, v)
        done.append(name)
        if emit is not None:
            emit("record_migrated", {"record": name, "from": from_format, "version": version})
    return done
