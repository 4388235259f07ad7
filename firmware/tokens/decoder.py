"""The meter's one front door for typed or delivered tokens: `TokenDecoder.check(digits)` says what a
token is and whether it may be applied; `commit(result)` records it as used after the caller has
applied it to the ledger. Nothing here touches credit.

Result names: accepted, old, used, key_expired, crc_error, format_error, locked_out,
key_change_waiting. `state_bytes()` is everything to persist (key, TID store, OpenPAYGO count,
lockout), so the caller writes ledger + replay state in one atomic write.
"""
from micropython import const

from tokens import sts
from tokens.keychange import KeyChange, Section, SECTION_OF_SUBCLASS
from tokens.lockout import Lockout
from tokens.misty1 import Misty1
from tokens.tidstore import TidStore, OLD, USED

ACCEPTED = "accepted"
OLD_TOKEN = "old"
USED_TOKEN = "used"
KEY_EXPIRED = "key_expired"
CRC_ERROR = "crc_error"
FORMAT_ERROR = "format_error"
LOCKED_OUT = "locked_out"
KEY_CHANGE_WAITING = "key_change_waiting"

# What an accepted token asks for (`Result.action`) and the unit of `Result.value`.
_CREDIT_ACTIONS = (("credit_kwh", "0.1kWh"), ("credit_water", "0.1m3"), ("credit_gas", "0.1m3"),
                   ("credit_time", "0.1min"))
_CURRENCY = ("credit_currency", "0.00001")

KEYPAD = "keypad"     # check(): count on the decoder's own (keypad) lockout

_STATE_VERSION = const(1)
_TAG_KEY = const(1)
_TAG_TIDS = const(2)
_TAG_OPAYGO = const(3)
_TAG_LOCKOUT = const(4)
_TAG_KEYCHANGE = const(5)


class Result:
    """What `check` found. `result` is the standard name; for accepted tokens `action` and `value`
    say what the token asks for (value in `unit`)."""

    def __init__(self, result, system=None, action=None, value=None, unit=None, detail=None):
        self.result = result
        self.system = system
        self.action = action
        self.value = value
        self.unit = unit
        self.detail = detail
        self.tid = None
        self.token_class = None
        self.subclass = None
        self.remaining_ms = 0
        self._token = None
        self._section = None
        self._opaygo = None

    def __repr__(self):
        return "Result(%s %s %s=%s)" % (self.result, self.system, self.action, self.value)


