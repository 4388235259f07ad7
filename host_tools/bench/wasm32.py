"""npm's 32-bit MicroPython (`@micropython/micropython-webassembly-pyscript` under Debian's nodejs), the
interpreter memory figures are taken on: one launcher for every bench that measures on it."""
import json
import shutil
import subprocess
from pathlib import Path

from host_tools.errors import UsageError
from host_tools.paths import ROOT

PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"

# Copies a host folder into the interpreter's file system at /app, puts /app first on the path, runs a
# Python file, then `%(then)s` (JavaScript: e.g. a loop that steps a `tick()` the code defined).
_NODE = r"""
import { loadMicroPython } from %(pkg)s;
import fs from "fs";
const [tree, codeFile] = process.argv.slice(2);
const mp = await loadMicroPython({heapsize: %(heap)d, stdout: (s) => process.stdout.write(s + "\n"),
                                  stderr: (s) => process.stderr.write(s + "\n")});
function copy(src, dst) {
  for (const e of fs.readdirSync(src, {withFileTypes: true})) {
    if (e.name.startsWith(".")) continue;
    if (e.isDirectory()) { mp.FS.mkdir(dst + "/" + e.name); copy(src + "/" + e.name, dst + "/" + e.name); }
    else mp.FS.writeFile(dst + "/" + e.name, fs.readFileSync(src + "/" + e.name));
  }
}
mp.FS.mkdir("/app");
copy(tree, "/app");
mp.runPython("import sys\nsys.path.insert(0, '/app')\n" + fs.readFileSync(codeFile, "utf8"));
%(then)s
"""

# What a run whose code defines `tick()` (True when done) and `finish()` adds after it.
STEP_UNTIL_DONE = """const tick = mp.globals.get("tick");
while (!tick()) {}
mp.runPython("finish()");"""


def node():
    """The nodejs binary, once the 32-bit MicroPython is installed; a UsageError naming the fix if not."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if not exe:
        raise UsageError("node is not installed", hint="apt-get install nodejs npm (see .ci/run)")
    if not PACKAGE.exists():
        raise UsageError("the 32-bit MicroPython (npm @micropython/micropython-webassembly-pyscript) is not installed",
                         hint="run `make node_modules` (npm ci, pinned in package-lock.json)")
    return exe


def run(tree, code, work, heap_bytes, then="", timeout=1200, name="run"):
    """Run Python `code` (text) on the 32-bit interpreter with folder `tree` at /app (first on the
    path), heap `heap_bytes`; `work`: a folder for the launcher files. Returns the CompletedProcess."""
    exe = node()
    work = Path(work)
    js = work / (name + ".mjs")
    js.write_text(_NODE % {"pkg": json.dumps(PACKAGE.as_uri()), "heap": heap_bytes, "then": then})
    py = work / (name + ".py")
    py.write_text(code)
    return subprocess.run([exe, str(js), str(tree), str(py)], capture_output=True, text=True, timeout=timeout)
