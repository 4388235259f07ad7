"""The authenticated meter <-> head-end protocol (docs/protocol.md): envelopes signed with the
per-meter message key, per-direction sequence numbers that survive reboots, idempotent handling of
redelivered message ids, rejection reports, and dispatch of tokens and commands to the application.

The MAC covers the direction (`down` for the head-end's messages, `up` for the meter's), so an uplink
reflected back as a downlink never verifies, and the types differ by direction too (only `token` and
`cmd` come down; anything else is `malformed` before the MAC is even checked).

Order of checks for a downlink: parse and type -> meter id -> MAC (unsigned only for tokens, which then count
towards the unauthenticated source's failed-entry lockout; signed ones never do) -> already seen id
(answer the remembered result again, act never) -> sequence (s must exceed the last accepted) -> act,
remember and persist the result -> answer. A message that fails a check is reported, never acted on."""
import json
from micropython import const
from comms import auth

_KEEP_IDS = const(64)
_IDS_BYTES = const(3072)  # the remembered results' share of the 4 KB record (JSON bytes)
_DETAIL_MAX = const(160)  # a longer result (readings, a statement) is remembered without its detail
_READS = ("get_readings", "get_statement")
_SEQ_BLOCK = const(32)  # tx seqs reserved per flash write; a reboot skips the unused rest
_MAX_PAYLOAD = const(4096)
_MAX_REPORTS = const(8)  # consecutive rejections reported; more are only counted (no flash flood)
_RECORD = "proto"
COMMANDS = ("relay_open", "relay_close", "set_config", "set_time", "get_readings", "get_statement",
            "clear_tamper", "fw_offer", "load_debt")
TOKEN_LENGTHS = (9, 12, 20)


def ascii_digits(s):
    """True for a non-empty string of 0-9 only (str.isdigit also accepts Arabic-Indic digits)."""
    for c in s:
        if c < "0" or c > "9":
            return False
    return len(s) > 0


UP = "up"
DOWN = "down"


def mac_text(meter_id, seq, p, direction=None):
    """The bytes an envelope's MAC covers (`direction` UP or DOWN); without a direction, the text of
    an SMS command (one way only, its own counter)."""
    t = meter_id + "\n" + str(seq) + "\n" + p
    return (direction + "\n" + t if direction else t).encode()


