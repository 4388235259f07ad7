"""Instrument profiles for the VISA bench: one small JSON file per model, holding that model's command
set (what to send to set the source, read the reference, count the meter's test pulses) and nothing
else. `load(name)` reads one; `identify(idn, kind)` picks the profile whose `idn` pattern matches an
instrument's *IDN? answer. Fields are described in docs/lab-bench.md."""
import json
import re
from pathlib import Path

from host_tools.errors import UsageError

FOLDER = Path(__file__).resolve().parent
KINDS = ("source", "meter")
_REQUIRED = {"source": ("set", "on", "off", "error_query", "no_error", "limits"),
             "meter": ("measure", "error_query", "no_error")}


def names(kind=None):
    """Model names shipped here (optionally of one kind), sorted."""
    out = []
    for path in sorted(FOLDER.glob("*.json")):
        if kind is None or _read(path).get("kind") == kind:
            out.append(path.stem)
    return out


def _read(path):
    try:
        prof = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError("cannot read instrument profile %s: %s" % (path, e),
                         hint="a profile is one JSON object (see docs/lab-bench.md)") from None
    if not isinstance(prof, dict):
        raise UsageError("instrument profile %s is not a JSON object" % path, hint="see docs/lab-bench.md")
    return prof


def load(name_or_path, kind=None):
    """A profile by model name (a file here) or by path to a JSON file of your own; checked."""
    p = Path(name_or_path)
    path = p if p.suffix == ".json" and p.exists() else FOLDER / ("%s.json" % name_or_path)
    if not path.exists():
        raise UsageError("no instrument profile %r" % (name_or_path,),
                         hint="known: %s; or give the path of your own .json profile" % ", ".join(names()))
    prof = _read(path)
    check(prof, kind, str(path))
    return prof


def check(prof, kind=None, where="profile"):
    k = prof.get("kind")
    if k not in KINDS:
        raise UsageError("%s: kind must be one of %s, not %r" % (where, ", ".join(KINDS), k),
                         hint="see docs/lab-bench.md")
    if kind and k != kind:
        raise UsageError("%s is a %s profile, used as the %s" % (prof.get("model", where), k, kind),
                         hint="the order is visa:SOURCE,METER[,SOURCE_PROFILE+METER_PROFILE]")
    missing = [f for f in _REQUIRED[k] if f not in prof]
    if missing:
        raise UsageError("%s: missing %s" % (where, ", ".join(missing)), hint="see docs/lab-bench.md")
    for pat in ("no_error", "idn"):
        if pat in prof:
            try:
                re.compile(prof[pat])
            except re.error as e:
                raise UsageError("%s: %s is not a regular expression: %s" % (where, pat, e),
                                 hint="see docs/lab-bench.md") from None
    return prof


def identify(idn, kind):
    """The shipped profile of `kind` whose `idn` pattern matches the *IDN? answer, or None."""
    for name in names(kind):
        prof = load(name, kind)
        if prof.get("idn") and re.search(prof["idn"], idn or ""):
            return prof
    return None
