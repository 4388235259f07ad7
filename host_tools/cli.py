"""`meterkit <verb>`: a thin command table over the library. Each verb's module has `register(subparsers)`."""
import argparse
import importlib
import json
import sys

from host_tools.errors import MeterkitError

# verb -> module defining register(subparsers). Add one line per verb module.
COMMANDS = [
    "host_tools.build.cli",
    "host_tools.flash.cli",
    "host_tools.deploy.cli",
    "host_tools.sim.cli",
    "host_tools.vend.cli",
    "host_tools.keys.cli",
    "host_tools.device.cli",
    "host_tools.provision.cli",
    "host_tools.selftest.cli",
    "host_tools.calibrate.cli",
    "host_tools.demo",
    "host_tools.headend.cli",
    "host_tools.agency.cli",
    "host_tools.ota.cli",
]

# The module that registers each top-level verb: `meterkit VERB ...` builds its parser from that module alone.
# The whole parser imports every verb's dependencies (esptool, the simulator, the head-end, ...): about
# 0.4 s of CPU at every start. tests/test_cli_verbs.py checks this table against COMMANDS.
VERB_MODULES = {
    "build": "host_tools.build.cli",
    "flash": "host_tools.flash.cli",
    "deploy": "host_tools.deploy.cli",
    "sim": "host_tools.sim.cli",
    "vend": "host_tools.vend.cli",
    "token": "host_tools.vend.cli",
    "keys": "host_tools.keys.cli",
    "device": "host_tools.device.cli",
    "console": "host_tools.device.cli",
    "devs": "host_tools.device.cli",
    "monitor": "host_tools.device.cli",
    "provision": "host_tools.provision.cli",
    "selftest": "host_tools.selftest.cli",
    "calibrate": "host_tools.calibrate.cli",
    "demo": "host_tools.demo",
    "headend": "host_tools.headend.cli",
    "agency": "host_tools.agency.cli",
    "ota": "host_tools.ota.cli",
}

# The short flags people know from esptool and mpremote, given to every parser that has the long one.
SHORT_FLAGS = {"--port": "-p", "--bench": "-b", "--baud": "-b"}


class MeterkitParser(argparse.ArgumentParser):
    """argparse with the common short flags added wherever their long option is declared (sub-parsers
    inherit the class, so every verb gets them without repeating them)."""

    def add_argument(self, *names, **kw):
        short = SHORT_FLAGS.get(names[0]) if names and len(names) == 1 else None
        if short and short not in self._option_string_actions:
            names = (short,) + names
        return super().add_argument(*names, **kw)


def version():
    try:
        from importlib.metadata import version as _v
        return _v("meterkit")
    except Exception:
        return "unknown"


def build_parser(commands=None):
    parser = MeterkitParser(prog="meterkit", description=__doc__.split(":")[0])
    parser.add_argument("-V", "--version", action="version", version="meterkit %s" % version())
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in commands or COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def emit(obj, as_json):
    """Print a result: one JSON object with --json, else a table for people (host_tools.render)."""
    if as_json:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    else:
        from host_tools import render
        render.show(obj)
    sys.stdout.flush()


def main(argv=None, commands=None):
    """Run one verb; `commands` limits the parser to those verb modules (a quick start for children).
    Without it, a known verb first in argv needs only its own module; anything else (-h, -V, a typo)
    gets the whole parser, so the listing and the errors name every verb."""
    if commands is None:
        first = (sys.argv[1:] if argv is None else list(argv))[:1]
        if first and first[0] in VERB_MODULES:
            commands = [VERB_MODULES[first[0]]]
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except MeterkitError as e:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(e.as_dict(), sort_keys=True) + "\n")
        sys.stderr.write(f"meterkit {args.verb}: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
