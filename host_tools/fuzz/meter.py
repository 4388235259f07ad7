"""The whole firmware application (app/composition.App) built in this CPython process on the in-process
board of the memory bench (`host_tools/bench/heap32/board.py`: virtual clock, an ATM90E26 register file,
a scripted SIM7600, RAM keypad, display and service stream, the flash a folder). The fuzz targets of
the meter's doors (service port, keypad, SMS, MQTT payloads) drive it directly; the same firmware runs
under MicroPython in `host_tools/fuzz/mpy.py`.

A meter is made in one of three states: `factory` (fresh, nothing provisioned: privileged commands
open), `locked` (provisioned and factory-locked: privileged commands need the challenge-response) and
`online` (locked, with its cellular side built: SMS and MQTT reach the actions). Each state's flash is
made once and copied for every fresh meter (`reset`).

`snapshot()` is what an input may change only when it was accepted: the ledger, the supply, tamper,
the clock, the settings and the identity/key records. `credit_delta(before, after)` is what was credited."""
import copy
import importlib.util
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from host_tools.fwimport import firmware_module
from host_tools.paths import BUILD, ROOT, board_dir

EPOCH = 1767571200                    # the board clock starts here (2026-01-05)
BOARD = "esp32_atm90e26"
PAN = "600727000000000009"
CUSTOMER = "+22236000001"
UTILITY = "+22236000099"
STS_KEY = bytes(range(1, 17))
SERVICE_KEY = bytes.fromhex("3c" * 31 + "c3")
MESSAGE_KEY = bytes.fromhex("5a" * 31 + "a5")
OPENING = 500000


def provision_request():
    return {"pan": PAN, "serial": 9, "meter_id": PAN, "sgc": "123457", "ti": 1, "krn": 1, "base_date": "14",
            "sts_key": STS_KEY.hex(), "message_key": MESSAGE_KEY.hex(), "service_key": SERVICE_KEY.hex(),
            "customer": CUSTOMER, "utility_numbers": [UTILITY],
            "broker": {"host": "he.example", "port": 1883, "username": PAN, "password": "s3cret-pass"}}


def valid_tokens(n=12, amount_wh=500 * 1000):
    """n distinct STS credit tokens this meter's key accepts (TIDs just before the board's clock)."""
    from host_tools.vend import sts_encode
    tid0 = sts_encode.tid_from_time(datetime.fromtimestamp(EPOCH, timezone.utc), "14")
    return [sts_encode.build(STS_KEY, 0, 4, i % 16, tid0 - 10 - i, sts_encode.encode_amount(amount_wh))["token"]
            for i in range(n)]


def token_amount(digits):
    """The credit an STS token carries under this meter's key (host decoder), or None if it is no
    valid credit token: the independent judge of whether a credit was authorised."""
    from host_tools.vend import sts_encode
    try:
        d = sts_encode.inspect(STS_KEY, digits)
    except Exception:
        return None
    if d.get("class") != 0 or not d.get("crc_ok") or d.get("amount") is None:
        return None
    return d["amount"]


def _fast_imports():
    """The firmware imports its rare modules for each call and drops them after (util.call): with
    bytecode writing off (PYTHONDONTWRITEBYTECODE) CPython would compile them from source every time,
    most of a fuzz input's cost. Cached bytecode goes under build/, never into the checkout."""
    if sys.dont_write_bytecode:
        sys.pycache_prefix = sys.pycache_prefix or str(BUILD / "pycache")
        sys.dont_write_bytecode = False


