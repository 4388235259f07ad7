"""Import firmware modules into CPython host tools, so the host and the meter share one implementation
(token decoding, checksums). Installs a `micropython` stand-in and puts firmware/ on sys.path."""
import sys
import types

from host_tools.paths import FIRMWARE


def _install_micropython_shim():
    if "micropython" in sys.modules:
        return
    m = types.ModuleType("micropython")
    m.const = lambda x: x
    m.native = m.viper = lambda f: f
    sys.modules["micropython"] = m


def firmware_module(name):
    """Import and return a firmware module by dotted name, e.g. firmware_module('tokens.sts')."""
    _install_micropython_shim()
    p = str(FIRMWARE)
    if p not in sys.path:
        sys.path.append(p)
    __import__(name)
    return sys.modules[name]
