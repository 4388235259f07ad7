"""Start-up before the app (firmware/app/startup.py, guard.py): each boot counted in the `boot` record, a
run of resets (not power-ons) boots safe mode, a stable run clears the count, a crash is written to
the `crash` record and reported at the next boot, and the guard resets instead of falling out."""
import sys
import types

import pytest

from app import startup
from fakes import FakeClock
from store.records import Store


class Board:
    def __init__(self, root, cause="power"):
        self.root = str(root)
        self.cause = cause
        self.clock = FakeClock()
        self.mounts = 0

    def mount(self, path="/flash"):
        self.mounts += 1
        return self.root

    def reset_cause(self):
        return self.cause


def boot(tmp_path, cause):
    return startup.Startup(Board(tmp_path, cause))


def kinds(s):
    return [n[0] for n in s.notes]


def test_power_ons_never_count_towards_a_crash_loop(tmp_path):
    for i in range(10):
        s = boot(tmp_path, "power")
        assert not s.safe and s.resets == 0 and s.boots == i + 1, (i, s.resets, s.boots)


def test_resets_in_a_row_boot_safe_mode_and_a_stable_run_clears_the_count(tmp_path):
    seen = []
    for cause in ("power", "reset", "watchdog", "reset"):
        s = boot(tmp_path, cause)
        seen.append((s.resets, s.safe))
    assert seen == [(0, False), (1, False), (2, False), (3, False)]
    s = boot(tmp_path, "reset")
    assert s.resets == startup.RESETS == 4 and s.safe and "safe_mode" in kinds(s), s.notes
    s.stable()                                      # safe mode ran SAFE_HOLD_S: try the full app again
    s = boot(tmp_path, "reset")
    assert s.resets == 1 and not s.safe
    assert Store(str(tmp_path)).load("boot")["n"] == 6


def test_a_power_on_does_not_clear_a_crash_loop(tmp_path):
    for _ in range(3):
        boot(tmp_path, "reset")
    assert boot(tmp_path, "power").resets == 3
    assert boot(tmp_path, "reset").safe


def test_a_crash_is_recorded_and_reported_once_at_the_next_boot(tmp_path):
    s = boot(tmp_path, "power")
    assert startup.log_crash(s.board, s.store, MemoryError("memory allocation failed, allocating 4096 bytes"),
                             s.boots)
    rec = Store(str(tmp_path)).load("crash")
    assert rec["n"] == 1 and rec["type"] == "MemoryError" and rec["boot"] == 1 and rec["t"] > 0, rec
    assert rec["msg"].startswith("memory allocation failed")
    s2 = boot(tmp_path, "reset")
    crashed = [n[1] for n in s2.notes if n[0] == "crashed"]
    assert crashed == [{"type": "MemoryError", "msg": rec["msg"], "boot": 1, "n": 1}], s2.notes
    assert "crashed" not in kinds(boot(tmp_path, "reset"))        # reported once


def test_a_crash_message_is_cut_short_and_logging_it_never_raises(tmp_path):
    s = boot(tmp_path, "power")
    assert startup.log_crash(s.board, s.store, ValueError("x" * 500), 1)
    assert len(Store(str(tmp_path)).load("crash")["msg"]) == 80

    class Broken:
        def load(self, name):
            raise OSError(5)

        def commit(self, name, value):
            raise OSError(28)
    assert startup.log_crash(s.board, Broken(), ValueError("x"), 1) is False


def test_a_corrupt_boot_record_is_a_fresh_count_not_a_crash(tmp_path):
    boot(tmp_path, "reset")
    for d in (tmp_path, tmp_path / "_mirror"):       # both copies (one alone is restored from the other)
        for slot in ("a", "b"):
            p = d / ("boot." + slot)
            if p.exists():
                p.write_bytes(b"\x00" * 30)
    s = boot(tmp_path, "reset")
    assert ("record_reset", {"record": "boot", "error": "StoreCorrupt"}) in s.notes
    assert s.resets == 1 and s.boots == 1


def test_no_flash_is_a_note_and_no_safe_mode(tmp_path):
    b = Board(tmp_path)

    def no_fs(path="/flash"):
        raise OSError(19)
    b.mount = no_fs
    s = startup.Startup(b)
    assert s.store is None and not s.safe and kinds(s) == ["flash_unavailable"]


def test_guard_logs_a_crash_while_building_and_resets_the_board(tmp_path, monkeypatch):
    from app import guard
    resets = []
    locked = []

    class FakeBoard(Board):
        info = {"watchdog_ms": 8000}

        def __init__(self):
            Board.__init__(self, tmp_path, "power")
            self.watchdog = types.SimpleNamespace(start=lambda ms: resets.append(("wdt", ms)), feed=lambda: None)

        def lock_console(self):
            locked.append(len(resets))       # before the watchdog, before anything of the app

        def reset(self):
            resets.append("reset")
            raise SystemExit(0)

    class Exploding:
        def __init__(self, board, boot):
            raise RuntimeError("the app could not be built")
    monkeypatch.setitem(sys.modules, "board", types.SimpleNamespace(Board=FakeBoard))
    monkeypatch.setitem(sys.modules, "app.composition", types.SimpleNamespace(App=Exploding))
    monkeypatch.setattr(sys, "print_exception", lambda e: None, raising=False)
    with pytest.raises(SystemExit):
        guard.run()
    assert locked == [0] and resets == [("wdt", 8000), "reset"], (locked, resets)
    rec = Store(str(tmp_path)).load("crash")
    assert rec["type"] == "RuntimeError" and rec["msg"] == "the app could not be built" and rec["boot"] == 1
