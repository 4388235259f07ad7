"""The prepaid core in the running meter: metered energy debits the ledger, the credit policy and the
other reasons drive the supply relay, and everything that must survive a power cut is committed.

Persistence: the full record `prepaid` holds the ledger, the policy's daily ring and warning state,
the supply's reasons and trips, the relay's position, the meter's energy totals, the references of
the last top-ups applied (so a retried top-up is never applied twice), the references of the arrears
loaded as debt (`dr`, kept apart so top-ups never push them out) and a generation `n`. It is
written at once after every credit change (before the change is acknowledged), whenever the supply,
relay, power limit, day or month changes, and at least daily.

Energy alone changes only a few numbers, so its commits write the small record `pe` instead: the
meter totals, the ledger's registers and the policy's day, as zig-zag varints (about 60 bytes, so
littlefs keeps it inline in its metadata log and a commit erases no block of its own; the full record
would cost a block erase per commit). `pe` carries the generation of the full record it extends; at
boot it is laid over `prepaid` only when the generations match, so a full commit (which holds the
same numbers) always supersedes older `pe` copies. Energy commits happen at the poll after which
one more poll like it would leave more than a quarter of `commit_wh` Wh uncommitted (counted to the
meter's register resolution, fractions included), when `commit_s` seconds have passed, and at once
when the board signals a failing supply (power-fail input). Under a load high enough that one
metering period would hold more than a quarter of `commit_wh` (900 W at 1 s with the default 1 Wh),
the next poll comes sooner (what `poll` returns, at least GAP_MIN_MS on): a cut that tears a commit
loses the poll just read, and a 4 kW load read once a second put 1.1 Wh in every poll. A metering
period longer than 1 s is the utility's choice of fewer polls (and of a cut losing up to a period's
energy): kept. Energy registered but not committed when power is lost (even by a cut that tears the
commit itself) is therefore at most `commit_wh` as long as the load rises by less than three
quarters of it within one poll, and zero with a power-fail warning.

A missing record on a meter that has already been commissioned (the `born` record exists) is a
fault: the ledger starts at zero credit with the fault reported - state is never re-created with
free credit.

Monthly statement: the record keeps the totals at the start of the current calendar month (`mo`:
month id, import Wh, debited, top-ups). At the first poll of a new month with a valid clock the month
is closed into `st` (month id, kWh, cost, top-ups, credit at close) in the same commit that opens the
next one, so a statement is made once, never lost and never doubled by a power cut. Delivering it
(SMS, uplink) is the cellular side's job, which reads `statement`. A meter whose clock was unknown
at the start of a month states only what it measured once the time was known.
"""
from credit import civil
from relay import supply as sup
from relay.latching import LatchingRelay
from store.records import StoreMissing
from metering.tamper import Tamper
from util import once

RECORD = "prepaid"
HOT = "pe"
BORN = "born"
_HOT_FORMAT = 1
HOT_LEDGER = ("credit", "debt", "em_owed", "fine", "mtd_wh", "month", "last_t", "topups", "debited", "cleared",
              "em_taken", "energy_wh")
HOT_POLICY = ("day", "today", "armed_credit", "armed_days")
_REFS = 32
_DEBT_REFS = 8       # arrears loads are rare: one at migration, a few corrections
GAP_MIN_MS = 200    # the shortest gap between metering polls under a high load (0.8 Wh at 14.4 kW)
FAST_PERIOD_MS = 1000   # metering periods up to this poll sooner under a high load; longer ones are kept
_NONE = -0x3FFFFFFF   # a None in the energy record (a time not known yet): no real value takes it
_NOT_LANDED = 0
_LANDED = 1
_UNKNOWN = 2

DEFAULTS = {
    "tariff": {"mode": "money", "minor_per_major": 100,
               "tariffs": [{"start": 0, "blocks": [{"price_per_mwh": 500000}]}]},
    "ledger": {"opening_credit": 0, "emergency_amount": 0},
    "policy": {},
    "supply": {},
    "relay": {},
    "tamper": {},
    "commit_wh": 1,
    "commit_s": 600,
}


