# MicroPython manifest (not imported by Python): freezes the meter application from firmware/ into a
# custom MicroPython build. Included by boards/<board>/manifest.py; relative paths resolve from this
# file, as MicroPython's manifest tool does. main.py is left out on purpose: a frozen main.py would run
# instead of the file system's (pyexec_file_if_exists looks in the frozen modules first), and the file
# system's main.py is the one `meterkit build --frozen` writes. A test checks every firmware module is here.
_FW = "../firmware"

# The firmware's version, a top-level module of its own: an OTA image's frozen app carries its own
# (host_tools/ota/simimage.py). main.py is not frozen (see above).
module("fwversion.py", base_path=_FW)

# subsystem packages: every .py under each folder (a folder that does not exist yet freezes nothing).
for _pkg in ("app", "comms", "credit", "metering", "ota", "prepaid", "provision", "relay", "service", "store",
             "tokens", "ui", "util"):
    package(_pkg, base_path=_FW)
