"""Names a module uses are interned the first time it loads and never freed, in a table that grows by
doubling. On a `.mpy` image the next table was a ~14 KB block wanted at the first top-up after a
boot, on a heap in small pieces: `MemoryError ... allocating 1280` (the table's new size in names)
and the top-up refused, or the app's build failed (power-cut runs at the 256k cap). The guard
therefore loads the app's code and the credit paths' once, first thing at boot, and drops it
(`firmware/app/guard.py:_intern_names`): later loads intern nothing."""
import re

from mpyrun import run_micropython

PROBE = """
import micropython, sys
from app import guard
had = set(sys.modules)
%s
print("LEFT", sorted(n for n in sys.modules if n not in had))
print("QSTR-BEFORE"); micropython.qstr_info()
for name in guard.WARM:
    __import__(name)
print("QSTR-AFTER"); micropython.qstr_info()
"""


def _n_qstr(out, mark):
    m = re.search(mark + r"\s*\nqstr pool: n_pool=\d+, n_qstr=(\d+)", out)
    assert m, "no qstr_info after %s in MicroPython's output:\n%s" % (mark, out[-2000:])
    return int(m.group(1))


def _added(warm_first):
    code = PROBE % ("guard._intern_names()" if warm_first else "")
    out = run_micropython(code, heap="512k")
    return _n_qstr(out, "QSTR-AFTER") - _n_qstr(out, "QSTR-BEFORE"), out


def test_after_the_boot_step_the_apps_code_interns_no_new_name_and_is_not_left_loaded():
    added, out = _added(True)
    assert added == 0, "loading the credit paths after _intern_names interned %d new names\n%s" % (added, out[-1500:])
    line = [l for l in out.splitlines() if l.startswith("LEFT")][0]
    assert line == "LEFT []", "the boot step left code resident: " + line


def test_without_the_boot_step_the_first_load_interns_hundreds_of_names():
    added, out = _added(False)
    assert added > 1000, "expected the credit paths to intern their names at first load, got %d\n%s" % (added, out[-1500:])
