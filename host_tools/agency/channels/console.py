"""A channel that prints messages (development: `meterkit agency serve` with no gateway configured)."""
import sys


class ConsoleChannel:
    def __init__(self, name, stream=None):
        self.name = name
        self.stream = stream or sys.stderr

    def send(self, address, text, subject=None):
        self.stream.write("[%s to %s] %s\n" % (self.name, address, text))
        self.stream.flush()
        return None
