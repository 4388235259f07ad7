"""Authentication for the embedded amqtt broker: meters log in with username = meter id and their
provisioned broker password (read from the head-end database); extra users (the head-end itself) come
from the config. Sessions are never marked anonymous, so clean_session=false queues QoS 1 messages for
offline meters (amqtt drops them for anonymous sessions)."""
import hmac
import json
import sqlite3
from dataclasses import dataclass, field

from amqtt.plugins.base import BaseAuthPlugin


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
        users = json.loads(self._opt("users", "{}") or "{}")
        if user in users:
            return hmac.compare_digest(str(users[user]), password)
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
