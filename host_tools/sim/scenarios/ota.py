"""`meterkit sim scenario ota`: N simulated ESP32 meters (the real firmware, its frozen app carried by the
image in the slot their bootloader selects) on one head-end and an in-process broker in virtual time,
updated by a campaign over the flaky simulated cellular link, with random power cuts during the download,
the write, the switch and the first boot (docs/ota.md), each placed by the meter's own state (its `ota`
record on its flash, its chip's otadata) and reported with the phase observed.

The report: `meters`, `updated` (running the new version, marked valid), `rolled_back` (reported by the
meter), `refused`, `bricked` (no slot boots), `credit_violations` (a ledger that fails its conservation
check, or credit created or lost across the update: credit + debited must stay what it was, as no top-up
is sent), `max_download_sim_s` (first chunk to last chunk, simulated seconds), `seed`."""
import json
import os
import random
import tempfile
import time

from host_tools.errors import SimulationError, UsageError
from host_tools.headend import vending
from host_tools.headend import ota as heota
from host_tools.headend.demo import make_fleet
from host_tools.headend.service import HeadEnd
from host_tools.headend.store import Store
from host_tools.ota import keys, package, simimage
from host_tools.sim.esp32 import otachip

OLD, NEW = "0.1.0", "0.2.0"
STEP_S = 0.5
HEAP = "384k"
SERVICE_KEY = "a5c3" * 16
# A build that lost its cellular side: it meters and answers its service port, but never brings the link
# up, so it cannot prove itself within ota_trial_s and the bootloader takes the old image back.
BROKEN_OVERLAY = {"comms/cellular.py": '"""A broken build: the cellular side is missing."""\n\n\n'
                                       'def start(*args):\n    return None\n'}
SETTINGS = {"meter_period_s": 5, "ui": 0, "ota_trial_s": 180, "prepaid": {"ledger": {"opening_credit": 100000}}}


class _Meter:
    def __init__(self, sim, row):
        self.sim, self.row, self.id = sim, row, row["meter_id"]
        self.bricked = None
        self.cuts = 0
        self.trial_cuts = 0            # cuts in its first boot: each a rollback the head-end offers again
        self.last_cut_s = None
        self.dl_cut_bytes = 0          # what its slot held at its last cut in the download
        self.first_chunk = None
        self.last_chunk = None
        self.base = None
        self.timing = None


