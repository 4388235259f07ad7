"""Run an ASGI app with uvicorn in a background thread on 127.0.0.1 (tests, demo, scenario): start()
returns once it listens, stop() ends it and waits."""
import threading
import time

import uvicorn

from host_tools.errors import DeviceError
from host_tools.headend.broker import free_port

__all__ = ["ServerThread", "free_port"]


class ServerThread:
    def __init__(self, app, host="127.0.0.1", port=None, name="web"):
        self.host = host
        self.port = port or free_port(host)
        self.name = name
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.server.install_signal_handlers = lambda: None
        self.thread = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self, timeout=15.0):
        self.thread = threading.Thread(target=self.server.run, name=self.name, daemon=True)
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise DeviceError("%s did not start on %s:%d" % (self.name, self.host, self.port),
                                  hint="is the port taken? give another --bind")
            time.sleep(0.02)
        return self

    def stop(self):
        self.server.should_exit = True
        if self.thread:
            self.thread.join(10)
