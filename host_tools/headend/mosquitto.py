"""Run a private mosquitto broker (Debian's mosquitto 2.0) on a loopback port with a temporary config:
anonymous access, or password auth from {user: password}; or with a production configuration written by
`meterkit headend broker-config` (`config=` its mosquitto.conf, `port=` a port it listens on). Used by
tests and the benchmark; skip-able when the binary is absent (`mosquitto_path()` is None)."""
import base64
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

from host_tools.errors import DeviceError
from host_tools.headend.broker import free_port
from host_tools.lifecycle import Managed


def password_line(user, password, iterations=101):
    """A mosquitto 2.0 password-file line: `user:$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>`, base64
    (the format mosquitto_passwd writes)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_path():
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)


class Mosquitto(Managed):
    def __init__(self, port=None, passwords=None, max_connections=-1, config=None, max_queued_messages=10000):
        self.port = port or free_port()
        self.max_queued_messages = max_queued_messages
        self.passwords = passwords
        self.config = config
        self.max_connections = max_connections
        self.proc = None
        self.dir = None

    @property
    def address(self):
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def url(self):
        """The address, with the "headend" user's credentials when password auth has one."""
        if self.passwords and "headend" in self.passwords:
            return f"mqtt://headend:{self.passwords['headend']}@127.0.0.1:{self.port}"
        return self.address

    def start(self, timeout=10.0):
        exe = mosquitto_path()
        if not exe:
            raise DeviceError("mosquitto is not installed", hint="apt-get install -y mosquitto")
        self.dir = tempfile.mkdtemp(prefix="mosq-")
        if self.config:
            return self._run(str(self.config), timeout)
        conf = [f"listener {self.port} 127.0.0.1", "persistence false", f"max_connections {self.max_connections}",
                f"max_queued_messages {self.max_queued_messages}", "max_inflight_messages 100"]
        if self.passwords:
            pw = os.path.join(self.dir, "passwd")
            with open(pw, "w") as f:        # one file written here, not a mosquitto_passwd run per user
                f.writelines(password_line(u, p) + "\n" for u, p in self.passwords.items())
            # mosquitto started as root drops to its own user, which must still read its files
            os.chmod(self.dir, 0o755)
            os.chmod(pw, 0o644)
            conf += ["allow_anonymous false", f"password_file {pw}"]
        else:
            conf.append("allow_anonymous true")
        path = os.path.join(self.dir, "mosquitto.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        return self._run(path, timeout)

    def _run(self, path, timeout):
        exe = mosquitto_path()
        # its log goes to a file: an unread pipe would fill up and block the broker
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([exe, "-c", path], stdout=subprocess.DEVNULL, stderr=self._log)
        self.pid = self.proc.pid
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                with open(self.log_path, "rb") as f:
                    tail = f.read().decode(errors="replace")[-300:]
                raise DeviceError(f"mosquitto exited: {tail}",
                                  hint="check the port is free")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise DeviceError("mosquitto did not start listening", hint="see its log")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    close = stop    # what `with` calls on the way out (host_tools.lifecycle)
