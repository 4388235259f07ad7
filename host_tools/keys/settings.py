"""Which PKCS#11 module, token (label or slot) and key the tools use, and the PINs: from an option, then
the environment, then the keystore file's `hsm` section, then the defaults (SoftHSM found where Debian
and others install it). PINs never come from the command line: an environment variable or a prompt on
the terminal."""
import getpass
import os
from dataclasses import dataclass

from host_tools.errors import UsageError

ENV_MODULE = "METERKIT_PKCS11_MODULE"
ENV_TOKEN = "METERKIT_HSM_TOKEN"
ENV_SLOT = "METERKIT_HSM_SLOT"
ENV_KEY = "METERKIT_HSM_KEY"
ENV_PIN = "METERKIT_HSM_PIN"
ENV_SO_PIN = "METERKIT_HSM_SO_PIN"

DEFAULT_TOKEN = "meterkit"
DEFAULT_KEY = "vending"

# Where SoftHSM2's PKCS#11 library is installed: Debian/Ubuntu, multiarch, Fedora/RHEL, source builds, macOS.
SOFTHSM_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

SECTION_KEYS = ("module", "token", "slot", "key")


@dataclass
class ModuleSettings:
    module: str            # path of the PKCS#11 library
    token: str             # token label
    slot: int = None       # a slot id instead of (or checked with) the label
    key: str = DEFAULT_KEY  # the vending key object's label
    token_given: bool = False

    def describe(self):
        where = "slot %d" % self.slot if self.slot is not None else "token %r" % self.token
        return "%s in %s" % (where, self.module)


def find_softhsm():
    for p in SOFTHSM_PATHS:
        if os.path.exists(p):
            return p
    return None


def check_section(section, where):
    """The keystore's `hsm` object: only known names, strings (slot: an integer)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UsageError(f"{where}: hsm must be an object", hint='e.g. "hsm": {"token": "meterkit", "key": "vending"}')
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise UsageError(f"{where}: hsm has unknown field(s) {', '.join(unknown)}",
                         hint="known: " + ", ".join(SECTION_KEYS) + " (never a PIN: set %s)" % ENV_PIN)
    for k, v in section.items():
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0 if k == "slot" else isinstance(v, str) and v
        if not ok:
            raise UsageError(f"{where}: hsm {k} {v!r} is not valid",
                             hint="slot is a number, the others non-empty text")
    return dict(section)


def _slot(text, where):
    try:
        n = int(text, 0) if isinstance(text, str) else int(text)
    except ValueError:
        raise UsageError(f"{where} {text!r} is not a slot number", hint="the slot id `meterkit keys list` shows") from None
    if n < 0:
        raise UsageError(f"{where} {n} is negative", hint="the slot id `meterkit keys list` shows")
    return n


def resolve(module=None, token=None, slot=None, key=None, section=None):
    """ModuleSettings from the options given (None = not given), the environment and a keystore's
    `hsm` section."""
    section = section or {}
    env = os.environ
    path = module or env.get(ENV_MODULE) or section.get("module") or find_softhsm()
    if not path:
        raise UsageError("no PKCS#11 module found (SoftHSM2 is not installed)",
                         hint="apt-get install -y softhsm2, or give the HSM vendor's library with --pkcs11-module "
                              "or $%s" % ENV_MODULE)
    if not os.path.exists(path):
        raise UsageError(f"PKCS#11 module {path} does not exist",
                         hint="give the path of the HSM's PKCS#11 library (--pkcs11-module or $%s)" % ENV_MODULE)
    label = token or env.get(ENV_TOKEN) or section.get("token")
    if slot is not None:
        slot_n = _slot(slot, "--slot")
    elif env.get(ENV_SLOT):
        slot_n = _slot(env[ENV_SLOT], "$" + ENV_SLOT)
    else:
        slot_n = section.get("slot")
    key_label = key or env.get(ENV_KEY) or section.get("key") or DEFAULT_KEY
    return ModuleSettings(module=path, token=label or DEFAULT_TOKEN, slot=slot_n, key=key_label,
                          token_given=bool(label))


def _prompt(what):
    """Ask on the terminal (never stdin: it may carry a key); UsageError when there is no terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))     # getpass asks there, never on stdin
    except OSError:
        return None
    try:
        return getpass.getpass(what + ": ")
    except (EOFError, KeyboardInterrupt):
        return None


def pin(settings, so=False, confirm=False):
    """The user PIN (or the security officer's, `so`) from its environment variable or a prompt."""
    var = ENV_SO_PIN if so else ENV_PIN
    who = "security officer PIN" if so else "user PIN"
    value = os.environ.get(var)
    if value is None:
        value = _prompt("%s for %s" % (who, settings.describe()))
        if value is not None and confirm:
            again = _prompt("the same %s again" % who)
            if again != value:
                raise UsageError(f"the two {who}s differ", hint="type the same PIN twice")
    if not value:
        raise UsageError(f"no {who} for {settings.describe()}",
                         hint=f"set ${var} (never on the command line) or run on a terminal to be asked")
    if not 4 <= len(value) <= 255:
        raise UsageError(f"the {who} must be 4..255 characters", hint=f"check ${var}")
    return value
