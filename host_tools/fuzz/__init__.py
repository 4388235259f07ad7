"""Fuzzing every parser that meets outside data (issue 19): a shared harness (`harness.py`: seeded
generators and mutators, a corpus of valid seeds per target, a coverage-guided stretch, invariant
checks, failing inputs saved to build/fuzz-failures/<target>/) and one module per target
(`targets/`). `python -m host_tools.fuzz run TARGET -n N --seed S` fuzzes one; `replay FILE` runs a
saved failure again. The bench (`host_tools/bench/fuzz_all_bench.py`) runs them all."""
import importlib

# name -> "module:class"; each class is built with a work folder (its meters' flash, its databases).
TARGETS = {
    "service": "host_tools.fuzz.targets.service:ServiceTarget",
    "keypad": "host_tools.fuzz.targets.keypad:KeypadTarget",
    "sms": "host_tools.fuzz.targets.sms:SmsTarget",
    "mqtt": "host_tools.fuzz.targets.mqtt:MqttTarget",
    "headend_ingest": "host_tools.fuzz.targets.headend:IngestTarget",
    "headend_csv": "host_tools.fuzz.targets.headend:CsvTarget",
    "agency_csv": "host_tools.fuzz.targets.agency:CustomerCsvTarget",
    "cli": "host_tools.fuzz.targets.cli:CliTarget",
}


def make(name, work):
    """Target `name` built in folder `work`."""
    mod, _, cls = TARGETS[name].partition(":")
    return getattr(importlib.import_module(mod), cls)(work)


def quiet_gc():
    """The firmware calls gc.collect() at known points (its heap is small); in CPython a full
    collection costs milliseconds and changes nothing the firmware can see, so a fuzz process skips
    it. Returns the function that undoes this."""
    import gc
    real = gc.collect
    gc.collect = lambda *a: 0
    return lambda: setattr(gc, "collect", real)
