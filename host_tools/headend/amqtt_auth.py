"""Authentication and topic rules for the embedded amqtt broker: meters log in with username = meter id
and their provisioned broker password (read from the head-end database); extra users (the head-end
itself) come from the config. The rules are `acl.py`'s, the same as mosquitto's: the client id must be
the user name, a meter's will only its own status topic, and a meter publishes, subscribes to and
receives only its own topics. Sessions are never marked anonymous, so clean_session=false queues QoS 1
messages for offline meters (amqtt drops them for anonymous sessions). `open` (no database, no users:
loopback tests and the simulator) accepts everything."""
import hmac
import json
import sqlite3
from dataclasses import dataclass, field

from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from host_tools.headend import acl


class RegistryAuthPlugin(BaseAuthPlugin):

    @dataclass
    class Config:
        db: str = ""                 # head-end SQLite file; empty: accept every client ("open")
        users: str = "{}"            # JSON {username: password} accepted besides the meters
        open: bool = field(default=False)

    def _opt(self, name, default):
        return self._get_config_option(name, default)

    async def authenticate(self, *, session):
        user = session.username or ""
        password = session.password or ""
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        if self._opt("open", False):
            return True
        if not acl.client_id_ok(session.client_id, user):
            return False          # one login can never take over another client's session
        if session.will_flag and not acl.will_ok(user, session.will_topic):
            return False          # a spoofed `offline` for someone else
        users = json.loads(self._opt("users", "{}") or "{}")
        if user in users:
            return hmac.compare_digest(str(users[user]), password)
        if acl.is_headend_user(user):
            return False          # the head-end's names are never meters
        db = self._opt("db", "")
        if not db or not user:
            return False
        if db.startswith(("postgresql://", "postgres://")):
            return await self._check_postgres(db, user, password)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                row = con.execute("SELECT broker_password FROM meters WHERE meter_id=?", (user,)).fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return False
        return row is not None and row[0] is not None and hmac.compare_digest(str(row[0]), password)

    async def _check_postgres(self, url, user, password):
        import asyncio

        def look():
            from host_tools.headend import db as dbapi
            try:
                con = dbapi.connect(url)
            except Exception:
                return None
            try:
                return con.execute("SELECT broker_password FROM meters WHERE meter_id=?", (user,)).fetchone()
            finally:
                con.close()
        row = await asyncio.get_running_loop().run_in_executor(None, look)
        return row is not None and row[0] is not None and hmac.compare_digest(str(row[0]), password)

class RegistryTopicPlugin(BaseTopicPlugin):
    """`acl.allowed` for every publish, subscribe and delivery (amqtt's RECEIVE)."""

    @dataclass
    class Config:
        open: bool = field(default=False)

    async def topic_filtering(self, *, session=None, topic=None, action=None):
        if self._get_config_option("open", False):
            return True
        if session is None or topic is None or action is None:
            return False
        return acl.allowed(session.username or "", topic, str(action.value if hasattr(action, "value") else action))


def install_auth_first():
    """Make amqtt authenticate a CONNECT before it touches an existing session of the same client id.

    amqtt 0.12.1 copies a new CONNECT's will, user name and password onto the existing session of that
    client id, and takes the old connection over, before it asks the authentication plugins, and does so
    even when they then refuse: an unauthenticated client could disconnect the head-end or rewrite a
    meter's will. Here the plugins are asked as soon as the CONNECT is read, and a refused client is
    dropped before anything else happens (it gets no CONNACK: the connection closes). Installed once per
    process, for the embedded broker (the version is pinned in requirements.txt)."""
    import amqtt.broker
    from amqtt.errors import MQTTError
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    if getattr(amqtt.broker.BrokerProtocolHandler, "auth_first", False):
        return

    class AuthFirstHandler(BrokerProtocolHandler):
        auth_first = True

        @classmethod
        async def init_from_connect(cls, reader, writer, plugins_manager, loop=None):
            handler, session = await super().init_from_connect(reader, writer, plugins_manager, loop)
            returns = await plugins_manager.map_plugin_auth(session=session)
            results = [r for r in (returns or {}).values() if r is not None]
            if not results or not all(results):
                raise MQTTError(f"client {session.client_id!r} refused before its session was touched")
            return handler, session

    amqtt.broker.BrokerProtocolHandler = AuthFirstHandler
