"""The seeded fault schedule: which fault strikes which meter when, drawn from every kind in the registry.

A kind is a name with a weight, a scope (one meter, or the whole fleet: the broker), and a `strike`
function that applies it to the simulated world and says how it ends. New kinds plug in by name:

    faults.register(FaultKind("bit_flips", strike=my_strike, weight=2, available=lambda: ...))

and the schedule draws them like the rest (`kinds=` limits a run to some). A kind whose machinery is
missing from the simulator (`available()` false) is left out of the draw, so a schedule made where the
flash model has torn erases names them and one made where it has not does not.

`strike(run, meter, rng)` returns a `Strike`: a note for people, `undo_s` (seconds until the fault ends
by itself, with `undo(run, meter)` called then), `metering` (the fault stops metering: the loop measures
how long until it resumes), and `report` (the meter event kind this fault must be reported by, once)."""
import random


class Strike:
    def __init__(self, note, undo_s=None, metering=False, report=None, undo=None):
        self.note, self.undo_s, self.metering, self.report, self.undo = note, undo_s, metering, report, undo


class FaultKind:
    def __init__(self, name, strike, weight=1.0, scope="meter", available=None, doc=""):
        self.name, self.strike, self.weight, self.scope, self.doc = name, strike, weight, scope, doc
        self._available = available

    def available(self):
        return self._available is None or bool(self._available())


REGISTRY = {}


def register(kind):
    """Add (or replace) a fault kind; the schedule draws it from then on."""
    REGISTRY[kind.name] = kind
    return kind


# -- the kinds the simulator has today ---------------------------------------------------------------
def _chip(mode, report):
    def strike(run, m, rng):
        if m.chip_faulty:
            return Strike("(the metering chip is already faulty)")
        m.chip_faulty = True
        m.sim.world.chip_fault(mode)
        dur = rng.randint(60, 900)

        def undo(run, m):
            m.chip_faulty = False
            m.sim.world.chip_fault(None)
        return Strike("metering chip %s for %d s" % (mode, dur), undo_s=dur, metering=True, report=report,
                      undo=undo)
    return strike


def _chip_reset(run, m, rng):
    m.sim.world.chip_fault("reset")
    return Strike("metering chip power-on reset", metering=True)


def _modem(what):
    def strike(run, m, rng):
        mo = m.sim.modem
        if what == "hang":
            mo.hang()
            # the meter logs modem_reset; it is not one of the events uplinked (comms/cellular.UPLINK_EVENTS)
            return Strike("modem hung (the meter must power-cycle it)")
        if what == "reboot":
            mo.reboot()
            return Strike("modem rebooted by itself")
        if what == "drop":
            mo.drop_link()
            return Strike("TCP link dropped")
        dur = rng.randint(30, 1800)
        mo.set_coverage(False)
        return Strike("coverage lost for %d s" % dur, undo_s=dur, undo=lambda run, m: m.sim.modem.set_coverage(True))
    return strike


def _broker_restart(run, m, rng):
    run.broker.restart()
    return Strike("broker restarted")


def _sms_loss(run, m, rng):
    m.sms_lost += 1          # the next text to this meter is lost in the network
    return Strike("the next SMS to the meter will be lost")


def _power_cut(run, m, rng):
    if not m.sim.world.grid_on:
        return Strike("(no supply already: nothing to cut)")
    m.sim.power_cut()
    return Strike("power cut at a random instant", metering=True)


def tear_hook(flash, k, rng, kinds=("write",)):
    """A flash `cut_hook` that tears the k-th next operation of `kinds` at a random byte. It speaks both the
    hook of today, fn(offset, data) for writes, and the one the flash models grow, fn(kind, offset, n)
    with kind "write" or "erase" (None: the operation completes; k: k bytes land, then the power goes)."""
    left = [k]

    def hook(*a):
        if len(a) == 3:
            kind, _off, n = a
        else:
            kind, n = "write", len(a[1])
        if kind not in kinds or n <= 0:
            return None
        left[0] -= 1
        if left[0] > 0:
            return None
        flash.cut_hook = None
        return rng.randrange(n)
    return hook


def _erase_hooks():
    """Whether the flash model offers erases to its cut hook (torn erases)."""
    import inspect
    from host_tools.sim.world.flashfile import FlashFile
    try:
        return "cut_hook" in inspect.getsource(FlashFile.erase)
    except (OSError, TypeError):
        return False


def _torn(kinds, what):
    def strike(run, m, rng):
        """Tear the k-th next flash operation (k in 1..8) at a random byte: wherever the firmware is."""
        if not m.sim.world.grid_on:
            return Strike("(no supply already: nothing to cut)")
        k = rng.randint(1, 8)
        m.sim.flash.cut_hook = tear_hook(m.sim.flash, k, rng, kinds)
        return Strike("power cut inside the %d-th next flash %s" % (k, what))     # the boot check sees the death
    return strike


