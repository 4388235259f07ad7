"""Finding a meter's port: candidate serial ports from pyserial's `list_ports` (as `mpremote devs`
lists them), `--port auto` for the one meter attached, and a port error said once."""
import glob
import os

from serial.tools import list_ports

from host_tools.errors import DeviceError

# USB-serial bridges found on ESP32 boards (vendor id -> maker): CP210x, CH340/CH9102, FTDI, Espressif.
USB_BRIDGES = {0x10C4: "Silicon Labs", 0x1A86: "WCH", 0x0403: "FTDI", 0x303A: "Espressif"}
# Where simulated meters are found: `meterkit sim start --link PATH` links named like this.
SIM_LINK_GLOBS = ("meter*.pty", "*.meter")


def reason(exc, port=None):
    """The one useful sentence of a pyserial/OS error (pyserial repeats the port and errno); mpremote
    says only "failed to access PORT", so for `port` the reason is read from the file itself."""
    errno = getattr(exc, "errno", None)
    if errno is None and exc.args and isinstance(exc.args[0], int):
        errno = exc.args[0]
    if errno:
        return os.strerror(errno).lower()
    text = str(exc)
    if text.startswith("failed to access") and port is not None:
        if not port.startswith(("socket://", "rfc2217://")):
            if not os.path.exists(port):
                return os.strerror(2).lower()
            if not os.access(port, os.R_OK | os.W_OK):
                return os.strerror(13).lower()
        return "it is busy or not a serial port"
    return text.split(": ", 1)[-1] if text.startswith("could not open port") else text


def candidates(sim_dir="."):
    """[{port, description, hwid, meter}] for every serial port, USB bridges of ESP32 boards first;
    `meter` is True when it looks like a meter (a known USB bridge, or a simulated meter's link)."""
    out = []
    for p in list_ports.comports():
        vid = p.vid
        out.append({"port": p.device, "description": p.description or "", "hwid": p.hwid or "",
                    "maker": USB_BRIDGES.get(vid, ""), "meter": vid in USB_BRIDGES})
    for pattern in SIM_LINK_GLOBS:
        for path in sorted(glob.glob(os.path.join(sim_dir, pattern))):
            if os.path.exists(path):   # a live link (its pty is open)
                out.append({"port": path, "description": "simulated meter (meterkit sim start --link)",
                            "hwid": "pty " + os.path.realpath(path), "maker": "", "meter": True})
    out.sort(key=lambda c: (not c["meter"], c["port"]))
    return out


def resolve(port):
    """`port` itself, or for 'auto' the one candidate that looks like a meter."""
    if port != "auto":
        return port
    found = [c for c in candidates() if c["meter"]]
    if len(found) == 1:
        return found[0]["port"]
    if not found:
        raise DeviceError("--port auto found no meter (no ESP32 USB bridge and no simulated meter's link here)",
                          hint="list the ports with `meterkit devs` and give --port P")
    raise DeviceError("--port auto found %d candidate meters: %s" % (len(found), ", ".join(c["port"] for c in found)),
                      hint="give the one you mean with --port P")