def _heapboard():
    _fast_imports()
    mod = sys.modules.get("fuzz_heapboard")
    if mod is None:
        firmware_module("util")                   # the micropython shim and firmware/ on the path
        spec = importlib.util.spec_from_file_location(
            "fuzz_heapboard", ROOT / "host_tools" / "bench" / "heap32" / "board.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["fuzz_heapboard"] = mod
    return mod


class Meter:
    """One firmware App on the in-process board; `reset()` gives a fresh one from the state's flash."""

    def __init__(self, work, state="factory", settings=None):
        self.work = Path(work)
        self.state = state
        self.settings = settings or {}
        self.template = self.work / ("template-" + state)
        self.root = self.work / ("flash-" + state)
        self.info = json.loads((board_dir(BOARD) / "board.json").read_text())
        self._make_template()
        self.reset()

    def _make_template(self):
        if self.template.exists():
            return
        self.template.mkdir(parents=True)
        s = {"ui": 1, "prepaid": {"ledger": {"opening_credit": OPENING, "emergency_amount": 20000}}}
        s.update(self.settings)
        (self.template / "settings.json").write_text(json.dumps(s))
        if self.state != "factory":
            firmware_module("store.records")
            from provision.request import records_from_request
            from store.records import Store
            ident, keys = records_from_request(provision_request(), EPOCH)
            Store(str(self.template)).commit_many({"identity": ident, "keys": keys, "factory": {"locked": True}})

    def reset(self):
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(self.template, self.root)
        hb = _heapboard()
        pkt = firmware_module("comms.mqttpkt") if self.state == "online" else None
        self.board = hb.Board(self.info, str(self.root), pkt)
        App = firmware_module("app.composition").App
        self.app = App(self.board)
        self.svc = self.board.service
        self.rid = 0
        return self

    # -- the doors ---------------------------------------------------------------------------------
    def line(self, data):
        """Raw bytes into the service port; the replies (parsed JSON objects, or the raw line if a
        reply is not JSON: itself a failure the caller reports)."""
        svc = self.svc
        svc.lines = []
        svc.rx += data
        self.app.service.poll()
        out = []
        for ln in svc.lines:
            try:
                out.append(json.loads(ln))
            except ValueError:
                out.append(ln)
        return out

    def request(self, obj):
        r = self.line(json.dumps(obj).encode() + b"\n")
        return r[-1] if r else None

    def authenticate(self):
        import hashlib
        import hmac
        nonce = self.request({"cmd": "auth_challenge", "id": 0})["nonce"]
        mac = hmac.new(SERVICE_KEY, bytes.fromhex(nonce), hashlib.sha256).hexdigest()
        r = self.request({"cmd": "auth", "id": 0, "mac": mac})
        if not r.get("ok"):
            raise SessionRefused("could not open a service session: %r" % (r,), r)

    def service_key_changed(self):
        """True when the keys record no longer holds the service key this harness signs with (an
        authorised rekey among the inputs replaced it)."""
        try:
            k = self.app.store.load("keys")
        except Exception:
            return True
        return k.get("service_key") != SERVICE_KEY.hex()

    def authorised(self):
        """True when a privileged command would pass the gate now (factory mode or an open session)."""
        s = self.app.provision.session
        return bool(s.factory_mode) or s.opened_at is not None and s.left_ms(s.opened_at, _session_ms())

    # -- state -------------------------------------------------------------------------------------
    def snapshot(self):
        app = self.app
        p = app.prepaid
        led = p.ledger
        store = app.store
        recs = {}
        for name in ("identity", "keys", "factory", "cal"):
            try:
                recs[name] = store.load(name)
            except Exception as e:
                recs[name] = type(e).__name__
        return {"credit": led.credit, "debt": led.debt, "em_owed": led.em_owed, "topups": led.topups,
                "debited": led.debited, "cleared": led.cleared, "commits": p.commits,
                "reasons": p.supply.reasons(), "tamper": list(p.tamper.names()),
                "time": app.clock.time(), "time_valid": app.clock.time_valid,
                "settings": copy.deepcopy(app.settings), "records": recs}


class SessionRefused(RuntimeError):
    def __init__(self, text, reply):
        super().__init__(text)
        self.reply = reply

    @property
    def locked_out(self):
        """The port refused because earlier inputs sent wrong MACs (its lockout), not this MAC."""
        return "too many wrong MACs" in str(self.reply.get("error"))


def credit_delta(before, after):
    """(credit added, emergency credit added) between two snapshots."""
    return after["topups"] - before["topups"], after["em_owed"] - before["em_owed"]


def _session_ms():
    return firmware_module("provision.session").SESSION_MS
