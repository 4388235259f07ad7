"""Brokers for the head-end: the embedded amqtt broker (used when `serve` gets no --broker), run on its own
asyncio loop in a thread, and broker URL parsing. Production deployments point --broker at mosquitto."""
import asyncio
import json
import logging
import secrets
import socket
import threading
from urllib.parse import quote, unquote, urlparse

from host_tools.errors import DeviceError, UsageError
from host_tools.lifecycle import Managed


def parse_url(url):
    """(host, port, username, password) from mqtt[s]://[user[:pass]@]host[:port] (mqtts: TLS, port 8883)."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not u.hostname:
        raise UsageError(f"broker URL {url!r} not understood",
                         hint="e.g. mqtt://127.0.0.1:1883, mqtt://user:pw@host:1883 or mqtts://user:pw@host:8883")
    try:
        port = u.port or (8883 if is_tls(url) else 1883)
    except ValueError:
        raise UsageError(f"broker URL {url!r} has a bad port", hint="a port number 1..65535") from None
    return (u.hostname, port, unquote(u.username) if u.username is not None else None,
            unquote(u.password) if u.password is not None else None)


def with_login(url, user, password):
    """The same broker URL logging in as user:password instead (both percent-encoded)."""
    host, port, _, _ = parse_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else "mqtt"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{shown}:{port}"


def is_tls(url):
    """True for an mqtts:// (or ssl://) broker URL."""
    return url.split("://", 1)[0].lower() in ("mqtts", "ssl") if "://" in url else False


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EmbeddedBroker(Managed):
    """An amqtt broker on 127.0.0.1 in a background thread; `url` once started (with the head-end's own
    credentials in it when there is a registry). With `db`, meters authenticate with their provisioned
    broker password and the topic rules of `acl.py` apply (as on mosquitto); without, every client is
    accepted (loopback only: tests and the simulator). QoS 1 sessions with clean_session false are kept
    in memory."""

    def __init__(self, host="127.0.0.1", port=None, db=None, users=None):
        self.host = host
        self.port = port or free_port(host)
        self.db = str(db) if db else ""
        self.users = dict(users or {})
        if self.db and not self.users:
            self.users["headend"] = secrets.token_hex(12)
        self.address = f"mqtt://{self.host}:{self.port}"
        if self.users:
            u, p = next(iter(self.users.items()))
            self.url = f"mqtt://{u}:{p}@{self.host}:{self.port}"
        else:
            self.url = self.address
        self._loop = None
        self._broker = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    def start(self, timeout=15.0):
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DeviceError("embedded MQTT broker did not start", hint="use --broker to point at mosquitto")
        if self._error:
            raise DeviceError(f"embedded MQTT broker failed: {self._error}",
                              hint=f"is port {self.port} in use? give --broker to use another broker")
        return self

    def _run(self):
        from amqtt.broker import Broker

        from host_tools.headend.amqtt_auth import install_auth_first
        install_auth_first()
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "timeout_disconnect_delay": 0,
            "plugins": {"host_tools.headend.amqtt_auth.RegistryAuthPlugin": {
                "db": self.db, "users": json.dumps(self.users), "open": not self.db and not self.users},
                "host_tools.headend.amqtt_auth.RegistryTopicPlugin": {"open": not self.db and not self.users}},
        }

        async def boot():
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        try:
            self._loop.run_until_complete(boot())
        except Exception as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._broker.shutdown())
        self._loop.close()

    def stop(self):
        if self._loop and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    close = stop    # what `with` calls on the way out (host_tools.lifecycle)
