"""`meterkit VERB` builds its parser from the verb's own module (host_tools.cli.VERB_MODULES): the table
names every verb the whole parser has, each with the module that registers it, and a verb's help and
errors are the same either way."""
import argparse
import importlib
import subprocess
import sys

from host_tools import cli


def _verbs(module):
    p = cli.MeterkitParser(prog="meterkit")
    sub = p.add_subparsers(dest="verb")
    importlib.import_module(module).register(sub)
    return set(sub.choices)


def test_every_verb_is_in_the_table_with_the_module_that_registers_it():
    table = {}
    for module in cli.COMMANDS:
        for verb in _verbs(module):
            table[verb] = module
    assert table == cli.VERB_MODULES


def test_a_verb_alone_parses_as_with_the_whole_parser():
    full = cli.build_parser()
    for verb, module in cli.VERB_MODULES.items():
        alone = cli.build_parser([module])
        sub_full = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
        sub_alone = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
        assert sub_full.format_help() == sub_alone.format_help(), verb


def test_the_listing_and_an_unknown_verb_still_name_every_verb():
    out = subprocess.run([sys.executable, "-m", "host_tools.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and all(v in out.stdout for v in cli.VERB_MODULES), out.stdout
    bad = subprocess.run([sys.executable, "-m", "host_tools.cli", "no-such-verb"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "headend" in bad.stderr, bad.stderr
