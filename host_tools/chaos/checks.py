"""The chaos run's checks, independent of the firmware: the flash image decoded here (powercut's own
decoder of the documented record formats, never the firmware's code), the simulator's truth (energy that
really flowed, the relay's real position), the head-end's and the provider's books. After every boot,
every simulated hour, while the supply is off, and at the end. Every violation carries the seed and the
step (virtual seconds from the start of the run) to reproduce it.

Stated bounds:
- unbilled energy per cut (energy the firmware read from the chip and had not committed when it died):
  UNBILLED_WH plus the energy of the two metering periods before the cut (the prepaid core commits
  energy per Wh step looking one poll ahead; a 10 s poll at 3 kW reads 8 Wh at once);
- energy registered against the truth, per meter: within the energy that flowed while the meter could
  not meter (from each fault that stops metering to the first reading after it) plus one metering
  period's energy per such fault, plus the unbilled energy of the cuts and TRUTH_SLACK_WH;
- metering resumes within RECOVERY_BOUND_S after every fault that stopped it (counted while there is
  energy to meter);
- a supply the rules keep on is on again within GRACE_S (the poll, the relay's pulse and its retries)."""
from host_tools.errors import SimulationError
from host_tools.sim.scenarios.powercut import BAD_EVENTS, committed_record, ledger_problems

UNBILLED_WH = 1.0               # + the energy of the two metering periods before the cut
TRUTH_SLACK_WH = 1.0
RECOVERY_BOUND_S = 180.0
GRACE_S = 120.0
REPORT_WINDOW_S = 300.0
PERIOD_S = 10                   # the run's metering period (run.meter_settings)
# The reasons the rules allow the supply to be open for in this run (no power limit, tamper or voltage
# limits are configured): NO_CREDIT outside friendly hours with a known time, REMOTE while commanded.
ALLOWED = ("NO_CREDIT", "REMOTE")


