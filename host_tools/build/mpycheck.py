"""`python -m host_tools.build.mpycheck`: compile every firmware and board file with mpy-cross and
report the ones that fail (CPython-only syntax must never reach the meter). Exit 1 if any failed."""
import sys
from pathlib import Path

from host_tools import paths
from host_tools.build.compile import compile_source
from host_tools.errors import UsageError


def check(root=None):
    """Return a list of (relative path, error message) for files that do not compile."""
    root = Path(root) if root else paths.ROOT
    failures = []
    files = sorted(p for d in ("firmware", "boards") for p in (root / d).rglob("*.py")
                   if "__pycache__" not in p.parts)
    for p in files:
        rel = p.relative_to(root).as_posix()
        try:
            # x64 also checks that native/viper functions are accepted by the native emitter
            compile_source(p, rel, arch="x64")
        except UsageError as e:
            failures.append((rel, e.message))
    return files, failures


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    files, failures = check(argv[0] if argv else None)
    for rel, msg in failures:
        print(f"FAIL {rel}: {msg}")
    print(f"mpy-check: {len(files) - len(failures)}/{len(files)} files compile")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
