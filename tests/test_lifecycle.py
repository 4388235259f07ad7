"""`with part:` releases what a failed start had already launched (host_tools.lifecycle.Managed): the
brokers, databases, agency stacks and simulated chains the tools start never outlive their caller."""
import subprocess
import sys

import pytest

from host_tools.headend.broker import EmbeddedBroker
from host_tools.headend.mosquitto import Mosquitto
from host_tools.headend.pgserver import PostgresServer
from host_tools.lifecycle import Managed


class HalfStarted(Managed):
    """Launches a process, then fails the way a broker that never listens does."""

    def __init__(self):
        self.proc = None
        self.closed = 0

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        raise RuntimeError("did not come up")

    def close(self):
        self.closed += 1
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def test_a_start_that_fails_half_way_is_closed_and_its_process_stopped():
    part = HalfStarted()
    with pytest.raises(RuntimeError, match="did not come up"):
        with part:
            pytest.fail("the body ran although start() failed")
    assert part.closed == 1, "close() ran %d times after the failed start" % part.closed
    assert part.proc.poll() is not None, "the process the failed start launched is still running"


def test_a_part_that_started_is_closed_once_on_the_way_out():
    class Fine(HalfStarted):
        def start(self):
            return self
    with Fine() as p:
        assert p.closed == 0
    assert p.closed == 1


@pytest.mark.parametrize("cls", [Mosquitto, PostgresServer, EmbeddedBroker])
def test_the_services_close_even_when_never_started(cls):
    cls().close()       # what `with` does after a start that failed before launching anything