def friendly(unix_s, windows):
    """Whether `unix_s` (UTC) falls in one of the weekly windows (the policy's documented meaning),
    computed here independently of the firmware."""
    day = (int(unix_s) // 86400 + 3) % 7          # 1970-01-01 was a Thursday; Monday = 0
    minute = int(unix_s) % 86400 // 60
    for w in windows:
        h0, m0 = (int(x) for x in w["start"].split(":"))
        h1, m1 = (int(x) for x in w["end"].split(":"))
        a, b = h0 * 60 + m0, h1 * 60 + m1
        days = w["days"]
        if a == b:
            if day in days:
                return True
        elif a < b:
            if day in days and a <= minute < b:
                return True
        else:
            if (day in days and minute >= a) or ((day - 1) % 7 in days and minute < b):
                return True
    return False


class _MeterWatch:
    def __init__(self):
        self.den = 32000
        self.gap = 0
        self.boots = 0
        self.unbilled = []
        self.committed_topups = 0
        self.last_counts = 0
        self.blind_since = None      # a fault stopped metering at this virtual s (or it ended then)
        self.blind_truth = None      # the truth (Wh) then
        self.blind_wh = 0.0          # energy that flowed while the meter could not meter
        self.blind_faults = 0
        self.recoveries = []
        self.open_since = None
        self.next_open_check = None
        self.remote = {}             # msg_id of a relay_open -> the msg_id of its relay_close (or None)
        self.bad_counts = {}
        self.base_counts = {}
        self.import0 = None
        self.truth0 = None
        self.reports = []            # (unix start, unix end of the window, fault kind, event kind)
        self.boot_times = []         # unix times of boots
        self.ring = []               # (virtual s, truth Wh) of the last steps: the energy before a fault
        self.pre_wh = 0.0            # energy of the metering period before each fault (in the chip, unread)
        self.offset = 0              # counts the runner saw while the chip answered garbage (not energy)
        self.garbage_from = None


class Checker:
    def __init__(self, run):
        self.run = run
        self.violations = []
        self.w = {}
        self.tariff_from = None
        self.open_checks = 0
        self.boot_checks = 0
        self.report_checks = 0

    @property
    def step(self):
        return round(self.run.v - getattr(self.run, "t0", 0.0), 1)

    def flag(self, m, check, what):
        r = self.run
        self.violations.append({"seed": r.seed, "step": self.step, "meter": m.id if m is not None else None,
                                "check": check, "what": what,
                                "reproduce": "meterkit sim chaos --days %s --meters %d --seed %d --faults-per-day %s%s --json"
                                             % (r.days, r.n, r.seed, r.per_day,
                                                (" --kinds " + ",".join(r.kinds_asked) if r.kinds_asked else "")
                                                + ("" if r.campaign_wanted else " --no-campaign"))})
        self.run.say("VIOLATION step %s meter %s %s: %s" % (self.step, m.id if m else "-", check, what))

    # -- set-up ------------------------------------------------------------------------------------
    def attach(self, m):
        """Check the committed state in the instant between every death and the next boot."""
        self.w[m.id] = _MeterWatch()
        boot = m.sim.boot

        def checked_boot():
            if m.sim.boots:
                self.on_boot(m)
            boot()
        m.sim.boot = checked_boot

    def started(self):
        for m in self.run.fleet:
            w = self.w[m.id]
            tot = m.sim.request("totals", fresh=True)
            w.den = tot["rem_den"]
            w.import0 = tot["import_wh"] + tot["import_rem"] / w.den
            w.truth0 = m.sim.world.true_import_wh
            w.gap = self.counts(m, w) * 1000 - (tot["import_wh"] * w.den + tot["import_rem"])
            w.last_counts = self.counts(m, w)
            w.base_counts = dict(m.sim.request("events", since=1 << 30).get("counts") or {})
            w.bad_counts = {k: n for k, n in w.base_counts.items() if self._bad(k)}

    @staticmethod
    def _bad(kind):
        return kind in BAD_EVENTS or kind.startswith("store_record") or kind.startswith("store_slot")

    def _vended(self, m):
        from host_tools.headend.reconcile import reconcile
        return reconcile(self.run.store, m.id)["meters"][0]

    # -- after every boot --------------------------------------------------------------------------
    def on_boot(self, m):
        w = self.w[m.id]
        w.boots += 1
        w.boot_times.append(self.run.unix_now())
        self.boot_checks += 1
        try:
            rec = committed_record(m.sim.flash)
        except SimulationError as e:
            self.flag(m, "flash", "after a cut the committed state cannot be read: %s" % e)
            return
        led = rec["ledger"]
        for p in ledger_problems(led):
            self.flag(m, "conservation", "committed state: " + p)
        vended = self._vended(m)["vended_minor"]
        if led["topups"] < w.committed_topups:
            self.flag(m, "token_lost", "committed top-ups fell from %d to %d" % (w.committed_topups, led["topups"]))
        if led["topups"] > vended:
            self.flag(m, "token_twice", "committed top-ups %d exceed everything vended for the meter (%d)"
                      % (led["topups"], vended))
        w.committed_topups = led["topups"]
        if w.import0 is not None:
            imp_wh, imp_rem = rec["meter"][0], rec["meter"][1]
            gap = self.counts(m, w) * 1000 - (imp_wh * w.den + imp_rem)
            lost = (gap - w.gap) / w.den
            w.gap = gap
            w.unbilled.append(lost)
            if lost < -1e-9:
                self.flag(m, "energy", "committed import exceeds the energy read by %.4f Wh" % -lost)
            else:
                bound = UNBILLED_WH + self._last_periods_wh(w)
                if lost > bound:
                    self.flag(m, "unbilled", "%.3f Wh read and not committed at a cut (bound %.2f Wh)" % (lost, bound))
        # metering stopped at the death: blind from now until the first reading after the boot
        self._blind(m, w)

    @staticmethod
    def _last_periods_wh(w):
        """The energy that flowed in the two metering periods before the last step observed (the death)."""
        if not w.ring:
            return 0.0
        t, e = w.ring[-1]
        before = [x for x in w.ring if x[0] <= t - 2 * PERIOD_S]
        return e - (before[-1][1] if before else w.ring[0][1])

    # -- faults ------------------------------------------------------------------------------------
    def _blind(self, m, w):
        if w.blind_since is None:
            # what the chip held unread when metering stopped: at most the period before (a step more)
            now, truth = self.run.v, m.sim.world.true_import_wh
            before = [x for x in w.ring if x[0] <= now - PERIOD_S - self.run.step_s]
            w.pre_wh += truth - (before[-1][1] if before else (w.ring[0][1] if w.ring else truth))
            w.blind_since = self.run.v
            w.blind_truth = m.sim.world.true_import_wh
            w.blind_faults += 1

    def fault(self, m, kind, st):
        if m is None:
            return
        w = self.w[m.id]
        if kind == "chip_garbage" and st.undo_s and w.garbage_from is None:
            w.garbage_from = m.sim.counts_read_import
        if st.metering:
            self._blind(m, w)
        if st.report:
            start = self.run.unix_now()
            w.reports.append((start, start + (st.undo_s or 0) + REPORT_WINDOW_S, kind, st.report,
                              start + (st.undo_s or 0)))

    def fault_ended(self, m, kind, st):
        if m is None:
            return
        w = self.w[m.id]
        if kind == "chip_garbage" and w.garbage_from is not None:
            w.offset += m.sim.counts_read_import - w.garbage_from
            w.garbage_from = None
        if not st.metering:
            return
        if w.blind_since is not None:
            w.blind_since = self.run.v      # a fault that stopped metering while it lasted: from its end
        else:
            self._blind(m, w)

    def counts(self, m, w=None):
        """0.1-pulse counts the firmware read from the chip's energy register, garbage left out."""
        w = w or self.w[m.id]
        c = m.sim.counts_read_import
        if w.garbage_from is not None:
            c = w.garbage_from
        return c - w.offset

    # -- every step --------------------------------------------------------------------------------
    def observe(self):
        now = self.run.v
        for m in self.run.fleet:
            if m.dead:
                continue
            w = self.w[m.id]
            world = m.sim.world
            c = self.counts(m, w)
            if w.blind_since is not None:
                if c > w.last_counts:
                    rec = now - w.blind_since
                    w.recoveries.append(rec)
                    w.blind_wh += world.true_import_wh - w.blind_truth
                    if rec > RECOVERY_BOUND_S:
                        self.flag(m, "recovery", "metering resumed %.0f s after the fault (bound %.0f s)"
                                  % (rec, RECOVERY_BOUND_S))
                    w.blind_since = None
                elif world.supply_power_w() <= 0:
                    # nothing flows (supply off, outage): nothing to meter, so nothing to wait for yet
                    w.blind_wh += world.true_import_wh - w.blind_truth
                    w.blind_truth = world.true_import_wh
                    w.blind_since = now
            w.last_counts = c
            w.ring.append((now, world.true_import_wh))
            if len(w.ring) > 64:
                del w.ring[:32]
            self._supply(m, w, world)

    def _supply(self, m, w, world):
        now = self.run.v
        if world.relay_closed or not world.grid_on:
            w.open_since = None
            return
        if w.open_since is None:
            w.open_since = now
            w.next_open_check = now + GRACE_S
            return
        if now < w.next_open_check:
            return
        w.next_open_check = now + 600
        self.open_checks += 1
        try:
            v = m.sim.request("credit")
            ping = m.sim.request("ping")
        except SimulationError as e:
            if world.grid_on:
                self.flag(m, "stuck", "the meter did not answer with its supply off: %s" % e)
            return
        reasons = v.get("reasons") or []
        if isinstance(reasons, str):
            reasons = [r for r in reasons.replace("|", " ").replace(",", " ").split() if r]
        unix = self.run.unix_now()
        from host_tools.chaos.run import FRIENDLY
        if not reasons:
            if not v.get("relay_failed"):
                self.flag(m, "cutoff", "the supply has been off %.0f s with no reason (supply %s)"
                          % (now - w.open_since, v.get("supply")))
            return
        for r in reasons:
            if r not in ALLOWED:
                self.flag(m, "cutoff", "supply off for %s, which this run never gives cause for" % r)
        if "NO_CREDIT" in reasons:
            if v["credit"] > 0:
                self.flag(m, "cutoff", "supply off for NO_CREDIT with credit %d" % v["credit"])
            if friendly(unix, FRIENDLY) and friendly(unix - GRACE_S, FRIENDLY):
                self.flag(m, "cutoff", "supply off for NO_CREDIT in a friendly period")
            if not ping.get("time_valid"):
                self.flag(m, "cutoff", "supply off for NO_CREDIT on an unknown time")
        if "REMOTE" in reasons and not self._remote_open(m, w):
            self.flag(m, "cutoff", "supply off for REMOTE with no remote disconnect in force")

    def remote_opened(self, m, msg_id):
        self.w[m.id].remote[msg_id] = None

    def remote_closing(self, m, close_id):
        w = self.w[m.id]
        for k, v in w.remote.items():
            if v is None:
                w.remote[k] = close_id

    def _remote_open(self, m, w):
        """A relay_open was sent and its relay_close has not been answered for GRACE_S yet."""
        st = self.run.store
        now = self.run.unix_now()
        for op, cl in w.remote.items():
            if cl is None:
                return True
            row = st.q1("SELECT state, done_at FROM messages WHERE msg_id=?", (cl,))
            if row is None or row["state"] != "done" or now - (row["done_at"] or now) < GRACE_S:
                return True
        return False

    def _check_reports(self, m, w):
        """Every fault with a report kind reached the head-end as exactly one event of that kind (one more
        per boot inside the fault's window: a new boot finds the fault again). Each event is put to the
        latest fault of its kind that began before it (by the meter's own timestamp)."""
        by_kind = {}
        for e in self.run.store.events(m.id, limit=1000000):
            if e["source"] == "meter":
                ts = (e["data"] or {}).get("ts")
                if ts is not None:
                    by_kind.setdefault(e["kind"], []).append(ts)
        for report in sorted({r[3] for r in w.reports}):
            # Faults of one kind that follow each other within a metering period (with no wake between,
            # the meter sees one episode: two sags 7 s apart are one power failure) are one fault here.
            mine = []
            for r in sorted((r for r in w.reports if r[3] == report), key=lambda r: r[0]):
                if mine and r[0] <= mine[-1][4] + PERIOD_S + self.run.quiet_step_s:
                    p = mine[-1]
                    mine[-1] = (p[0], max(p[1], r[1]), p[2] + "+" + r[2], report, max(p[4], r[4]))
                else:
                    mine.append(r)
            counts = [0] * len(mine)
            for ts in by_kind.get(report, []):
                k = None
                for i, r in enumerate(mine):
                    if int(r[0]) - 1 <= ts <= r[1]:        # ts: the meter's whole seconds
                        k = i
                if k is not None:
                    counts[k] += 1
            for r, n in zip(mine, counts):
                self.report_checks += 1
                boots = sum(1 for b in w.boot_times if r[0] <= b <= r[1])
                at = round(r[0] - (self.run.unix_now() - self.run.v) - self.run.t0, 1)     # the fault's step
                if n == 0:
                    self.flag(m, "reported", "%s fault at step %s never reached the head-end as %s" % (r[2], at, report))
                elif n > 1 + boots:
                    self.flag(m, "reported", "%s fault at step %s reached the head-end as %d %s events (%d boots)"
                              % (r[2], at, n, report, boots))

    # -- every simulated hour ----------------------------------------------------------------------
    def hourly(self):
        for m in self.run.fleet:
            if m.dead or not m.sim.world.grid_on:
                continue              # a meter without supply answers nobody: asked at the next hour
            w = self.w[m.id]
            try:
                v = m.sim.request("credit")
                counts = m.sim.request("events", since=1 << 30).get("counts") or {}
            except SimulationError as e:
                if m.sim.world.grid_on:           # (an outage that began while asking is no fault of the meter)
                    self.flag(m, "stuck", "the meter did not answer: %s" % e)
                continue
            if v.get("check") is not None:
                self.flag(m, "conservation", "meter check: %s" % v["check"])
            for p in ledger_problems(v):
                self.flag(m, "conservation", "meter view: " + p)
            if v["topups"] > self._vended(m)["vended_minor"]:
                self.flag(m, "token_twice", "top-ups %d exceed everything vended (%d)"
                          % (v["topups"], self._vended(m)["vended_minor"]))
            for k, n in counts.items():
                if self._bad(k) and n > w.bad_counts.get(k, 0):
                    self.flag(m, "store", "event %s (x%d)" % (k, n - w.bad_counts.get(k, 0)))
                    w.bad_counts[k] = n

    # -- at the end --------------------------------------------------------------------------------
    def final(self):
        from host_tools.chaos.run import NEW, OLD
        from host_tools.headend import ota as heota
        run = self.run
        st = run.store
        per_meter = []
        for m in run.fleet:
            w = self.w[m.id]
            if m.dead:
                per_meter.append({"meter": m.id, "dead": m.dead})
                continue
            self._check_reports(m, w)
            v = m.sim.request("credit")
            tot = m.sim.request("totals", fresh=True)
            status = m.sim.request("status")
            books = self._vended(m)
            if v.get("check") is not None:
                self.flag(m, "conservation", "meter check at the end: %s" % v["check"])
            for p in ledger_problems(v):
                self.flag(m, "conservation", "meter view at the end: " + p)
            if v["topups"] != books["vended_minor"]:
                self.flag(m, "token_lost" if v["topups"] < books["vended_minor"] else "token_twice",
                          "the meter's top-ups %d != everything vended for it %d (head-end accepted %d)"
                          % (v["topups"], books["vended_minor"], books["accepted_minor"]))
            if books["accepted_minor"] != books["vended_minor"]:
                self.flag(m, "books", "the head-end's accepted %d != vended %d (pending %d, refused %d)"
                          % (books["accepted_minor"], books["vended_minor"], books["pending"], books["refused"]))
            # every TID credited once: the meter's topup events as the head-end received them
            tids = {}
            for e in st.events(m.id, limit=1000000):
                if e["source"] == "meter" and e["kind"] == "topup":
                    tid = ((e["data"] or {}).get("data") or {}).get("tid")
                    if tid is not None:
                        tids[tid] = tids.get(tid, 0) + 1
            vend_tids = [r["tid"] for r in st.q("SELECT tid FROM vends WHERE meter_id=?", (m.id,))]
            twice = sorted(t for t, n in tids.items() if n > 1)
            missing = sorted(t for t in vend_tids if t not in tids)
            if twice:
                self.flag(m, "reported", "top-up events for TIDs %s reached the head-end more than once" % twice[:5])
            if missing:
                self.flag(m, "reported", "no top-up event reached the head-end for TIDs %s" % missing[:5])
            # energy against the truth
            imp = tot["import_wh"] + tot["import_rem"] / w.den - w.import0
            truth = m.sim.world.true_import_wh - w.truth0
            if w.blind_since is not None:
                w.blind_wh += m.sim.world.true_import_wh - w.blind_truth
            bound = w.blind_wh + w.pre_wh + sum(x for x in w.unbilled if x > 0) + TRUTH_SLACK_WH
            if imp > truth + TRUTH_SLACK_WH or truth - imp > bound:
                self.flag(m, "energy", "registered %.2f Wh, truth %.2f Wh (bound %.2f Wh)" % (imp, truth, bound))
            # the firmware against the campaign
            fw = (status.get("firmware") or {}).get("version")
            tstate = None
            if run.cid is not None:
                t = st.q1("SELECT state FROM ota_targets WHERE campaign_id=? AND meter_id=?", (run.cid, m.id))
                tstate = t["state"] if t else None
                camp = st.q1("SELECT state, note FROM ota_campaigns WHERE id=?", (run.cid,))
                if tstate == "pending" and camp["state"] in ("halted", "cancelled"):
                    tstate = "pending (campaign %s: %s)" % (camp["state"], camp["note"])
                halted = tstate is not None and tstate.startswith("pending (")
                want = NEW if tstate == "valid" else OLD if (halted or tstate in ("rolled_back", "refused", "failed",
                                                                                  "cancelled", None)) else None
                if tstate not in heota.FINAL and not halted:
                    self.flag(m, "firmware", "campaign target still %s at the end" % tstate)
                elif want is not None and fw != want:
                    self.flag(m, "firmware", "runs %s, campaign says %s" % (fw, tstate))
            per_meter.append({"meter": m.id, "credit": v["credit"], "debt": v["debt"], "topups": v["topups"],
                              "debited": v["debited"], "vended_minor": books["vended_minor"],
                              "import_wh": round(imp, 2), "truth_wh": round(truth, 2),
                              "energy_bound_wh": round(bound, 2), "boots": w.boots, "firmware": fw,
                              "campaign_state": tstate,
                              "max_unbilled_wh": round(max(w.unbilled), 3) if w.unbilled else 0.0,
                              "recovery_max_s": round(max(w.recoveries), 1) if w.recoveries else None})
        self._payments()
        recs = [r for w in self.w.values() for r in w.recoveries]
        unb = [u for w in self.w.values() for u in w.unbilled]
        return {"violations": self.violations, "recovery_max_s": round(max(recs), 1) if recs else None,
                "recoveries": len(recs), "max_unbilled_wh_per_cut": round(max(unb), 3) if unb else 0.0,
                "cuts_checked": self.boot_checks, "supply_off_checks": self.open_checks,
                "report_checks": self.report_checks, "payments": self.payments, "per_meter": per_meter,
                "bounds": {"unbilled_wh": UNBILLED_WH, "recovery_s": RECOVERY_BOUND_S, "grace_s": GRACE_S}}

    def _payments(self):
        """Every purchase the provider took money for is credited exactly once (or refunded), and nothing
        is credited that was not paid."""
        run = self.run
        taken = run.provider.taken()
        refunded = run.provider.refunded()
        rows = run.store.q("SELECT * FROM payments")
        by_ref = {run.agency.payments.reference(p): p for p in rows}
        paid = credited = 0
        for ref, amount in taken.items():
            p = by_ref.get(ref)
            paid += 1
            if p is None:
                self.flag(None, "payments", "the provider took %d for %s, which the agency does not know" % (amount, ref))
                continue
            if p["state"] != "credited":
                self.flag(None, "payments", "%s paid %d but %s at the end (%s)" % (ref, amount, p["state"], p["note"]))
            else:
                credited += 1
        for ref, p in by_ref.items():
            if p["state"] in ("credited", "vended") and ref not in taken:
                self.flag(None, "payments", "%s is %s but the provider holds no money for it (%s)"
                          % (ref, p["state"], "refunded" if ref in refunded else "never paid"))
            if p["arrears_minor"] and p["arrears_minor"] >= p["amount_minor"]:
                self.flag(None, "cutoff", "%s: the whole purchase went to arrears" % ref)
        self.payments = {"paid": paid, "credited": credited, "refunded": len(refunded)}
