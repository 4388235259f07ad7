"""A private PostgreSQL server (Debian's postgresql 15) in a temporary folder on a loopback port, for the
tests and the benchmark: `initdb` + `pg_ctl`, run as the `postgres` user when started as root (PostgreSQL
refuses root), trust authentication on 127.0.0.1 only, stopped and removed by stop(). `database()` makes
a fresh, empty database and returns its URL."""
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile

from host_tools.errors import DeviceError
from host_tools.headend.broker import free_port
from host_tools.lifecycle import Managed


def pg_bin():
    """The folder with initdb and pg_ctl, or None."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    exe = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(exe)) if exe else None


class PostgresServer(Managed):
    def __init__(self, port=None, fsync=True):
        self.port = port or free_port()
        self.fsync = fsync            # the benchmark measures with it on: durability is part of the cost
        self.dir = None
        self._n = itertools.count(1)
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, argv, **kw):
        """Run a PostgreSQL binary as the server's owner."""
        if os.geteuid() == 0:
            kw.update(user="postgres", group="postgres")
        return subprocess.run(argv, capture_output=True, text=True, **kw)

    @property
    def admin_url(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self):
        bindir = pg_bin()
        if not bindir:
            raise DeviceError("PostgreSQL is not installed", hint="apt-get install -y postgresql")
        self.dir = tempfile.mkdtemp(prefix="pg-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        r = self._run([os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", self.user, "-E", "UTF8",
                       "--no-locale", "--no-sync"])
        if r.returncode:
            self.stop()
            raise DeviceError("initdb failed: " + (r.stderr.strip().splitlines() or ["?"])[-1],
                              hint="PostgreSQL needs a non-root user: run as one, or as root with the postgres user")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                f"-c max_connections=200 -c fsync={'on' if self.fsync else 'off'} -c shared_buffers=64MB")
        r = self._run([os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(self.dir, "log"), "-w",
                       "-t", "60", "-o", opts, "start"])
        if r.returncode:
            tail = ""
            try:
                with open(os.path.join(self.dir, "log")) as f:
                    tail = f.read()[-300:]
            except OSError:
                pass
            self.stop()
            raise DeviceError(f"PostgreSQL did not start: {tail or r.stderr.strip()}", hint="is the port free?")
        self._data = data
        self._bindir = bindir
        return self

    def database(self, name=None):
        """Create an empty database; returns its URL."""
        import psycopg
        name = name or f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.admin_url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        if self.dir and getattr(self, "_data", None):
            self._run([os.path.join(self._bindir, "pg_ctl"), "-D", self._data, "-m", "immediate", "-w", "stop"])
            self._data = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    close = stop    # what `with` calls on the way out (host_tools.lifecycle)
