"""The meter's start: console locked (a Ctrl-C byte on the service UART is only a byte), watchdog armed,
then the boot counted and the application built and run. Any error on the way, or later, is written
to the `crash` record and the board resets: the meter never falls to the REPL prompt, which on the
ESP32 would hand the service UART (and the file system) to whoever holds the cable.
`main.py` is `from app.guard import run; run()`."""


def run():
    b = None
    boot = None
    try:
        import board
        b = board.Board()
        b.lock_console()
        b.watchdog.start(b.info.get("watchdog_ms", 8000))
        _intern_names()
        from app.startup import Startup
        boot = Startup(b)
        from app.composition import App
        App(b, boot).run()
    except SystemExit:
        # Only the simulated board exits (its simulator went away, or it asked for a reset):
        # nothing went wrong in the meter.
        pass
    except BaseException as e:
        try:
            import sys
            sys.print_exception(e)
        except BaseException:
            pass
        if b is not None:
            from app.startup import log_crash
            log_crash(b, boot.store if boot is not None else None, e, boot.boots if boot is not None else 0)
    _reset(b)


# Loaded once at boot (_intern_names): the app's resident code (what the build imports) and the code
# of the paths that move credit, with what each imports.
WARM = ("app.build", "app.startup", "store.eventlog", "app.eventcodes", "ui.wiring", "comms.cellular",
        "ota.wiring", "app.actionpath", "store.journal", "service.commands", "tokens.apply")


def _intern_names():
    """Load the app's code once, first thing at boot, and forget it again. The names a module
    uses are interned the first time it loads and never freed, in a table that grows by doubling; on
    an image of .mpy files the next table is one block of about 14 KB (1,280 names, the size the
    MemoryError states). Grown at the first top-up after a boot, on a heap in small pieces, it failed
    and the top-up with it, or the build itself (power-cut runs at the 256k cap); grown here, the heap
    is empty. Frozen modules keep their names in flash: nothing grows. Never fails the boot."""
    import sys
    had = set(sys.modules)
    try:
        for name in WARM:
            __import__(name)
    except Exception:     # noqa: BLE001 - MemoryError included: the app is built all the same
        pass
    from util import unload
    for name in [n for n in sys.modules if n not in had]:
        unload(name)
    import gc
    gc.collect()


def _reset(b):
    if b is not None:
        b.reset()
    try:
        import machine
    except ImportError:
        raise SystemExit(1)   # the unix port without a board: nothing to reset
    machine.reset()
