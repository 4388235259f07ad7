"""Service-port commands for the factory line, resident part: registers `identity`, `key_check`
(open), `provision`, `factory_lock`, `selftest` (privileged) and `auth_challenge` / `auth` /
`auth_end`, and installs the service port's gate (`provision.session`).

A fresh meter is in factory mode: privileged commands are open. `factory_lock` leaves it for good
(persisted); from then on they need the challenge-response (`provision.auth`). Only the gate, the
session state and two flags stay in RAM: the handlers (`info`, `request`, `auth`, `selftest`) are
imported for each request and dropped after it, because factory-line code should not hold heap for
the meter's whole life."""
import gc

from provision.session import Session
from store.records import StoreMissing
from util import load, unload

# command -> the provision submodule that handles it (cmd_<command>(commands, request)).
_ROUTES = {"identity": "info", "key_check": "info", "provision": "request", "factory_lock": "request",
           "selftest": "selftest", "auth_challenge": "auth", "auth": "auth", "auth_end": "auth"}
_PRIVILEGED = ("provision", "factory_lock", "selftest")


def _forget(name):
    """Drop a one-shot submodule so its bytecode goes back to the heap."""
    unload("provision." + name)


def _present(store, name):
    """True when the record exists in any state (valid or corrupt): only "never written" is absent."""
    try:
        store.load(name)
    except StoreMissing:
        return False
    except Exception:
        return True
    return True


class ProvisionCommands:
    """`service` the port to register on; `store`, `clock`, `rng` (the board's random), `emit` (events);
    `board_name` and `version` for `identity`; `selftest()` runs the factory self-test over the
    assembled meter and returns its items (the composition owns what it inspects)."""

    def __init__(self, service, store, clock, rng, emit, board_name, version, selftest):
        self.store = store
        self.clock = clock
        self.emit = emit
        self.board_name = board_name
        self.version = version
        self.selftest = selftest
        self.provisioned = False
        self.session = Session(clock, rng, emit)
        self.session.factory_mode = self._load_state()
        svc = service
        for name in _ROUTES:
            svc.command(name, self._dispatch, privileged=name in _PRIVILEGED)
        svc.gate = self.session.gate

    def _load_state(self):
        """Factory mode only on a meter that holds nothing: no lock record AND no identity or keys
        (neither readable nor corrupt). Fails closed: no flash, a lock record that cannot be read, or
        a missing lock record beside identity or keys (deleted or rotted: a provisioned meter must
        stay locked whatever record is missing) counts as locked, with an event saying why."""
        emit = self.emit
        if self.store is None:
            return False
        from provision import identity as _id
        try:
            self.provisioned = _id.load_identity(self.store) is not None
        except Exception as e:
            emit("identity_unreadable", {"error": type(e).__name__})
        try:
            lock = self.store.load(_id.FACTORY)
        except Exception as e:
            if not isinstance(e, StoreMissing):
                emit("factory_lock_unreadable", {"error": type(e).__name__})
                return False
            held = [n for n in (_id.IDENTITY, _id.KEYS) if _present(self.store, n)]
            if held:
                emit("factory_lock_missing", {"held": held})
                return False
            return True
        finally:
            _forget("identity")
        return not (isinstance(lock, dict) and lock.get("locked"))

    def _dispatch(self, req):
        # A known point to collect: the handler's bytecode then loads into a tidy heap.
        gc.collect()
        cmd = req["cmd"]
        name = _ROUTES[cmd]
        try:
            return load("provision." + name, "cmd_" + cmd)(self, req)
        finally:
            _forget(name)
            _forget("identity")
            gc.collect()