class TokenDecoder:
    """Token checks for one meter.

    clock: the board clock (ticks_ms/ticks_add/ticks_diff, time/time_valid).
    decoder_key: 16-byte STS key (or None for no STS); ken/krn/kt/ti: its identifiers.
    opaygo: a tokens.opaygo.OpenPaygo (or None). mode: 'energy' or 'money' (which credit tokens
    this meter takes; the other kind is refused, not converted)."""

    def __init__(self, clock, decoder_key=None, ken=255, krn=1, kt=2, ti=1, opaygo=None,
                 mode="energy", tid_capacity=50, lockout_cap_s=3600, key_change_window_s=600,
                 lockout_first_s=10):
        self.clock = clock
        self.mode = mode
        self.ken = ken
        self.krn = krn
        self.kt = kt
        self.ti = ti
        self.set_key(decoder_key)
        self.tids = TidStore(tid_capacity)
        self.opaygo = opaygo
        self.lockout = Lockout(clock, lockout_cap_s, lockout_first_s)   # the keypad's (persisted)
        self.keychange = KeyChange(clock, key_change_window_s * 1000)

    def set_key(self, key):
        self.decoder_key = bytes(key) if key is not None else None
        self._cipher = Misty1(key) if key is not None else None

    # -- checking ---------------------------------------------------------------------------
    def check(self, digits, lockout=KEYPAD):
        """Classify a token without applying it. Bad entries count towards `lockout`: the keypad's
        (the default, persisted with the state), another source's `Lockout`, or None for a token
        that came authenticated (it never counts and is never locked out)."""
        if lockout is KEYPAD:
            lockout = self.lockout
        rem = lockout.remaining_ms() if lockout is not None else 0
        if rem:
            r = Result(LOCKED_OUT)
            r.remaining_ms = rem
            return r
        digits = digits.replace(" ", "").replace("-", "")
        n = len(digits)
        if n == 20 and self._cipher is not None:
            r = self._check_sts(digits)
        elif self.opaygo is not None and (n in (9, 12, 15) or n == 20 and self._cipher is None):
            # 20 digits are OpenPAYGO only on a meter without STS (extended, keys 1-4 keypad)
            r = self._check_opaygo(digits)
        else:
            r = Result(FORMAT_ERROR, detail="length")
        if lockout is None:
            return r
        if r.result in (CRC_ERROR, FORMAT_ERROR) and r.detail != "mode":
            lockout.failure()
            r.remaining_ms = lockout.remaining_ms()
        elif r.result in (ACCEPTED, KEY_CHANGE_WAITING):
            lockout.success()
        return r

    def _check_sts(self, digits):
        try:
            t = sts.decode(self._cipher, digits)
        except ValueError:
            return Result(FORMAT_ERROR, "sts", detail="digits")
        if not t.crc_ok:
            return Result(CRC_ERROR, "sts")
        c = t.token_class
        s = t.subclass
        if c == sts.CLASS_TEST:
            r = Result(ACCEPTED, "sts", "test", t.field, None, sts.TEST_NAMES[s] if s < 2 else "reserved")
            r.token_class, r.subclass = c, s
            return r  # test tokens carry no TID and are not recorded
        if c == sts.CLASS_MANAGEMENT and s in SECTION_OF_SUBCLASS:
            return self._check_key_section(t)
        if c not in (sts.CLASS_CREDIT, sts.CLASS_MANAGEMENT):
            return Result(FORMAT_ERROR, "sts", detail="class")
        if (t.tid >> 16) > self.ken:
            r = Result(KEY_EXPIRED, "sts")
        else:
            st = self.tids.check(t.tid)
            if st == OLD:
                r = Result(OLD_TOKEN, "sts")
            elif st == USED:
                r = Result(USED_TOKEN, "sts")
            else:
                r = self._what(t)
        r.tid, r.token_class, r.subclass, r._token = t.tid, c, s, t
        return r

    def _what(self, t):
        s = t.subclass
        if t.token_class == sts.CLASS_CREDIT:
            action, unit = _CURRENCY if s >= 4 else _CREDIT_ACTIONS[s]
            if (self.mode == "money") != (s >= 4):
                if s == 0 or s >= 4:
                    # kWh tokens on a money-mode meter (and currency on an energy meter) are
                    # refused, not converted: the token stays unused so the vendor can reissue it.
                    return Result(FORMAT_ERROR, "sts", action, t.amount(), unit, "mode")
            return Result(ACCEPTED, "sts", action, t.amount(), unit)
        if s == sts.SET_MAX_POWER:
            return Result(ACCEPTED, "sts", "max_power_w", t.amount(), "W")
        if s == sts.CLEAR_CREDIT:
            return Result(ACCEPTED, "sts", "clear_credit", t.field, "register")
        if s == sts.CLEAR_TAMPER:
            return Result(ACCEPTED, "sts", "clear_tamper", 0)
        if s == sts.SET_PHASE_UNBALANCE:
            return Result(ACCEPTED, "sts", "max_phase_unbalance_w", t.amount(), "W")
        return Result(FORMAT_ERROR, "sts", detail="unsupported")

    def _check_key_section(self, t):
        sec = Section(t)
        complete, newkey, held = self.keychange.preview(sec)
        if complete:
            r = Result(ACCEPTED, "sts", "key_change", newkey.krn, "krn")
            r.detail = "rollover" if newkey.rollover else None
        else:
            r = Result(KEY_CHANGE_WAITING, "sts", "key_section", len(held), "sections", held)
        r.token_class, r.subclass, r._section = t.token_class, t.subclass, sec
        return r

    def _check_opaygo(self, digits):
        d = self.opaygo.decode(digits)
        if d.status == "format":
            return Result(FORMAT_ERROR, "opaygo", detail="digits")
        if d.status == "invalid":
            return Result(CRC_ERROR, "opaygo")
        if d.status == "used":
            return Result(USED_TOKEN, "opaygo")
        names = {1: "opaygo_add", 2: "opaygo_set", 3: "payg_disable", 4: "counter_sync"}
        r = Result(ACCEPTED, "opaygo", names[d.token_type], d.value, "opaygo_unit")
        r._opaygo = d
        return r

    # -- applying ---------------------------------------------------------------------------
    def commit(self, result):
        """Record `result` as used (call after applying it). A key change takes effect here.
        Raises ValueError for a result that may not be committed or was committed already."""
        if result.result not in (ACCEPTED, KEY_CHANGE_WAITING):
            raise ValueError("only accepted tokens are committed")
        if result._section is not None:
            newkey = self.keychange.commit(result._section)
            if newkey is not None:
                self.set_key(newkey.key)
                self.ken, self.krn, self.kt, self.ti = newkey.ken, newkey.krn, newkey.kt, newkey.ti
                if newkey.rollover:
                    self.tids.clear()
        elif result._opaygo is not None:
            self.opaygo.commit(result._opaygo)
        elif result._token is not None:
            self.tids.record(result.tid)
        result.result = USED_TOKEN  # a second commit of the same object is refused

    # -- persistence ------------------------------------------------------------------------
    def state_bytes(self):
        """Everything that must survive a reboot, as one byte string (tag, length, data)."""
        parts = []
        if self.decoder_key is not None:
            parts.append((_TAG_KEY, self.decoder_key + bytes((self.ken, self.krn, self.kt, self.ti))))
        parts.append((_TAG_TIDS, self.tids.to_bytes()))
        if self.opaygo is not None:
            parts.append((_TAG_OPAYGO, self.opaygo.state_bytes()))
        parts.append((_TAG_LOCKOUT, self.lockout.to_bytes()))
        kc = self.keychange.to_bytes()
        if kc:
            parts.append((_TAG_KEYCHANGE, kc))
        out = bytearray((_STATE_VERSION,))
        for tag, data in parts:
            out.append(tag)
            out.extend(len(data).to_bytes(2, "big"))
            out.extend(data)
        return bytes(out)

    def load_state(self, data):
        """Restore from `state_bytes()`. Raises ValueError if the data is malformed."""
        if not data or data[0] != _STATE_VERSION:
            raise ValueError("unknown token state version")
        p = 1
        while p < len(data):
            if p + 3 > len(data):
                raise ValueError("truncated token state")
            tag = data[p]
            n = (data[p + 1] << 8) | data[p + 2]
            body = bytes(data[p + 3:p + 3 + n])
            if len(body) != n:
                raise ValueError("truncated token state")
            if tag == _TAG_KEY:
                self.set_key(body[:16])
                self.ken, self.krn, self.kt, self.ti = body[16], body[17], body[18], body[19]
            elif tag == _TAG_TIDS:
                self.tids.load_bytes(body)
            elif tag == _TAG_OPAYGO and self.opaygo is not None:
                self.opaygo.load_state(body)
            elif tag == _TAG_LOCKOUT:
                self.lockout.load_bytes(body)
            elif tag == _TAG_KEYCHANGE:
                self.keychange.load_bytes(body)
            p += 3 + n
