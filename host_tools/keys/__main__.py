"""`python -m host_tools.keys VERB ...`: the `meterkit keys` verbs without loading every other verb."""
import sys

from host_tools.cli import main

if __name__ == "__main__":
    sys.exit(main(["keys"] + sys.argv[1:], commands=["host_tools.keys.cli"]))
