"""Composition and the superloop: builds every subsystem from the board and the settings, registers
the periodic jobs and the service commands, and runs."""
import gc

from micropython import const

from app import settings as config
from app.events import Events
from app.sched import Scheduler
from metering import registry
from metering.calibration import stored_calibration
from metering.meter import Meter
from prepaid.core import Prepaid
from provision.commands import ProvisionCommands
from service.port import ServicePort
from util import call, drop, unload

from fwversion import VERSION
JOB_FAIL_LIMIT = const(32)    # consecutive failures of one job before the meter resets


class App:
    def __init__(self, board, boot=None):
        """`boot`: what `startup.Startup` found (flash, store, boot count, safe mode); made here when
        the app is built without the guard (tests)."""
        self.board = board
        clock = board.clock
        self.clock = clock
        self.events = Events(clock)
        self.heap_peak = 0
        self.heap_total = 0
        self._heap_sample()
        if boot is None:
            from app.startup import Startup
            boot = Startup(board)
        self.boot = boot
        self.safe_mode = boot.safe
        self.root = boot.root
        self.store = boot.store
        for kind, data in boot.notes:
            self.events.emit(kind, data)
        self.settings, problems = config.load((self.root or "") + "/settings.json")
        for key, msg in problems:
            self.events.emit("config_invalid", {"key": key, "error": msg})
        self._store_faults()
        board.watchdog.feed()
        self.eventlog = None
        if self.store is not None:
            self._attach_eventlog()
        metering = board.info["metering"]
        self.metering_info = metering
        cal, self.calibrated = stored_calibration(self.store, metering["calibration"], self.events.emit)
        chip = registry.make_chip(metering, board.meter_bus, clock, cal)
        self.meter = Meter(chip, clock, self.events, metering["meter_constant_imp_per_kwh"],
                           registry.max_power_w(metering), self.settings["max_voltage_cv"])
        # Metering starts before anything that takes time (relay pulses): no energy goes unmetered.
        self.meter.begin()
        try:
            self.prepaid = Prepaid(board, self.meter, self.store, self.events, self.settings.get("prepaid"))
        except ValueError as e:   # a bad tariff or limit in settings: report it, run on the defaults
            self.events.emit("config_invalid", {"key": "prepaid", "error": str(e)})
            self.prepaid = Prepaid(board, self.meter, self.store, self.events, None)
        # Every action a meter can be asked to do, once; the service port, the cellular side and the
        # keypad are adapters onto it.
        self.actions = Actions(self.prepaid, clock, self.events.emit, self.store, self.settings,
                               (self.root or "") + "/settings.json")
        self.service = ServicePort(board.service, self.settings["service_line_max"], self)
        for name in ("ping", "readings", "totals", "events", "status", "settings"):
            self.service.command(name, getattr(self, "cmd_" + name))
        self._commands("metering.commands")
        self._commands("service.commands", self.actions)
        # --- subsystem commands (one line each) ---
        self.provision = ProvisionCommands(self)
        self.sched = Scheduler(clock, board.watchdog, self._job_failed)
        self.sched.every("meter", self.settings["meter_period_s"] * 1000, self._meter_job,
                         self.settings["meter_period_s"] * 1000)
        self.sched.every("gc", self.settings["meter_period_s"] * 1000 * self.settings["gc_every_polls"],
                         self._gc)
        self.sched.on_input(self._on_input)
        board.watchdog.feed()
        self.cellular = None
        if not self.safe_mode:      # safe mode: metering and the prepaid core only
            from comms import cellular
            self.cellular = cellular.start(board, self.store, self.events, self.settings, self.prepaid,
                                           self.meter, self.actions, VERSION)
        if self.cellular is not None:
            self.sched.every("link", 1000, self.cellular.poll)
        from ota.wiring import start as ota_start      # updates in the field (firmware/ota/)
        self.ota = ota_start(self)
        if self.ota is None:
            unload("ota.wiring")                       # no OTA slots: no code kept resident
        if self.cellular is not None:
            self.cellular.ota = self.ota               # fw_offer from the head-end goes to the updater
        self.version = VERSION
        self.relay = self.prepaid.relay      # for the self-test
        if self.cellular is None and getattr(board, "modem", None) is not None:
            board.modem.set_power(True)      # ready for the factory self-test (a SIM7600 boots ~12 s)
        self.ui = None
        if getattr(board, "display", None) is not None and self.settings["ui"] and not self.safe_mode:
            from ui.wiring import UI
            cell = self.cellular
            self.ui = UI(board, clock, self.settings, self.prepaid, self.meter, self.actions,
                         None if cell is None else (lambda: cell.link.status().get("state")), VERSION)
            self.ui.attach(self.sched, self.sched.every("ui", self.settings["display_period_s"] * 1000,
                                                        self.ui.tick))
        # The crash count starts again once this boot has proved itself; safe mode retries the
        # full application after a longer stable run.
        from app.startup import STABLE_S, SAFE_HOLD_S
        self.sched.every("stable", (SAFE_HOLD_S if self.safe_mode else STABLE_S) * 1000, self._stable,
                         (SAFE_HOLD_S if self.safe_mode else STABLE_S) * 1000)
        self.boot_ticks = clock.ticks_ms()
        board.watchdog.feed()

    def _attach_eventlog(self):
        """Events also go to the flash ring (they survive power cuts); counts are kept in the
        prepaid record so they run on across reboots."""
        try:
            from store.eventlog import EventLog
            from app import eventcodes
            log = EventLog(self.root + "/evlog")   # not "events": that is the events module's name
        except Exception as e:
            self.events.emit("store_unavailable", {"error": "eventlog %s" % type(e).__name__})
            return
        self.eventlog = log
        clock = self.clock

        def sink(e):
            c, data = eventcodes.pack(e[2], e[3])
            try:
                log.append(clock.time() if clock.time_valid else 0, c, data)
            except Exception:
                pass   # a full or failing file system must not stop the meter
        for e in self.events.ring:   # what happened before the log was open (boot, config)
            sink(e)
        self.events.sink = sink

    def _commands(self, module, ctx=None):
        """Register a module's commands to be loaded on demand (their names are listed in the module,
        which is imported once here to read them and then dropped)."""
        mod = __import__(module, None, None, ["NAMES"])
        self.service.command_module(module, mod.NAMES, mod.PRIVILEGED, ctx)
        drop(module)

    def _meter_job(self):
        self.meter.poll()
        self.prepaid.poll()
        if self.store is not None and self.store.faults:
            self._store_faults()      # what later loads found (the prepaid record's, a token store's)

    def _on_input(self):
        self.prepaid.power_failing()
        self.service.poll()
        if self.ui is not None:
            self.ui.poll()
        if self.cellular is not None:
            self.cellular.poll()
        elif getattr(self.board, "modem", None) is not None:
            self.board.modem.read()       # no link owns the modem yet: drop its chatter (boot messages)

    def _store_faults(self):
        if self.store is not None:
            for code, detail in self.store.take_faults():
                self.events.emit("store_" + code, {"detail": detail})

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

    # -- service commands ------------------------------------------------------------------------
    def cmd_ping(self, req):
        return {"pong": True, "calibrated": self.calibrated, "board": self.board.info["name"], "version": VERSION,
                "time": self.clock.time(), "time_valid": self.clock.time_valid}

    def cmd_readings(self, req):
        if self.meter.polls == 0 or req.get("fresh"):
            self.meter.poll()
        return self.meter.readings()

    def cmd_totals(self, req):
        if req.get("fresh", True):
            self.meter.poll()
        out = self.meter.totals()
        out["readings"] = self.meter.readings()
        return out

    def cmd_events(self, req):
        since = req.get("since", 0)
        return {"events": [list(e) for e in self.events.since(since)], "counts": self.events.counts,
                "seq": self.events.seq}

    def cmd_settings(self, req):
        """The settings the meter runs with (settings.json checked and completed by its defaults; no
        keys: those live in the store's records and are never answered)."""
        out = dict(self.settings)
        out["prepaid"] = self.prepaid.cfg          # with the prepaid core's defaults: what is in force
        return {"settings": out}

    def cmd_status(self, req):
        self._heap_sample()
        gc.collect()
        try:
            live = gc.mem_alloc()
        except AttributeError:
            live = 0
        return {"heap_peak": self.heap_peak, "heap_total": self.heap_total, "heap_live": live,
                "polls": self.meter.polls, "loop_ticks": self.sched.ticks, "jobs": self.sched.profile(),
                "uptime_s": self.clock.ticks_diff(self.clock.ticks_ms(), self.boot_ticks) // 1000,
                "health": self.meter.readings()["health"], "faults": self.meter.faults,
                "safe_mode": self.safe_mode, "boots": self.boot.boots, "resets_in_a_row": self.boot.resets,
                "console_locked": bool(getattr(self.board, "console_locked", False)),
                "firmware": self.ota.status() if self.ota else {"version": VERSION, "slot": None}}

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
