"""What a test's MicroPython code tells pytest: one line per named value (`report("credit", 120)`),
so a failing check names what differed and how (tests/mpyrun.py `run_reported`, `expect`)."""
import json


def report(name, value):
    """Bytes (which JSON cannot carry) are reported as their repr text: b'hi' (inside a list or dict,
    repr them first)."""
    if isinstance(value, (bytes, bytearray)):
        value = repr(bytes(value))
    print("REPORT " + json.dumps([name, value]))