class Protocol:
    def __init__(self, meter_id, key, store, send, on_token=None, on_command=None, emit=None):
        self.meter_id = meter_id
        self.key = key
        self.store = store
        self.send = send  # (envelope bytes) -> None: the uplink queue
        self.send_result = None  # (envelope, message id) -> None: results, so a newer one replaces an older
        self.on_token = on_token  # (digits, source) -> (code, detail)
        self.on_command = on_command  # (name, args) -> (code, detail)
        self.emit = emit or (lambda kind, data: None)
        st = store.load(_RECORD) or {}
        self.rx = st.get("rx", 0)  # last accepted downlink seq
        self.srx = st.get("srx", 0)  # last accepted SMS command seq
        self.ids = st.get("ids", [])  # [[msg id, code, detail], ...] oldest first
        self._tx_limit = st.get("tx", 0)  # every seq below this may already have been used
        self._tx = self._tx_limit
        self.stats = {"accepted": 0, "repeat": 0, "rejected": 0}
        self._unreported = 0  # rejections since the last accepted message

    def _save(self):
        self.store.commit(_RECORD, {"rx": self.rx, "srx": self.srx, "ids": self.ids, "tx": self._tx_limit})

    # -- uplink ------------------------------------------------------------------------------
    def seq_floor(self, floor):
        """Number the next uplinks above `floor` (the protocol record was started afresh)."""
        if floor > self._tx_limit:
            self._tx = self._tx_limit = floor

    def next_seq(self):
        if self._tx >= self._tx_limit:
            self._tx_limit = self._tx + _SEQ_BLOCK
            self._save()  # persisted before use: a reboot never reuses a sequence number
        self._tx += 1
        return self._tx

    def seal(self, inner):
        """The envelope (bytes) for an inner message dict, with the next uplink sequence number."""
        p = json.dumps(inner)
        s = self.next_seq()
        env = {"m": self.meter_id, "s": s, "p": p, "h": auth.hmac_hex(self.key, mac_text(self.meter_id, s, p, UP))}
        return json.dumps(env).encode()

    def _reply(self, inner):
        self.send(self.seal(inner))

    def _reject(self, why, s):
        self.stats["rejected"] += 1
        self._unreported += 1
        if self._unreported > _MAX_REPORTS:
            return  # a flood of junk must not wear the flash through the uplink queue
        self.emit("msg_rejected", {"why": why, "s": s})
        self._reply({"t": "reject", "why": why, "s": s})

    # -- downlink ----------------------------------------------------------------------------
    def receive(self, payload):
        """Handle one downlink MQTT payload (bytes); returns the outcome for logs and tests:
        "accepted", "repeat" or the rejection reason."""
        env, inner = self._parse(payload)
        if env is None:
            self._reject("malformed", inner)
            return "malformed"
        s = env["s"]
        t = inner.get("t")
        if env["m"] != self.meter_id:
            self._reject("bad_mac", s)  # the MAC covers m: a message for another meter cannot verify
            return "bad_mac"
        unsigned_token = t == "token" and env["h"] == ""
        if not unsigned_token:
            good = auth.hmac_hex(self.key, mac_text(env["m"], s, env["p"], DOWN))
            if not auth.equal(good, env["h"]):
                self._reject("bad_mac", s)
                return "bad_mac"
        mid = inner.get("id")
        if not isinstance(mid, str) or not mid or len(mid) > 64:
            self._reject("malformed", s)
            return "malformed"
        for e in self.ids:
            if e[0] == mid:
                self.stats["repeat"] += 1
                d = e[2]
                if d is None:  # too long to keep: a read is read again, anything else says no more
                    d = self._act(t, inner)[1] if t == "cmd" and inner.get("cmd") in _READS else {}
                self._result(mid, e[1], d)
                return "repeat"
        if not unsigned_token and s <= self.rx:
            self._reject("stale", s)
            return "stale"
        try:
            code, detail = self._act(t, inner, unsigned_token)
        except Exception as e:
            # It could not be done now (a flash or memory fault while acting; the action put itself
            # back). Not remembered and the sequence not taken: the head-end sends it again.
            why = "%s: %s" % (type(e).__name__, e)
            self.emit("msg_fault", {"id": mid, "error": why[:80]})
            self._result(mid, "fault", {"error": why[:80]})
            return "fault"
        if not unsigned_token:
            self._unreported = 0
            self.rx = s
            self._remember(mid, code, detail)
        # An unsigned token (anyone can publish one) is neither remembered nor persisted: a token is
        # idempotent by itself (its TID), so a flood of junk costs no flash write and no RAM here.
        self.stats["accepted"] += 1
        self._result(mid, code, detail)
        return "accepted"

    def _parse(self, payload):
        """(envelope, inner) or (None, seq-or-0) when malformed."""
        if not payload or len(payload) > _MAX_PAYLOAD:
            return None, 0
        try:
            env = json.loads(payload)
        except Exception:  # MicroPython and CPython raise different types for bad JSON and UTF-8
            return None, 0
        if not isinstance(env, dict):
            return None, 0
        s = env.get("s")
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            return None, 0
        m, p, h = env.get("m"), env.get("p"), env.get("h")
        if not (isinstance(m, str) and isinstance(p, str) and isinstance(h, str)) or len(p) > _MAX_PAYLOAD:
            return None, s
        try:
            inner = json.loads(p)
        except Exception:
            return None, s
        if not isinstance(inner, dict) or inner.get("t") not in ("token", "cmd"):
            return None, s
        return env, inner

    def _act(self, t, inner, unsigned=False):
        if t == "token":
            digits = inner.get("token")
            if not isinstance(digits, str) or not ascii_digits(digits) or len(digits) not in TOKEN_LENGTHS:
                return "format_error", {"why": "digits"}
            if not self.on_token:
                return "refused", {}
            # Signed by the head-end: never counts towards a lockout. Unsigned (anyone who can
            # publish to the topic): accepted, as tokens protect themselves, but counted.
            return self.on_token(digits, "mqtt" if unsigned else "headend")
        return self.command(inner.get("cmd"), inner.get("args", {}))

    def command(self, name, args):
        """Run a command through the application's handler (MQTT and SMS alike)."""
        if name not in COMMANDS:
            return "unknown_cmd", {}
        if not isinstance(args, dict):
            return "bad_args", {}
        if not self.on_command:
            return "refused", {}
        return self.on_command(name, args)

    def _remember(self, mid, code, detail):
        """Keep the newest results that fit both the count and the byte budget: the record has a
        4 KB ceiling, and a result that could not be saved would leave its message unacknowledged."""
        ids = self.ids
        e = [mid, code, detail]
        if len(json.dumps(e)) > _DETAIL_MAX:
            e[2] = None
        ids.append(e)
        room = _IDS_BYTES
        keep = 0
        for i in range(len(ids) - 1, -1, -1):
            room -= len(json.dumps(ids[i])) + 2
            if room < 0 or keep == _KEEP_IDS:
                break
            keep += 1
        del ids[:len(ids) - keep]
        self._save()

    def _result(self, mid, code, detail):
        env = self.seal({"t": "result", "ref": mid, "code": code, "detail": detail})
        if self.send_result is not None:
            self.send_result(env, mid)
        else:
            self.send(env)

    # -- SMS commands ------------------------------------------------------------------------
    def sms_mac(self, seq, body):
        """The 8 hex digits that authenticate `CMD <seq> <body> <hmac8>`."""
        return auth.hmac_hex(self.key, mac_text(self.meter_id, seq, body))[:8]

    def sms_command(self, seq, body, mac8, name, args, allowed=None):
        """An SMS command from a registered number; returns (code, detail) or (None, why) when it
        is rejected (bad MAC or stale sequence) and must not be acted on. A signed command whose name
        is not in `allowed` takes its seq (so it cannot be replayed) and is answered `refused`."""
        if not auth.equal(self.sms_mac(seq, body), mac8.lower()):
            self.emit("msg_rejected", {"why": "bad_mac", "s": seq, "via": "sms"})
            return None, "bad_mac"
        if seq <= self.srx:
            self.emit("msg_rejected", {"why": "stale", "s": seq, "via": "sms"})
            return None, "stale"
        if allowed is not None and name not in allowed:
            self.emit("sms_cmd_refused", {"why": "not_by_sms", "cmd": name[:16]})
            code, detail = "refused", {"why": "not_by_sms"}
        else:
            code, detail = self.command(name, args)
        self.srx = seq
        self._save()
        return code, detail
