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


def _reset(b):
    if b is not None:
        b.reset()
    try:
        import machine
    except ImportError:
        raise SystemExit(1)   # the unix port without a board: nothing to reset
    machine.reset()
