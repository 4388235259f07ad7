"""Composition and the superloop: the application object, its periodic jobs and its run. What builds
it (every subsystem from the board and the settings, the jobs, the service commands) is in
app/build.py, loaded for the build only; the app's own service commands are in app/appcmds.py."""
import gc

from micropython import const

from util import call, load, once

from fwversion import VERSION
JOB_FAIL_LIMIT = const(32)    # consecutive failures of one job before the meter resets


class App:
    def __init__(self, board, boot=None):
        """`boot`: what `startup.Startup` found (flash, store, boot count, safe mode); made here when
        the app is built without the guard (tests)."""
        once("app.build").build(self, board, boot)

    @property
    def calibrated(self):
        """The calibration in force came from the lab (stored), not the board's defaults."""
        return self.calibration.calibrated

    def run_selftest(self):
        """The factory self-test over the assembled meter (`provision.selftest`, loaded for the request)."""
        return load("provision.selftest", "run")(self)

    def _meter_job(self):
        self.meter.poll()
        job = self.sched.jobs[0]          # this job (app/build.py adds it first)
        gap = self.prepaid.poll(job.period_ms)
        if gap < job.period_ms:           # a high load: the next poll sooner (prepaid.core.poll)
            job.next = self.sched.clock.ticks_add(job.due, gap)
        store = self.store
        if store is not None and store.faults:
            # what later loads found (the prepaid record's, a token store's)
            for code, detail in store.take_faults():
                self.events.emit("store_" + code, {"detail": detail})

    def _on_input(self):
        self.prepaid.power_failing()
        self.service.poll()
        if self.ui is not None:
            self.ui.poll()
        if self.cellular is not None:
            self.cellular.poll()
        elif getattr(self.board, "modem", None) is not None:
            self.board.modem.read()       # no link owns the modem yet: drop its chatter (boot messages)

    def _job_failed(self, name, exc, fails=1):
        # Reported on the first failure and then at powers of two (the log stays readable); a job
        # that keeps failing is a meter that is not working: reset, and let the crash count decide.
        if fails & (fails - 1) == 0:
            self.events.emit("job_failed", {"job": name, "error": "%s: %s" % (type(exc).__name__, exc),
                                            "fails": fails})
        if fails >= JOB_FAIL_LIMIT:
            self.events.emit("job_escalated", {"job": name, "fails": fails})
            self.board.reset()

    def _stable(self):
        self.sched.set_period("stable", 0x3FFFFFF)     # once per boot
        try:
            self.boot.stable()
        except Exception as e:
            self.events.emit("store_write_failed", {"record": "boot", "error": type(e).__name__})
        if self.safe_mode:
            self.events.emit("safe_mode_retry", None)
            self.board.reset()

    def _heap_sample(self):
        try:
            used = gc.mem_alloc()
            total = used + gc.mem_free()
        except AttributeError:  # CPython unit tests
            return
        if used > self.heap_peak:
            self.heap_peak = used
        self.heap_total = total

    def _gc(self):
        self._heap_sample()
        gc.collect()

    def log_event(self, e):
        """The events' sink once the flash log is open (app/build.py attaches it)."""
        c, data = self.event_codes.pack(e[2], e[3])
        clock = self.clock
        try:
            self.eventlog.append(clock.time() if clock.time_valid else 0, c, data)
        except Exception:
            pass   # a full or failing file system must not stop the meter

    def link_state(self):
        """The cellular link's state, for the display."""
        return self.cellular.link.status().get("state")

    def run(self):
        # The watchdog was armed by the guard before the app was built (guard.run).
        self.events.emit("boot", {"version": VERSION, "slot": self.ota.updater.slot if self.ota else None,
                                  "n": self.boot.boots, "safe": self.safe_mode})
        self.sched.run()


class Actions:
    """What every action of the meter acts on, held for the meter's run: the prepaid core, the clock,
    the event log, the store, the settings (and their file), the token lockouts of remote senders,
    and who to tell when the settings change. The actions themselves (app/actionpath.py: one function
    each, with its checks and its event) are loaded for each call only: rare, and the heap is small.
    Adapters (service/commands.py, comms/cellular.py, ui/wiring.py) call `run(name, *args, by)`."""

    def __init__(self, prepaid, clock, emit, store, settings, settings_path):
        self.prepaid = prepaid
        self.clock = clock
        self.emit = emit
        self.store = store
        self.settings = settings
        self.settings_path = settings_path
        self.token_locks = {}           # token lockouts per remote source, in RAM (tokens/apply.py)
        self.settings_listeners = []    # fn(settings) after set_config changed them

    def run(self, name, *args):
        """Action `name` of app/actionpath.py with `args` (the last is `by`, the channel)."""
        return call("app.actionpath", name, self, *args)
