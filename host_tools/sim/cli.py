"""`meterkit sim ...`: the simulated world's verbs. Each module in SIM_COMMANDS has `register_sim(subparsers)`."""
import importlib

# module -> register_sim(simsub). Add one line per module.
SIM_COMMANDS = [
    "host_tools.sim.commands",
    "host_tools.flash.rom_cli",
    "host_tools.sim.scenarios.powercut",
    "host_tools.sim.scenarios.chain",
    "host_tools.sim.profile",
    "host_tools.chaos.cli",
]


def register(sub):
    p = sub.add_parser("sim", help="run the simulated world (meters, ESP32s, benches)")
    simsub = p.add_subparsers(dest="sim_verb", metavar="SIMVERB")
    simsub.required = True
    for name in SIM_COMMANDS:
        importlib.import_module(name).register_sim(simsub)
