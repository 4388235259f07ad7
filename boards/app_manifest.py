# MicroPython manifest (not imported by Python): freezes the meter application from firmware/ into a
# custom MicroPython build. Included by boards/<board>/manifest.py; relative paths resolve from this
# file, as MicroPython's manifest tool does. main.py is left out on purpose: a frozen main.py would run
# instead of the file system's (pyexec_file_if_exists looks in the frozen modules first), and the file
# system's main.py is the one `meterkit build --frozen` writes. A test checks every firmware module is here.
_FW = "../firmware"

# top-level modules: one line each
module("app.py", base_path=_FW)
module("config.py", base_path=_FW)
module("events.py", base_path=_FW)
module("sched.py", base_path=_FW)
module("prepaid.py", base_path=_FW)
module("tamper.py", base_path=_FW)
module("configcmd.py", base_path=_FW)
module("eventcodes.py", base_path=_FW)
module("cellular.py", base_path=_FW)
module("guard.py", base_path=_FW)
module("startup.py", base_path=_FW)
module("fwversion.py", base_path=_FW)

# subsystem packages: every .py under each folder (a folder that does not exist yet freezes nothing)
for _pkg in ("comms", "credit", "drivers", "metering", "provision", "relay", "service", "store", "tokens", "ui", "ota"):
    package(_pkg, base_path=_FW)
