"""Builds the application (`app.composition.App`) from the board and the settings: every subsystem,
the periodic jobs and the service commands. Run once at boot and then dropped (`util.once`): the
constructor's code costs no heap for the meter's life. Nothing made here may keep a function of this
module (a closure or lambda would keep the whole module's code alive): callbacks are App methods."""
from app import settings as config
from app.composition import Actions, VERSION
from metering import registry
from metering.calibration import Calibration, stored_calibration
from app.events import Events
from app.sched import Scheduler
from metering.meter import Meter
from prepaid.core import FAST_PERIOD_MS, GAP_MIN_MS, Prepaid
from provision.commands import ProvisionCommands
from service.port import ServicePort
from util import drop, unload


def build(app, board, boot):
    """`boot`: what `startup.Startup` found (flash, store, boot count, safe mode); made here when
    the app is built without the guard (tests)."""
    app.board = board
    clock = board.clock
    app.clock = clock
    app.events = Events(clock)
    app.heap_peak = 0
    app.heap_total = 0
    app._heap_sample()
    if boot is None:
        from app.startup import Startup
        boot = Startup(board)
    app.boot = boot
    app.safe_mode = boot.safe
    app.root = boot.root
    app.store = boot.store
    for kind, data in boot.notes:
        app.events.emit(kind, data)
    app.settings, problems = config.load((app.root or "") + "/settings.json")
    for key, msg in problems:
        app.events.emit("config_invalid", {"key": key, "error": msg})
    _store_faults(app)
    board.watchdog.feed()
    app.eventlog = None
    if app.store is not None:
        _attach_eventlog(app)
    metering = board.info["metering"]
    cal, calibrated = stored_calibration(app.store, metering["calibration"], app.events.emit)
    chip = registry.make_chip(metering, board.meter_bus, clock, cal)
    app.meter = Meter(chip, clock, app.events, metering["meter_constant_imp_per_kwh"],
                       registry.max_power_w(metering), app.settings["max_voltage_cv"])
    app.calibration = Calibration(app.meter, app.store, app.events.emit, metering, calibrated)
    # Metering starts before anything that takes time (relay pulses): no energy goes unmetered.
    app.meter.begin()
    try:
        app.prepaid = Prepaid(board, app.meter, app.store, app.events, app.settings.get("prepaid"))
    except ValueError as e:   # a bad tariff or limit in settings: report it, run on the defaults
        app.events.emit("config_invalid", {"key": "prepaid", "error": str(e)})
        app.prepaid = Prepaid(board, app.meter, app.store, app.events, None)
    # Every action a meter can be asked to do, once; the service port, the cellular side and the
    # keypad are adapters onto it.
    app.actions = Actions(app.prepaid, clock, app.events.emit, app.store, app.settings,
                           (app.root or "") + "/settings.json")
    app.service = ServicePort(board.service, app.settings["service_line_max"], app)
    _commands(app, "app.appcmds", app)           # ping, readings, totals, events, status, settings
    _commands(app, "metering.commands", app.calibration)
    _commands(app, "service.commands", app.actions)
    # --- subsystem commands (one line each) ---
    app.provision = ProvisionCommands(app.service, app.store, clock, board.random, app.events.emit,
                                      board.info.get("name"), VERSION, app.run_selftest)
    app.sched = Scheduler(clock, board.watchdog, app._job_failed)
    # The first job (App._meter_job finds itself at sched.jobs[0]): one period apart, or sooner under
    # a high load (what the prepaid core's poll returns). The first poll of a 1 s period comes at
    # GAP_MIN_MS: the load met at boot is not known yet, and a cut tearing the first commit loses
    # what that poll read (1.3 Wh at 4.7 kW after a whole second).
    period = app.settings["meter_period_s"] * 1000
    app.sched.every("meter", period, app._meter_job, GAP_MIN_MS if period <= FAST_PERIOD_MS else period)
    app.sched.every("gc", app.settings["meter_period_s"] * 1000 * app.settings["gc_every_polls"],
                     app._gc)
    app.sched.on_input(app._on_input)
    board.watchdog.feed()
    app.cellular = None
    if not app.safe_mode:      # safe mode: metering and the prepaid core only
        from comms import cellular
        app.cellular = cellular.start(board, app.store, app.events, app.settings, app.prepaid,
                                       app.meter, app.actions, VERSION)
    if app.cellular is not None:
        # once a second while the link works; on a quiet session, to its next timer (app/sched.py)
        app.sched.every("link", 1000, app.cellular.poll, quiet=app.cellular.quiet_ms)
    from ota.wiring import start as ota_start      # updates in the field (firmware/ota/)
    app.ota = ota_start(app)
    if app.ota is None:
        unload("ota.wiring")                       # no OTA slots: no code kept resident
    if app.cellular is not None:
        app.cellular.ota = app.ota               # fw_offer from the head-end goes to the updater
    app.version = VERSION
    app.relay = app.prepaid.relay      # for the self-test
    if app.cellular is None and getattr(board, "modem", None) is not None:
        board.modem.set_power(True)      # ready for the factory self-test (a SIM7600 boots ~12 s)
    app.ui = None
    if getattr(board, "display", None) is not None and app.settings["ui"] and not app.safe_mode:
        from ui.wiring import UI
        cell = app.cellular
        app.ui = UI(board, clock, app.settings, app.prepaid, app.meter, app.actions,
                     None if cell is None else app.link_state, VERSION)
        app.ui.attach(app.sched, app.sched.every("ui", app.settings["display_period_s"] * 1000,
                                                    app.ui.tick))
    # The crash count starts again once this boot has proved itself; safe mode retries the
    # full application after a longer stable run.
    from app.startup import STABLE_S, SAFE_HOLD_S
    app.sched.every("stable", (SAFE_HOLD_S if app.safe_mode else STABLE_S) * 1000, app._stable,
                     (SAFE_HOLD_S if app.safe_mode else STABLE_S) * 1000)
    app.boot_ticks = clock.ticks_ms()
    board.watchdog.feed()

    # What only the build needed goes with it (loaded again on demand by the rare code that uses it).
    for name in ("app.settings", "metering.registry", "metering.calibration"):
        unload(name)


def _attach_eventlog(app):
    """Events also go to the flash ring (they survive power cuts); counts are kept in the
    prepaid record so they run on across reboots."""
    try:
        from store.eventlog import EventLog
        from app import eventcodes
        log = EventLog(app.root + "/evlog")   # not "events": that is the events module's name
    except Exception as e:
        app.events.emit("store_unavailable", {"error": "eventlog %s" % type(e).__name__})
        return
    app.eventlog = log
    app.event_codes = eventcodes
    for e in app.events.ring:   # what happened before the log was open (boot, config)
        app.log_event(e)
    app.events.sink = app.log_event


def _commands(app, module, ctx=None):
    """Register a module's commands to be loaded on demand (their names are listed in the module,
    which is imported once here to read them and then dropped)."""
    mod = __import__(module, None, None, ["NAMES"])
    app.service.command_module(module, mod.NAMES, mod.PRIVILEGED, ctx)
    drop(module)


def _store_faults(app):
    if app.store is not None:
        for code, detail in app.store.take_faults():
            app.events.emit("store_" + code, {"detail": detail})