def _cut_in_token(run, m, rng):
    if not m.sim.world.grid_on:
        return Strike("(no supply already: nothing to cut)")
    m.cut_next_token = True   # the next token entered is cut inside its application (see run.py)
    return Strike("power cut inside the next token's application")


def _outage(run, m, rng):
    if not m.sim.world.grid_on:
        return Strike("(no supply already: nothing to cut)")
    dur = rng.randint(30, 7200) * 1000
    w = m.sim.world
    w.outage(w.now_ms + 1, dur)
    return Strike("grid outage for %d s (power-fail warning, hold-up, death)" % (dur // 1000), metering=True,
                  undo_s=dur / 1000.0 + 1, report="power_fail")


def _brownout(run, m, rng):
    """The supply sags below the hold-up threshold and comes back: shorter or longer than the hold-up."""
    if not m.sim.world.grid_on:
        return Strike("(no supply already: nothing to cut)")
    holdup = int(m.sim.info.get("power_fail_holdup_ms", 0))
    dur = rng.randint(20, max(40, 3 * holdup))
    w = m.sim.world
    w.outage(w.now_ms + 1, dur)
    return Strike("brown-out for %d ms (hold-up %d ms)" % (dur, holdup), metering=True, undo_s=dur / 1000.0 + 1,
                  report="power_fail")


def _cut_in_ota(run, m, rng):
    if not m.sim.world.grid_on:
        return Strike("(no supply already: nothing to cut)")
    m.cut_in_ota = True       # cut at the next loop step where this meter is downloading or switching
    return Strike("power cut inside the firmware update (download or switch)")


for _k in (
        FaultKind("chip_silent", _chip("silent", "meter_silent"), 2, doc="the metering chip stops answering"),
        FaultKind("chip_garbage", _chip("garbage", "meter_garbage"), 2, doc="the metering chip answers noise"),
        FaultKind("chip_reset", _chip_reset, 1, doc="the chip loses its registers"),
        FaultKind("modem_hang", _modem("hang"), 2),
        FaultKind("modem_reboot", _modem("reboot"), 1),
        FaultKind("link_drop", _modem("drop"), 3),
        FaultKind("coverage_loss", _modem("coverage"), 2),
        FaultKind("broker_restart", _broker_restart, 1, scope="fleet"),
        FaultKind("sms_loss", _sms_loss, 2),
        FaultKind("power_cut", _power_cut, 3),
        FaultKind("torn_write", _torn(("write",), "write"), 3),
        FaultKind("torn_erase", _torn(("erase",), "erase"), 2, available=_erase_hooks,
                  doc="a block left partly erased (drawn once the flash model hands erases to its cut hook)"),
        FaultKind("cut_in_token", _cut_in_token, 1),
        FaultKind("outage", _outage, 2),
        FaultKind("brownout", _brownout, 2),
        FaultKind("cut_in_ota", _cut_in_ota, 1),
):
    register(_k)


class FaultSchedule:
    """Faults for `meters` meters over `days` days, `per_day` faults per meter-day on average (a Poisson
    process per meter, and one for the fleet), kinds drawn by weight. Same seed, same schedule."""

    def __init__(self, seed, days, meters, per_day=6.0, kinds=None, start_s=0.0):
        names = [n for n in (kinds or sorted(REGISTRY)) if n in REGISTRY and REGISTRY[n].available()]
        unknown = [n for n in (kinds or ()) if n not in REGISTRY]
        if unknown:
            from host_tools.errors import UsageError
            raise UsageError("unknown fault kind(s) %s" % ", ".join(unknown), hint="kinds: " + ", ".join(sorted(REGISTRY)))
        self.kinds = names
        rng = random.Random(seed * 2654435761 + 17)
        end = start_s + days * 86400.0
        per_meter = [n for n in names if REGISTRY[n].scope == "meter"]
        fleet = [n for n in names if REGISTRY[n].scope == "fleet"]
        self.items = []       # (t_s, meter index or None, kind name, seed of its own rng)
        if per_day > 0:
            for i in range(meters):
                self._draw(rng, start_s, end, per_day, per_meter, i)
            self._draw(rng, start_s, end, per_day / 6.0, fleet, None)
        self.items.sort(key=lambda x: (x[0], -1 if x[1] is None else x[1], x[2]))

    def _draw(self, rng, t, end, per_day, names, meter):
        if not names:
            return
        weights = [REGISTRY[n].weight for n in names]
        while True:
            t += rng.expovariate(per_day / 86400.0)
            if t >= end:
                return
            self.items.append((round(t, 3), meter, rng.choices(names, weights)[0], rng.getrandbits(32)))

    def due(self, now_s):
        """Pop and return the items due at or before now_s."""
        out = []
        while self.items and self.items[0][0] <= now_s:
            out.append(self.items.pop(0))
        return out
