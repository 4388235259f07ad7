"""The fuzz loop every target shares: seeded inputs (fresh from the target's generator, or mutations of
its corpus of valid seeds and of inputs that reached new code), one call per input, the target's
invariants after each, and every failure saved for reproduction.

A target is an object with:
- `name`;
- `seeds()`: valid inputs (the corpus it starts from);
- `generate(rng)`: a fresh input; `mutate(rng, x)`: an input derived from `x`;
- `run(x)`: feeds `x` to the code under test and returns an outcome label (str). It raises `Violation`
  when an invariant fails (state changed by a rejected input, credit without authorisation, a handler
  bug answered as an error). Any other exception is an *escape*;
- `reset()` (optional): a fresh system under test (called every `reset_every` inputs);
- `close()` (optional).
Inputs must be JSON-serialisable: that is how they are saved and replayed.

Coverage guidance (`guided`: a fraction of the run): the inputs of that first stretch run under a line
tracer restricted to the code under test (`target.cover`: path fragments); an input that reaches a line
no earlier input reached joins the corpus, so later mutations start from inputs that go deeper. The
rest of the run mutates that grown corpus at full speed (tracing costs ~5x).

A failure is written to `build/fuzz-failures/<target>/<hash>.json`: the input, the seed and step that
made it, and what went wrong; `python -m host_tools.fuzz replay FILE` runs it again."""
import hashlib
import json
import random
import sys
import time
import traceback

from host_tools.paths import BUILD

FAILURES = BUILD / "fuzz-failures"


class Violation(AssertionError):
    """An invariant failed for this input (the text says which and with what values)."""


def save_failure(target, x, seed, step, kind, detail, folder=None):
    folder = (folder or FAILURES) / target
    folder.mkdir(parents=True, exist_ok=True)
    blob = json.dumps(x, sort_keys=True, ensure_ascii=True)
    h = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = folder / (h + ".json")
    path.write_text(json.dumps({"target": target, "seed": seed, "step": step, "kind": kind,
                                "detail": detail[-4000:], "input": x}, indent=1, ensure_ascii=True) + "\n")
    return path


class _Tracer:
    """Line coverage of the files whose path contains one of `cover`, as a set of (file, line)."""

    def __init__(self, cover):
        self.cover = tuple(cover)
        self.seen = set()
        self.new = 0
        self._files = {}

    def _wanted(self, fname):
        w = self._files.get(fname)
        if w is None:
            w = self._files[fname] = any(c in fname for c in self.cover)
        return w

    def __call__(self, frame, event, arg):
        if not self._wanted(frame.f_code.co_filename):
            return None
        return self._line

    def _line(self, frame, event, arg):
        if event == "line":
            k = (frame.f_code.co_filename, frame.f_lineno)
            if k not in self.seen:
                self.seen.add(k)
                self.new += 1
        return self._line


def run(target, n, seed=1, guided=0.0, reset_every=0, save=True, fresh=0.3, folder=None, progress=None):
    """Fuzz `target` with `n` inputs from `seed`. Returns a dict: inputs, per_s, escapes, violations,
    outcomes (label -> count), corpus (size at the end), lines (covered during the guided stretch),
    failures (up to 20 of (kind, detail, saved path))."""
    rng = random.Random(seed)
    corpus = list(target.seeds())
    tracer = _Tracer(getattr(target, "cover", ())) if guided and getattr(target, "cover", None) else None
    guided_n = int(n * guided) if tracer else 0
    stats = {"inputs": 0, "escapes": 0, "violations": 0, "outcomes": {}, "failures": []}
    t0 = time.perf_counter()
    for step in range(n):
        if reset_every and step and step % reset_every == 0 and hasattr(target, "reset"):
            target.reset()
        if not corpus or rng.random() < fresh:
            x = target.generate(rng)
        else:
            x = target.mutate(rng, rng.choice(corpus))
        kind = None
        if tracer is not None and step < guided_n:
            tracer.new = 0
            sys.settrace(tracer)
        try:
            out = target.run(x)
        except Violation as e:
            kind, detail, out = "violation", str(e), "violation"
        except Exception:
            kind, detail, out = "escape", traceback.format_exc(limit=8), "escape"
        finally:
            if tracer is not None and step < guided_n:
                sys.settrace(None)
        if tracer is not None and step < guided_n and tracer.new and kind is None:
            corpus.append(x)
        stats["inputs"] += 1
        stats["outcomes"][out] = stats["outcomes"].get(out, 0) + 1
        if kind is not None:
            stats[kind + "s"] += 1
            path = save_failure(target.name, x, seed, step, kind, detail, folder) if save else None
            if len(stats["failures"]) < 20:
                stats["failures"].append((kind, detail, str(path) if path else None))
        if progress is not None and step % 1000 == 0:
            progress(step)
    secs = time.perf_counter() - t0
    stats["seconds"] = secs
    stats["per_s"] = round(stats["inputs"] / secs) if secs > 0 else 0
    stats["corpus"] = len(corpus)
    stats["lines"] = len(tracer.seen) if tracer else None
    return stats


def replay(target, x):
    """Run one saved input again on a fresh target; returns its outcome or raises what it raised."""
    return target.run(x)
