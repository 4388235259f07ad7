# Entry point on the meter: the guard locks the console, arms the watchdog, builds and runs the app,
# and turns any error into a crash record and a reset (never the REPL prompt).
from app.guard import run
run()
