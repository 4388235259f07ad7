"""The simulator's shape (host_tools/sim/, docs/simulator.md), checked over the source with `ast`:
- scenarios (and every other sim module) use the head-end through its public API only: no private name
  imported from host_tools.headend, no `_name` reached on a head-end module or object, and no SQL run on
  the head-end's tables through its store (`store.q`, `q1`, `execute`, `tx`);
- the layering is one-way: the world and the modem import no harness or scenario, and no sim package
  imports a scenario except the scenarios themselves and the CLI;
- the old flat modules are gone (no compatibility shims).
Each failure names the file, line and the offending import or expression."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "host_tools" / "sim"
HEADEND = "host_tools.headend"
# names that hold head-end objects in the sim's code (the store, the service, the OTA module)
HEADEND_OBJECTS = {"store", "he", "headend", "heota"}
STORE_SQL = {"q", "q1", "execute", "tx", "db"}


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _tail(node):
    """The last name of an expression like `self.store` or `ch.store` (None when not a name chain)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def headend_violations(source, filename="<source>"):
    """[(line, text)] for each use of the head-end that is not its public API."""
    tree = ast.parse(source, filename)
    out = []
    aliases = set(HEADEND_OBJECTS)            # local names bound to head-end modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(HEADEND):
            parts = node.module.split(".")
            for a in node.names:
                if any(_private(p) for p in parts) or _private(a.name):
                    out.append((node.lineno, f"from {node.module} import {a.name} (private head-end name)"))
                aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(HEADEND):
                    if any(_private(p) for p in a.name.split(".")):
                        out.append((node.lineno, f"import {a.name} (private head-end module)"))
                    if a.asname:
                        aliases.add(a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and _tail(node.value) in aliases:
            out.append((node.lineno, f"{ast.unparse(node)} (private head-end attribute)"))
        elif (isinstance(node, ast.Attribute) and node.attr in STORE_SQL and _tail(node.value) == "store"):
            out.append((node.lineno, f"{ast.unparse(node)} (SQL on the head-end's tables: use a Store method)"))
    return sorted(set(out))


def _modules(where):
    return sorted(p for p in where.rglob("*.py") if "mpy" not in p.relative_to(SIM).parts)


def _imports(path):
    """Every module name `path` imports (absolute; the sim uses no relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.relative_to(ROOT)}:{node.lineno}: relative import"
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


def test_the_checker_catches_what_it_is_meant_to():
    bad = ("from host_tools.headend.store import Store, _Tx\n"
           "from host_tools.headend import ota as heota\n"
           "import host_tools.headend._secret as s\n"
           "def f(ch, store):\n"
           "    heota._package(store, 'x')\n"
           "    ch.store.q1('SELECT 1 FROM meters')\n"
           "    return store._lock, Store(':memory:').meter('m')\n")
    got = [text for _, text in headend_violations(bad)]
    for want in ("from host_tools.headend.store import _Tx", "import host_tools.headend._secret",
                 "heota._package", "ch.store.q1", "store._lock"):
        assert any(t.startswith(want) for t in got), f"{want!r} not flagged; flagged: {got}"
    assert len(got) == 5, got
    good = ("from host_tools.headend.store import Store\n"
            "def f(store):\n    return store.meter('m'), store.message('x'), store.messages('m', done=True)\n")
    assert headend_violations(good) == []


def test_sim_modules_use_the_headend_public_api_only():
    found = []
    for path in _modules(SIM):
        for line, text in headend_violations(path.read_text(), str(path)):
            found.append(f"{path.relative_to(ROOT)}:{line}: {text}")
    assert not found, "the simulator reaches into the head-end:\n" + "\n".join(found)


def test_layering_is_one_way():
    # package -> sim packages it must not import
    forbidden = {"world": {"modem", "esp32", "net", "scenarios"},
                 "modem": {"world", "esp32", "net", "scenarios"},
                 "net": {"world", "modem", "esp32", "scenarios"},
                 "esp32": {"scenarios"}}
    found = []
    for pkg, banned in forbidden.items():
        for path in _modules(SIM / pkg):
            for line, mod, names in _imports(path):
                if not mod or not mod.startswith("host_tools.sim"):
                    continue
                parts = mod.split(".")
                targets = {parts[2]} if len(parts) > 2 else set(names)
                bad = targets & banned
                if bad:
                    found.append(f"{path.relative_to(ROOT)}:{line}: imports {mod} {names} ({pkg} must not "
                                 f"import {sorted(bad)})")
    assert not found, "\n".join(found)


def test_no_flat_modules_left_at_the_old_paths():
    old = ["modem", "scenario", "ota_scenario", "chain_demo", "powercut", "world", "afe", "loads", "grid",
           "flashfile", "sms_pdu", "smsc", "mqttbroker", "headend_client", "runner", "link", "repl", "fwbuild",
           "otachip"]
    left = [n + ".py" for n in old if (SIM / (n + ".py")).exists()]
    left += [d + "/" for d in ("chips", "profiles", "mpy") if (SIM / d).exists()]
    assert not left, f"old flat modules still in host_tools/sim/: {left}"
    for pkg in ("world", "modem", "scenarios", "net", "esp32"):
        assert (SIM / pkg / "__init__.py").is_file(), f"host_tools/sim/{pkg}/ is not a package"
