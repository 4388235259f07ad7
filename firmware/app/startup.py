"""Start-up before the application is built: the flash mounted, the store opened, this boot counted
in the `boot` record, and the crash-loop decision (safe mode). Also writes the `crash` record when the
guard catches an error. Small on purpose: it runs before anything else and must not fail.

Crash loop: every boot that was not a power-on (a reset asked by the firmware, a watchdog reset, a
panic) adds one to `q` in the `boot` record, and a boot that has run `STABLE_S` clears it. So `q`
counts the resets in a row that each came within `STABLE_S` of the one before: `RESETS` of them
(N resets within N x 10 minutes at most, without needing a clock: there is no RTC battery) boot safe
mode. A power-on neither counts nor clears (pulling the plug is not a crash, nor a cure).
Safe mode keeps metering and the prepaid core (the supply decision) and drops the optional
subsystems; after `SAFE_HOLD_S` of stable running in safe mode the meter clears the count and
resets to try the full application again."""
from micropython import const

BOOT = "boot"
CRASH = "crash"
MIRROR = "/_mirror"         # every record slot again, in its own littlefs metadata pair (store/records.py)
VAULT = "/_vault"           # a third copy of every record but the busy ones below (store/records.py)
# Records written at every poll, uplink or boot: the energy commit (prepaid.core.HOT), the uplink queue
# and this boot count. Losing their newest commit to a double rollback costs a few Wh or a reading
# resent, never credit; a third copy of them would raise the flash wear by half.
VAULT_SKIP = ("pe", "uplink", BOOT)
RESETS = const(4)           # resets in a row, each within STABLE_S of the last: safe mode
STABLE_S = const(600)       # a boot that runs this long clears the count
SAFE_HOLD_S = const(21600)  # safe mode retries the full application after 6 h of stable running
_MSG_MAX = const(80)


class Startup:
    """What the boot found. `notes` are (event, data) for the app's event log once it exists."""

    def __init__(self, board):
        self.board = board
        self.root = None
        self.store = None
        self.notes = []
        self.boots = 0
        self.resets = 0
        self.safe = False
        self.cause = _cause(board)
        self._rec = None
        try:
            self.root = board.mount("/flash")
        except OSError as e:
            self.notes.append(("flash_unavailable", {"errno": e.args[0] if e.args else 0}))
            return
        try:
            from store.records import Store
            self.store = Store(self.root, self.root + MIRROR, self.root + VAULT, VAULT_SKIP)
        except Exception as e:   # a file system that will not even list: meter on, report it
            self.notes.append(("store_unavailable", {"error": "%s: %s" % (type(e).__name__, e)}))
            return
        self._count()

    def _count(self):
        st = self.store
        rec = _load(st, BOOT, self.notes)
        rec["n"] = rec.get("n", 0) + 1
        q = rec.get("q", 0)
        if self.cause != "power":
            q += 1
        rec["q"] = q
        crash = _load(st, CRASH, self.notes)
        if crash.get("n", 0) != rec.get("cn", 0):        # a crash not reported yet
            rec["cn"] = crash.get("n", 0)
            self.notes.append(("crashed", {"type": crash.get("type"), "msg": crash.get("msg"),
                                           "boot": crash.get("boot"), "n": crash.get("n")}))
        self.boots = rec["n"]
        self.resets = q
        self.safe = q >= RESETS
        self._rec = rec
        try:
            st.commit(BOOT, rec)
        except Exception as e:
            self.notes.append(("store_write_failed", {"record": BOOT, "error": type(e).__name__}))
        if self.safe:
            self.notes.append(("safe_mode", {"resets": q, "cause": self.cause}))

    def stable(self):
        """The app has run STABLE_S (or SAFE_HOLD_S in safe mode): the crash count starts again."""
        rec = self._rec
        if rec is None or not rec.get("q"):
            return
        rec["q"] = 0
        self.store.commit(BOOT, rec)


def _cause(board):
    try:
        return board.reset_cause()
    except AttributeError:
        return "power"


def _load(store, name, notes):
    """A record's dict, {} when missing; a corrupt one is a note and a fresh start (it only counts)."""
    from store.records import StoreMissing     # loaded already: the store is open
    try:
        v = store.load(name)
    except StoreMissing:
        return {}
    except Exception as e:
        notes.append(("record_reset", {"record": name, "error": type(e).__name__}))
        return {}
    return v if isinstance(v, dict) else {}


def log_crash(board, store, exc, boots=0):
    """Write the `crash` record (time, exception type and message, boot count, crashes so far).
    Never raises: it runs on the way to a reset, whatever state the meter is in."""
    try:
        if store is None:
            from store.records import Store
            try:
                root = board.mount("/flash")
            except OSError:
                root = "/flash"          # mounted already (the app got that far)
            store = Store(root, root + MIRROR, root + VAULT, VAULT_SKIP)
        try:
            old = store.load(CRASH)
        except Exception:
            old = {}
        clock = board.clock
        t = clock.time() if clock.time_valid else 0
        msg = str(exc)
        store.commit(CRASH, {"n": old.get("n", 0) + 1, "t": t, "type": type(exc).__name__,
                             "msg": msg[:_MSG_MAX], "boot": boots})
        return True
    except BaseException:
        return False
