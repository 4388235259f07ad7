"""Where the simulator's named profiles (front ends, loads, grids) live, and how any profile is read:
a dict, or the path of a JSON file holding one. See docs/sim-formats.md."""
import json
from pathlib import Path

from host_tools.errors import UsageError

HERE = Path(__file__).resolve().parent


def load(obj_or_path, what):
    """The profile object from a dict or a JSON file path; `what` names it in errors."""
    if isinstance(obj_or_path, dict):
        return obj_or_path
    p = Path(obj_or_path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} file {p} not found", hint="give a path to a JSON file or a named profile")
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} file {p} is not valid JSON: {e}", hint="fix the file (see docs/sim-formats.md)")


def named(prefix, name, what):
    """The shipped profile `<prefix>_<name>.json` as an object, or a UsageError listing the known names."""
    path = HERE / f"{prefix}_{name}.json"
    if not path.exists():
        known = sorted(p.stem[len(prefix) + 1:] for p in HERE.glob(f"{prefix}_*.json"))
        raise UsageError(f"no {what} named {name!r}", hint="known: " + ", ".join(known))
    return load(path, what)
