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
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                row = con.execute("SELECT broker_password FROM meters WHERE meter_id=?", (user,)).fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return False
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
