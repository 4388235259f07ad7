"""`make bench` and `make bench-long` name benchmarks that exist: every entry imports and is callable, the
long plan says what each run is and how long it took, and bench-long prints that plan before it runs."""
import importlib

from host_tools import bench


def _resolve(name):
    mod, _, fn = name.partition(":")
    return getattr(importlib.import_module(mod), fn or "run")


def test_every_entry_of_both_plans_is_a_callable_benchmark():
    missing = []
    for name in bench.BENCHES + [n for n, _ in bench.LONG]:
        try:
            assert callable(_resolve(name))
        except (ImportError, AttributeError, AssertionError) as e:
            missing.append("%s: %s" % (name, e))
    assert missing == [], missing
    assert not set(bench.BENCHES) & {n for n, _ in bench.LONG}, "a run in both plans"


def test_bench_long_prints_its_plan_with_the_time_of_each_before_running(monkeypatch, capsys, tmp_path):
    ran = []
    monkeypatch.setattr(bench, "BUILD", tmp_path)
    monkeypatch.setattr(bench, "LONG", [("host_tools.bench.keys_bench:run", "keys: about 1 s")])
    monkeypatch.setattr(importlib.import_module("host_tools.bench.keys_bench"), "run",
                        lambda: ran.append(1) or {"k": 1})
    assert bench._main(["--long"]) == 0
    out = capsys.readouterr().out
    assert "about 1 s" in out and out.index("about 1 s") < out.index("== host_tools.bench.keys_bench:run"), out
    assert ran == [1]