class Prepaid:
    """Built once by the app from the board (clock, relay and cover pins, power-fail input, reset), the
    meter (energy listener, totals, chip readings), the store and the event log (emit, counts kept
    across reboots). `ledger_lost` is True when a commissioned meter found no readable state."""

    def __init__(self, board, meter, store, events, cfg=None):
        self.board = board
        self.meter = meter
        self.clock = clock = board.clock
        self.store = store
        self.events = events
        self.emit = emit = events.emit
        self.ledger_lost = False
        state = self._load_state()
        # The assembly (prepaid/assemble.py, also used by set_config) is loaded for this call only.
        c, self.schedule, self.ledger, self.policy, supply_cfg, tamper_cfg = once("prepaid.assemble").build(
            self, cfg, state)
        relay_info = board.info.get("relay", {})
        rcfg = dict(c["relay"])
        rcfg.setdefault("pulse_ms", relay_info.get("pulse_ms", 60))
        self.relay = LatchingRelay(board.pin("relay_set"), board.pin("relay_reset"), clock, emit, rcfg,
                                   feedback=board.pin("relay_feedback") if relay_info.get("feedback") else None,
                                   current=lambda: meter.reading.irms_ma, state=state.get("relay"))
        self.supply = sup.Supply(self.relay, clock, emit, supply_cfg, state.get("supply"))
        if state.get("max_power_w") is not None:      # set by an STS management token
            self.supply.limit_w = state["max_power_w"]
        tot = state.get("meter")
        if tot:     # the meter's registers are restored from the record they are committed in
            meter.import_wh, meter.import_rem, meter.export_wh, meter.export_rem = tot
        # After the totals: tamper arms reverse from the export register.
        pins = board.info.get("pins", {})
        self.tamper = Tamper(meter, clock, emit, self.supply, board.pin("cover") if "cover" in pins else None,
                             tamper_cfg, state.get("tp"))
        self.cfg = c                        # the prepaid settings in force, completed by DEFAULTS
        self.commit_wh = c["commit_wh"]
        self.commit_ms = c["commit_s"] * 1000
        self.refs = state.get("refs", [])
        self.debt_refs = state.get("dr", [])
        self.month = state.get("mo")        # [month id, import Wh, debited, top-ups] at its start
        self.statement = state.get("st")    # the last closed month: [id, Wh, cost, top-ups, credit]
        self._month_end = None              # Unix start of the next month (cached)
        ev = state.get("ev")
        if ev:    # event counts run on across reboots (this boot's events are added on top)
            counts = events.counts
            for k, v in ev.items():
                counts[k] = counts.get(k, 0) + v
        self.n = state.get("n", 0)
        self._pos_done = self._pos_last = self._pos()
        self.hot_commits = 0
        self._cold = None
        self.uncommitted_wh = 0
        self.last_commit = self.last_full = clock.ticks_ms()
        meter.listeners.append(self.on_energy)
        self.power_fail_pin = board.pin("power_fail")
        self._pf_seen = False
        self.commits = 0
        if not state:
            self.commit()   # the first commit also writes `born`

    # -- persistence -----------------------------------------------------------------------------
    def _load_state(self):
        st = self.store
        if st is None:
            return {}
        try:
            state = st.load(RECORD)
        except Exception as e:
            missing = isinstance(e, StoreMissing)
            kind = type(e).__name__
        else:
            self._overlay(state)
            return state
        born = True
        try:
            st.load(BORN)
        except Exception:
            born = False
        if born or not missing:
            # Commissioned before: the state is gone or unreadable. Never invent credit.
            self.emit("ledger_lost", {"error": kind})
            self.ledger_lost = True
        return {}

    def _overlay(self, state):
        """Lay the newest energy commit over the full record it extends."""
        try:
            vals = unpack_hot(self.store.load(HOT))
        except StoreMissing:
            return
        except Exception as e:
            self.emit("store_corrupt", {"detail": "pe " + type(e).__name__})
            return
        n = len(HOT_LEDGER)
        if vals is None or len(vals) != 5 + n + len(HOT_POLICY) or vals[-1] != state.get("n", 0):
            return                       # older than the full record (or another format): superseded
        state["meter"] = vals[0:4]
        led = state.get("ledger")
        pol = state.get("policy")
        if isinstance(led, dict) and isinstance(pol, dict):
            for i in range(n):
                v = vals[4 + i]
                led[HOT_LEDGER[i]] = None if v == _NONE else v
            for i in range(len(HOT_POLICY)):
                v = vals[4 + n + i]
                pol[HOT_POLICY[i]] = None if v == _NONE else v

    def _hot(self):
        m = self.meter
        led = self.ledger
        pol = self.policy
        vals = [m.import_wh, m.import_rem, m.export_wh, m.export_rem]
        for k in HOT_LEDGER:
            v = getattr(led, k)
            vals.append(_NONE if v is None else v)      # last_t is None until the time is known
        vals.append(_NONE if pol.day is None else pol.day)
        vals.append(pol.today)
        vals.append(int(pol.armed_credit))
        vals.append(int(pol.armed_days))
        vals.append(self.n)
        return pack_hot(vals)

    def _sig(self):
        """What only the full record holds, in a tuple: when it changes, an energy commit is a full one."""
        rel = self.relay
        pol = self.policy
        return (self.supply.state(), self.supply.limit_w, rel.closed, rel.failed,
                pol.head, pol.count, len(self.refs), self.tamper.flags, self.month[0] if self.month else 0,
                self.statement[0] if self.statement else 0)

    def snapshot(self):
        m = self.meter
        return {"ledger": self.ledger.state(), "policy": self.policy.state(), "supply": self.supply.state(),
                "relay": self.relay.state(), "meter": [m.import_wh, m.import_rem, m.export_wh, m.export_rem],
                "refs": self.refs, "dr": self.debt_refs, "max_power_w": self.supply.limit_w, "ev": self.events.counts,
                "mo": self.month, "st": self.statement, "n": self.n, "tp": self.tamper.state()}

    def commit(self, extra=None):
        """Write the prepaid record (and `extra` records in the same atomic step)."""
        st = self.store
        if st is None:
            return False
        self.n += 1
        recs = {RECORD: self.snapshot()}
        if self.commits == 0:
            recs[BORN] = {"t": self.clock.time()}
        if extra:
            recs.update(extra)
        if len(recs) == 1:
            st.commit(RECORD, recs[RECORD])
        else:
            st.commit_many(recs)
        self.commits += 1
        self.uncommitted_wh = 0
        self._mark_done()
        self.last_commit = self.last_full = self.clock.ticks_ms()
        self._cold = self._sig()
        return True

    def _pos(self):
        """Energy registered in either direction, in the meter's register units (Wh/den)."""
        m = self.meter
        return (m.import_wh + m.export_wh) * m.den + m.import_rem + m.export_rem

    def _mark_done(self):
        self._pos_done = self._pos()

    def commit_energy(self):
        """The energy commit: the small record, unless something only the full record holds changed."""
        st = self.store
        if st is None:
            return False
        if self._sig() != self._cold:
            return self.commit()
        st.commit(HOT, self._hot())
        self.commits += 1
        self.hot_commits += 1
        self.uncommitted_wh = 0
        self._mark_done()
        self.last_commit = self.clock.ticks_ms()
        return True

    # -- energy ----------------------------------------------------------------------------------
    def on_energy(self, import_wh, export_wh):
        clock = self.clock
        if import_wh:
            debited = self.ledger.debit(import_wh, clock.time(), clock.time_valid)
            self.policy.record(debited, clock.time(), clock.time_valid)
            self.uncommitted_wh += import_wh

    def poll(self, period_ms=1000):
        """After each metering poll: standing charge, credit rule, power limit, relay, commits. Returns
        the milliseconds to the next poll: `period_ms`, or fewer under a high load (see the module doc)."""
        if self._pf_seen and not self.power_fail_pin.value():
            self._pf_seen = False            # the supply came back (a brown-out): the next sag is news
        clock = self.clock
        now = clock.time()
        valid = clock.time_valid
        led = self.ledger
        d = led.debit(0, now, valid)
        if d:
            self.policy.record(d, now, valid)
        if self.policy.cut_for_credit(led.credit, now, valid):
            self.supply.set_reason(sup.NO_CREDIT)
        else:
            self.supply.clear_reason(sup.NO_CREDIT)
        self.policy.check_warnings(led.credit)
        if valid and (self._month_end is None or now >= self._month_end):
            self._month_turn(now)
        self.tamper.poll()
        t = clock.ticks_ms()
        self.supply.power_sample(self.meter.reading.p_w, t)
        self.supply.poll(t)
        self.relay.poll(t)
        m = self.meter
        pos = self._pos()
        step = pos - self._pos_last
        self._pos_last = pos
        u = pos - self._pos_done
        # The next poll: one period on, or sooner when the load would put more than a quarter of
        # commit_wh into it (the quarter the commit rule plans for).
        p = abs(m.reading.p_w)
        gap = period_ms
        quarter = 900000 * self.commit_wh          # W x ms in a quarter of commit_wh
        if gap <= FAST_PERIOD_MS and p * gap > quarter:   # a longer period is a choice of fewer polls
            gap = max(GAP_MIN_MS, int(quarter // p))
        # The next poll's energy at this load, in Wh/den: mWh times units per Wh/1000 (at 1 s periods
        # small ints on a 32-bit port: p x gap is then at most a quarter of commit_wh in W x ms, or
        # p x GAP_MIN_MS).
        nxt = p * gap // 3600 * (m.den // 1000)
        if nxt < step:
            nxt = step
        if clock.ticks_diff(t, self.last_full) >= 24 * 3600000:
            self.commit()
        elif 4 * (u + nxt) > self.commit_wh * m.den or (u and clock.ticks_diff(t, self.last_commit) >= self.commit_ms):
            # Before another poll like this one could leave more than a quarter of commit_wh
            # uncommitted: a cut (even one that tears this commit) loses what was uncommitted plus the
            # next poll, so the other three quarters are kept for the load rising within one poll
            # (2.7 kW within a 1 s poll with the default 1 Wh; polls come faster under a high load).
            self.commit_energy()
        return gap

    def _month_turn(self, now):
        """Open the month on the first valid time; close the previous one into a statement."""
        led = self.ledger
        m = self.meter
        mid = civil.month_id(now)
        self._month_end = civil.start_of_next_month(now)
        mo = self.month
        if mo is not None and mid <= mo[0]:
            return                           # same month (or a clock set back: keep counting)
        opened = [mid, m.import_wh, led.debited, led.topups]
        self.month = opened
        if mo is None:
            return                           # committed with the next energy commit
        self.statement = [mo[0], m.import_wh - mo[1], led.debited - mo[2], led.topups - mo[3], led.credit]
        self.commit()
        self.emit("statement", {"month": month_name(mo[0])})

    def power_failing(self):
        """The supply is going: take the last energy out of the chip and commit it now, once while the
        power-fail input stays high (other input may wake the loop again within the hold-up: it must not
        commit and report again each time); a supply seen back (here, or at the next metering poll: a
        brown-out) re-arms it. Sags closer together than that with no wake between are one episode."""
        if self.power_fail_pin.value():
            if self._pf_seen:
                return True
            self._pf_seen = True
            self.meter.poll()
            self.commit_energy()
            self.emit("power_fail", None)
            return True
        self._pf_seen = False
        return False

    # -- credit changes (each committed before it is acknowledged) -------------------------------
    def change(self, fn):
        """One credit change, all or nothing: `fn()` changes the ledger (through `add_credit`), the
        refs, the power limit or the tamper flags in RAM and returns the records to commit with them
        (or None); everything is committed in one atomic step. If anything fails before the commit is
        known to be on flash, RAM is put back as flash has it; if the store cannot tell (a redo journal
        is pending) the meter restarts, and the boot reads what flash holds. So RAM never keeps a
        change that a later commit could make durable without its companion records (the credit of a
        token without its TID, which a redelivery of the token would then credit again)."""
        led = self.ledger
        keep = (led.state(), list(self.refs), self.supply.limit_w, self.tamper.flags, self.n, list(self.debt_refs))
        st = self.store
        gen = st.generation(RECORD) if st is not None else 0
        try:
            extra = fn()
            if extra is False:
                return                   # nothing changed: nothing to write
            self.commit(extra)
        except BaseException as e:
            where = self._landed(gen)
            if where == _LANDED:
                return                   # on flash (it failed after landing): the change stands
            if where == _UNKNOWN:
                self.emit("commit_failed", {"error": type(e).__name__})
                self.board.reset()   # the boot finishes or drops the journal and reads flash
            led.restore(keep[0])
            self.refs = keep[1]
            self.supply.limit_w = keep[2]
            self.tamper.flags = keep[3]
            self.n = keep[4]
            self.debt_refs = keep[5]
            raise
        self.poll_supply()

    def _landed(self, gen):
        st = self.store
        if st is None:
            return _NOT_LANDED
        try:
            if st.journal_pending():
                return _UNKNOWN
            return _LANDED if st.generation(RECORD) != gen else _NOT_LANDED
        except BaseException:
            return _UNKNOWN

    def add_credit(self, amount, ref):
        """Credit `amount` (minor units or Wh) in RAM, once per `ref`; None when `ref` was credited
        before. Only inside `change()`, which commits it."""
        if ref in self.refs:
            return None
        split = self.ledger.topup(amount, ref)
        self.refs.append(ref)
        if len(self.refs) > _REFS:
            self.refs.pop(0)
        return split

    def topup(self, amount, ref):
        out = {}

        def fn():
            split = self.add_credit(amount, ref)
            if split is None:
                return False
            out.update(split)
        self.change(fn)
        if not out:
            return {"applied": False, "duplicate": True, "ref": ref}
        out["applied"] = True
        return out

    def load_debt(self, amount, ref, share_bp=None):
        """Arrears loaded as debt, once per `ref`, committed before it is answered; True when loaded,
        False when `ref` was loaded before. Debt never opens the supply: only credit does (policy.py)."""
        out = []

        def fn():
            if ref in self.debt_refs:
                return False
            self.ledger.load_debt(amount, share_bp)
            self.debt_refs.append(ref)
            if len(self.debt_refs) > _DEBT_REFS:
                self.debt_refs.pop(0)
            out.append(ref)
        self.change(fn)
        return bool(out)

    def poll_supply(self):
        led = self.ledger
        if not self.policy.cut_for_credit(led.credit, self.clock.time(), self.clock.time_valid):
            self.supply.clear_reason(sup.NO_CREDIT)
        self.supply.poll(self.clock.ticks_ms())

    def take_emergency(self):
        out = []

        def fn():
            ok, why = self.ledger.take_emergency()
            out.append((ok, why))
            return None if ok else False
        self.change(fn)
        return out[0]

    def supply_state(self):
        return "closed" if self.supply.closed else "open"


def month_name(mid):
    """"YYYY-MM" of a month id (year*12 + month-1)."""
    m = mid % 12 + 1
    return "%d-%s%d" % (mid // 12, "0" if m < 10 else "", m)


def pack_hot(vals):
    """Ints as zig-zag LEB128 varints after a format byte."""
    out = bytearray((_HOT_FORMAT,))
    for v in vals:
        z = v << 1 if v >= 0 else ((-v) << 1) - 1
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
    return bytes(out)


def unpack_hot(b):
    """The ints of pack_hot, or None for another format or a truncated value."""
    if not b or b[0] != _HOT_FORMAT:
        return None
    vals = []
    z = 0
    sh = 0
    for c in b[1:]:
        z |= (c & 0x7F) << sh
        if c & 0x80:
            sh += 7
            continue
        vals.append(z >> 1 if not z & 1 else -((z + 1) >> 1))
        z = 0
        sh = 0
    return None if sh else vals