class _LoopTiming:
    """One meter's superloop seen from the simulator: each stretch the firmware ran between two sleeps
    (from the reply to its ADVANCE to its next ADVANCE: wall ms on the unix port, with the virtual ms it
    woke at), and the virtual ms of each access to the metering chip (its polls). Virtual time stands
    still while the firmware runs, so a busy stretch is what a metering poll falling due, or a key
    pressed, would wait for on the chip; the wall figure includes the simulator serving the frames of
    that stretch, so it is an upper bound for the unix port."""

    def __init__(self, sim):
        from host_tools.sim.esp32 import link as L
        self.busy = []                 # (virtual ms woken, wall ms busy)
        self.chip = []                 # virtual ms of metering-chip frames (one entry per instant)
        self._woke = None
        handle, advance, boot = sim._handle, sim._advance, sim.boot
        chip_frames = (L.SPI, L.METER_UART)

        def _handle(ftype, p, stop_at_ms):
            if ftype == L.ADVANCE:
                if self._woke is not None:
                    self.busy.append((self._woke[0], (time.perf_counter() - self._woke[1]) * 1000.0))
                self._woke = None
            elif ftype in chip_frames and (not self.chip or self.chip[-1] != sim.world.now_ms):
                self.chip.append(sim.world.now_ms)
            return handle(ftype, p, stop_at_ms)

        def _advance(stop_at_ms):
            ok = advance(stop_at_ms)
            if ok:
                self._woke = (sim.world.now_ms, time.perf_counter())
            return ok

        def _boot():
            self._woke = None          # a boot is not a stretch of the loop
            return boot()
        sim._handle, sim._advance, sim.boot = _handle, _advance, _boot

    def window(self, t0, t1):
        """Within virtual [t0, t1): the worst busy stretch (and the median), and the widest gap between
        two metering polls (virtual ms)."""
        b = sorted(ms for t, ms in self.busy if t0 <= t < t1)
        polls = [t for t in self.chip if t0 <= t < t1]
        gaps = [b_ - a for a, b_ in zip(polls, polls[1:])]
        return {"sim_s": round((t1 - t0) / 1000.0, 1), "wakes": len(b),
                "worst_busy_ms": round(b[-1], 2) if b else None,
                "median_busy_ms": round(b[len(b) // 2], 3) if b else None,
                "polls": len(polls), "worst_poll_gap_sim_ms": max(gaps) if gaps else None}


def run(meters=3, drop=0.0, cuts=0, seed=1, bad_signature=False, broken_image=False, stages=(100,),
        threshold_pct=90.0, timeout_s=7200, workdir=None, log=None, link=None, timing=False):
    """`link`: the meters' cellular bearer (host_tools/sim/modem/linkprofile.py): "lte" (None, the
    default: the link adds no time) or "2g" (GPRS class: 40/20 kbit/s, 650 ms round trip). `timing`:
    the report's `loop` says how long the first meter's superloop stayed busy and how far apart its
    metering polls came, during its download and after the campaign (_LoopTiming)."""
    if not 1 <= meters <= 200:
        raise UsageError("--meters must be 1..200", hint="each meter is a MicroPython process")
    if not 0.0 <= drop < 1.0:
        raise UsageError("--drop must be a probability 0..1 (below 1)", hint="e.g. --drop 0.3")
    if cuts < 0:
        raise UsageError("--cuts must be 0 or more")
    from host_tools.sim.modem import linkprofile
    try:
        bearer = linkprofile.get(link)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from host_tools.sim.esp32.runner import SimMeter
    from host_tools.sim.net.headend_client import SimHeadEndClient
    from host_tools.sim.scenarios.chain import SteppedBroker
    say = log or (lambda text: None)
    rng = random.Random(seed)
    wall0 = time.monotonic()
    tmp = tempfile.TemporaryDirectory(prefix="ota-scenario-") if workdir is None else None
    wd = tmp.name if tmp else str(workdir)
    fleet = []
    store = he = None
    try:
        keys.generate(os.path.join(wd, "maker.pem"), force=True)
        maker = keys.load_private(os.path.join(wd, "maker.pem"))
        signer = maker
        if bad_signature:
            keys.generate(os.path.join(wd, "stranger.pem"), force=True)
            signer = keys.load_private(os.path.join(wd, "stranger.pem"))
        say("building the images %s and %s%s" % (OLD, NEW, " (broken)" if broken_image else ""))
        old_img = simimage.build(OLD)
        new_img = simimage.build(NEW, overlay=BROKEN_OVERLAY if broken_image else None)
        pkg_path = os.path.join(wd, "update.ota")
        with open(pkg_path, "wb") as f:
            f.write(package.build(new_img, "sim", NEW, signer, min_version=OLD))
        trust = json.dumps(keys.trust_entry_file([maker.public_key()])).encode()

        virtual = {"s": 0.0}
        epoch = 1767225600
        store = Store(os.path.join(wd, "headend.db"), clock=lambda: epoch + virtual["s"])
        csv_path, ks_path, rows = make_fleet(os.path.join(wd, "fleet"), meters, rng=random.Random(seed * 104729 + 3))
        store.import_csv(csv_path)
        keystore = vending.load_keystore(ks_path)
        broker = SteppedBroker(lambda: virtual["s"])
        he = HeadEnd(store, broker.url, retry_s=30.0, retry_max_s=600.0, clock=lambda: epoch + virtual["s"],
                     client=SimHeadEndClient(broker.sim, clock=lambda: virtual["s"]))
        he.start()
        chunk_drop = random.Random(seed * 31 + 1)
        ota_client = broker.sim.client("headend-ota", clean_session=True,
                                       on_message=lambda t, p, q, d, r: served(t, p))
        stats = {"chunks_lost": 0}
        by_id = {}

        def publish(topic, payload):
            if drop and chunk_drop.random() < drop:
                stats["chunks_lost"] += 1           # lost on the cellular link
                return
            ota_client.publish(topic, payload, 0)

        ota = heota.OtaService(store, publish, rng=random.Random(seed * 7 + 5))

        def served(topic, payload):
            mid = topic.split("/")[1]
            if ota.on_request(mid, bytes(payload)):
                m = by_id.get(mid)
                if m is not None:
                    m.first_chunk = m.first_chunk if m.first_chunk is not None else virtual["s"]
                    m.last_chunk = virtual["s"]
        ota_client.connect()
        ota_client.subscribe(heota.REQUEST_FILTER, 0)

        for i, row in enumerate(rows):
            d = os.path.join(wd, "meter-%d" % i)
            os.makedirs(d, exist_ok=True)
            chip = os.path.join(d, "chip.img")
            otachip.create(chip, old_img)
            sim = SimMeter(seed=seed * 100 + i, afe="ideal", profile="constant", heap=HEAP, broker=broker.sim,
                           settings=SETTINGS, workdir=os.path.join(d, "work"), epoch=epoch, esp32=chip,
                           files={"ota_trust.json": trust}, link=bearer)
            m = _Meter(sim, row)
            if timing and not fleet:
                m.timing = _LoopTiming(sim)
            fleet.append(m)
            by_id[m.id] = m
            sim.run_for(3)
            r = sim.request("provision", pan=row["pan"], serial=int(row["serial"][2:]), meter_id=row["meter_id"],
                            sgc=row["sgc"], ti=int(row["ti"]), krn=int(row["krn"]),
                            sts_key=vending.decoder_key(keystore, store.meter(row["meter_id"])).hex(),
                            message_key=row["message_key_hex"], service_key=SERVICE_KEY, base_date="14",
                            broker={"host": "headend.example", "port": 1883, "username": row["meter_id"],
                                    "password": row["broker_password"]})
            if not r.get("ok"):
                raise SimulationError("meter %d refused provisioning: %s" % (i, r.get("error")))
            sim.power_cut()

        def step():
            virtual["s"] += STEP_S
            for m in fleet:
                if m.bricked:
                    continue
                try:
                    m.sim.run_until(int(virtual["s"] * 1000))
                except SimulationError as e:
                    m.bricked = str(e)
                    say("meter %s bricked: %s" % (m.id, e))
            broker.sim.pump()
            he.client.service()
            he.tick()
            ota.tick()
            broker.sim.pump()

        def online():
            return sum(r["status"] == "online" for r in store.meters()) == len(fleet)

        while not online():
            step()
            if virtual["s"] > 900:
                raise SimulationError("the meters did not all come online within 900 simulated seconds")
        for m in fleet:
            m.base = _credit(m.sim)
        say("all %d meters online at %.0f s; campaign starts" % (len(fleet), virtual["s"]))
        heota.upload(store, pkg_path, [signer.public_key()])     # the head-end takes what it is given
        cid = heota.start_campaign(store, NEW, "all", stages=stages, threshold_pct=threshold_pct)
        t_campaign = virtual["s"]

        phases = [PHASES[i % len(PHASES)] for i in range(cuts)]
        rng.shuffle(phases)
        cuts_done = []
        own_cache = {}
        next_fault = virtual["s"] + rng.expovariate(drop / 60.0) if drop else None
        t_end = virtual["s"] + timeout_s
        image = package.parse(open(pkg_path, "rb").read()).image
        # a download cut lands once a meter's slot holds this share of what it had left to write when
        # its download started (or its last download cut): a random moment within the download (its
        # committed record moves 16 KB at a time)
        dl_marks = [rng.random() for _ in range(phases.count("download"))]
        while virtual["s"] < t_end:
            step()
            now = virtual["s"]
            # a cut lands on a meter that is in a phase still wanted, by the meter's own state (a random
            # moment within it; verify/switch lasts a step or two, so every step is a moment to find it);
            # the phases wanted are tried in their shuffled order, so one not reached yet holds none back
            if phases:
                roll = rng.random()
                targets = None
                for ph in sorted(set(phases), key=phases.index):
                    if ph == "first_boot" and roll >= 0.25:
                        continue
                    if targets is None:
                        targets = {t["meter"]: t for t in heota.status(store, cid)["meters"]}
                    got = _pick(ph, fleet, targets, image, rng, own_cache, dl_marks[0] if dl_marks else None, now)
                    if got is not None:
                        m, own = got
                        m.cuts += 1
                        m.last_cut_s = now
                        m.trial_cuts += ph == "first_boot"
                        m.sim.power_cut()
                        phases.remove(ph)
                        if ph == "download":
                            dl_marks.pop(0)
                            m.dl_cut_bytes = own["slot_bytes"]
                        cuts_done.append({"at_s": round(now, 1), "meter": m.id, "phase": ph,
                                          "observed": _phase(own), "state": own})
                        break
            if next_fault is not None and now >= next_fault:
                m = rng.choice(fleet)
                if m.sim.modem is not None and not m.bricked:
                    m.sim.modem.drop_link()
                next_fault = now + rng.expovariate(drop / 60.0)
            if _settled(store, cid, fleet) and (not phases or not any(_could_still(store, cid, ph) for ph in phases)):
                break
        t_settled = virtual["s"]
        # the last results and events reach the head-end
        for _ in range(int(60 / STEP_S)):
            step()
        ota.tick()
        report = _report(store, cid, fleet, seed, cuts_done, stats, ota, wall0, virtual["s"])
        report["campaign_sim_s"] = round(t_settled - t_campaign, 1)
        report["link"] = bearer.as_dict()
        m0 = fleet[0]
        if m0.timing is not None and m0.first_chunk is not None:
            dl = (int(m0.first_chunk * 1000), int(m0.last_chunk * 1000))
            # after: the last 50 simulated seconds, the campaign over (the new image, proved, metering)
            after = (int((virtual["s"] - 50) * 1000), int(virtual["s"] * 1000))
            report["loop"] = {"download": m0.timing.window(*dl), "after": m0.timing.window(*after),
                              "meter_period_s": SETTINGS["meter_period_s"]}
        if os.environ.get("OTA_SCENARIO_TRACE"):
            report["modem_logs"] = {m.id: m.sim.modem.log[-60:] for m in fleet if m.sim.modem is not None}
            report["broker_log"] = list(getattr(broker.sim, "log", []))[-80:]
            report["meter_events"] = {m.id: m.sim.request("events")["events"][-40:] for m in fleet if not m.bricked}
        return report
    finally:
        for m in fleet:
            m.sim.close()
        if he is not None:
            try:
                he.stop()
            except Exception:  # noqa: BLE001 - closing after a failure
                pass
        if store is not None:
            store.close()
        if tmp is not None:
            tmp.cleanup()


PHASES = ("download", "verify_switch", "first_boot")


# The head-end's view of a meter that may be downloading or verifying (its view lags: a hint only; an
# image offered again after a rollback by reset is verified in the slot at once: `offered`)
_MAYBE = ("offered", "downloading")
_READS = 8          # the most meters whose record is read at one step looking for a phase
_COME_BACK_S = 60   # a meter cut this recently is left to boot and go on first


def _own_state(m, cache=None):
    """The update as the meter itself holds it, for placing and reporting cuts: its `ota` record as its
    next boot would load it from its flash (`st`: idle, dl, ready, switched; `off`: bytes committed;
    `slot`: the slot it installs into), the newest `otadata` entry of its chip (what its bootloader goes
    by) and the slot it runs. The firmware sleeps between the scenario's steps, so this is its state at
    the instant a cut would land. `cache` ({meter id: ((writes, erases), record)}) spares reading a flash
    nothing was written to since."""
    from host_tools.sim.scenarios.powercut import committed_record
    fl = m.sim.flash
    key = (fl.writes, fl.blocks_erased)
    hit = cache.get(m.id) if cache is not None else None
    if hit is not None and hit[0] == key:
        rec = hit[1]
    else:
        try:
            rec = committed_record(fl, "ota")
        except SimulationError:
            rec = None                 # never written: no update yet
        if cache is not None:
            cache[m.id] = (key, rec)
    rec = rec or {}
    return {"record": rec.get("st", "idle"), "bytes": rec.get("off"), "target_slot": rec.get("slot"),
            "otadata": _own_state_otadata(m), "running": m.sim.running_slot}


def _phase(own):
    """The phase a meter is in by its own state: download (its record says chunks are being fetched);
    verify_switch (the image whole in the slot and verified, the switch waiting for a quiet moment, or
    set_boot done and the board not yet reset); first_boot (the new image runs and has not marked itself
    valid: its otadata entry pending verification); otherwise idle, or rollback (the old image back,
    about to report it). The read-back and checks run inside the job that wrote the last chunk, so no
    cut between two steps lands within them (tests/test_ota_meter.py cuts within the switch)."""
    if own["otadata"] == "pending_verify":
        return "first_boot"
    if own["otadata"] == "new":
        return "verify_switch"
    st = own["record"]
    if st == "dl":
        return "download"
    if st == "ready" and own["running"] != own["target_slot"]:
        return "verify_switch"
    if st == "switched" and own["running"] != own["target_slot"]:
        return "rollback"
    return "idle"


def _pick(phase, fleet, targets, image, rng, cache, mark=None, now=0.0):
    """(meter, its own state) for a cut in `phase`, or None. A meter cut fewest times so far first (spread
    over the fleet), none cut in the last _COME_BACK_S (its state is still the one the cut left), and none
    cut in as many first boots as the head-end offers an image again after a rollback by reset, less one
    (three cuts in three trials of one meter is a rollback it stops re-offering, as for a crashing
    image). A download cut waits for a meter whose slot holds the share `mark` of what it had to write
    since the start, or its last cut in its download."""
    size = len(image)
    live = [m for m in fleet if not m.bricked and (m.last_cut_s is None or now - m.last_cut_s >= _COME_BACK_S)]
    if phase == "first_boot":
        live = [m for m in live if m.trial_cuts < heota.ATTEMPTS - 1]
        cands = [m for m in live if _own_state_otadata(m) == "pending_verify"]
        if not cands:
            return None
        least = min(m.cuts for m in cands)
        m = rng.choice([x for x in cands if x.cuts == least])
        return m, _own_state(m, cache)
    # the head-end's view, which lags, only narrows the meters whose record is read: a download cut
    # needs one the head-end served what the cut waits for (it cannot have written more than it was
    # sent); a verify/switch cut one served the whole image, or offered it again after a rollback
    # caused by a cut (the image still in its slot: verified at once, no download)
    hint = []
    for m in live:
        t = targets.get(m.id) or {}
        if t.get("state") not in _MAYBE:
            continue
        if phase == "download" and (t.get("bytes") or 0) < _need(m, mark, size):
            continue
        if phase == "verify_switch" and t.get("bytes") != size and t.get("state") != "offered":
            continue
        hint.append(m)
    for m in sorted(hint, key=lambda m: (m.cuts, rng.random()))[:_READS]:
        if phase == "download":
            slot_bytes = _slot_bytes(m, "ota_1" if m.sim.running_slot == "ota_0" else "ota_0", image)
            if slot_bytes < _need(m, mark, size):
                continue
        own = _own_state(m, cache)
        if _phase(own) != phase:
            continue
        if phase == "download":
            own["slot_bytes"] = slot_bytes
        return m, own
    return None


def _need(m, mark, size):
    """The bytes a meter's slot must hold for a download cut: past where its last cut left it, by the
    share `mark` of the rest."""
    return max(m.dl_cut_bytes + 1, int(m.dl_cut_bytes + (mark or 0.0) * (size - m.dl_cut_bytes)))


def _slot_bytes(m, label, image):
    """How much of the image the meter's target slot holds, from its start, in the chip's flash (chunks
    are written in order, each 4 KB block erased before its first)."""
    got = otachip.read_slot(m.sim.esp32, label, len(image))
    for i in range(0, len(image), 1024):
        if got[i:i + 1024] != image[i:i + 1024]:
            return i
    return len(image)


def _own_state_otadata(m):
    """The state of the newest `otadata` entry of the meter's chip (what its bootloader goes by), or None."""
    ents = [e for e in otachip.read_state(m.sim.esp32)["otadata"] if e is not None]
    return max(ents)[1] if ents else None


def _could_still(store, cid, phase):
    """A phase some meter may still reach (no cut waits for what cannot come)."""
    rows = heota.status(store, cid)["meters"]
    return any(r["state"] in ("pending", "offered", "downloading", "installed") for r in rows) and phase != "download"


def _settled(store, cid, fleet):
    rows = heota.status(store, cid)["meters"]
    bricked = {m.id for m in fleet if m.bricked}
    return all(r["state"] in heota.FINAL or r["meter"] in bricked for r in rows)


def _credit(sim):
    v = sim.request("credit")
    return {"credit": v["credit"], "debited": v["debited"], "topups": v["topups"], "check": v.get("check")}


def _report(store, cid, fleet, seed, cuts_done, stats, ota, wall0, sim_s):
    st = heota.status(store, cid)
    states = {t["meter"]: t for t in st["meters"]}
    updated = rolled_back = refused = bricked = violations = stalled = 0
    versions = {}
    problems = []
    max_dl = 0.0
    for m in fleet:
        if m.bricked:
            bricked += 1
            continue
        s = m.sim.request("status")
        fw = s.get("firmware") or {}
        versions[m.id] = fw
        t = states.get(m.id, {})
        if fw.get("version") == NEW and t.get("state") == "valid":
            updated += 1
        if t.get("state") == "rolled_back" and fw.get("version") == OLD:
            rolled_back += 1
        if t.get("state") == "refused" and fw.get("version") == OLD:
            refused += 1
        c = _credit(m.sim)
        if c["check"] is not None or c["topups"] != m.base["topups"] or \
                c["credit"] + c["debited"] != m.base["credit"] + m.base["debited"] or c["debited"] < m.base["debited"]:
            violations += 1
            problems.append({"meter": m.id, "before": m.base, "after": c})
        if c["debited"] <= m.base["debited"]:
            stalled += 1                # the constant load must have been metered and debited throughout
        if m.first_chunk is not None:
            max_dl = max(max_dl, m.last_chunk - m.first_chunk)
    return {"meters": len(fleet), "updated": updated, "rolled_back": rolled_back, "refused": refused,
            "bricked": bricked, "credit_violations": violations, "max_download_sim_s": round(max_dl, 1),
            "metering_stalled": stalled,
            "seed": seed, "cuts": cuts_done, "chunks_served": ota.stats["chunks"], "chunks_lost": stats["chunks_lost"],
            "image_bytes": ota._blob(st["sha256"]).header["size"] if ota._blob(st["sha256"]) else None,
            "campaign": {k: st[k] for k in ("state", "counts", "note")},
            "targets": [{k: t[k] for k in ("meter", "state", "code", "reason")} for t in st["meters"]],
            "versions": versions, "credit_problems": problems, "sim_s": round(sim_s, 1),
            "wall_s": round(time.monotonic() - wall0, 1)}


def register(simsub_scenario):
    p = simsub_scenario.add_parser("ota", help="a firmware update campaign over N simulated ESP32 meters, with "
                                               "link drops and power cuts")
    p.add_argument("--meters", type=int, default=3)
    p.add_argument("--drop", type=float, default=0.0, help="share of chunks lost; also about P link drops a simulated minute, on random meters")
    p.add_argument("--cuts", type=int, default=0, help="random power cuts during download, write, switch, first boot")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bad-signature", action="store_true", help="sign the package with a key the meters do not trust")
    p.add_argument("--broken-image", action="store_true", help="an image that fails its health check")
    p.add_argument("--stages", default="100", help="cumulative %% per stage, e.g. 1,10,100 (default 100)")
    p.add_argument("--link", default="lte", choices=("lte", "2g"),
                   help="the meters' cellular bearer: lte (default: adds no time) or 2g (GPRS class: 40/20 kbit/s, "
                        "650 ms round trip)")
    p.add_argument("--timeout", type=float, default=7200, help="simulated seconds before giving up")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ota)


def cmd_ota(args):
    import sys
    from host_tools.cli import emit
    try:
        stages = tuple(float(x) for x in args.stages.split(","))
    except ValueError:
        raise UsageError(f"--stages {args.stages!r} is not a list of numbers", hint="e.g. 1,10,100") from None
    say = (lambda text: sys.stderr.write(text + "\n")) if not args.json else None
    res = run(meters=args.meters, drop=args.drop, cuts=args.cuts, seed=args.seed, bad_signature=args.bad_signature,
              broken_image=args.broken_image, stages=stages, timeout_s=args.timeout, log=say, link=args.link)
    emit(res, args.json)
    return 0 if res["bricked"] == 0 and res["credit_violations"] == 0 else 1
