"""`meterkit headend serve --workers N`: N head-end processes on one store and one broker. Uplinks are
shared through the MQTT v5 shared subscription `$share/headend/meters/+/up` (each message to one worker);
downlinks leave through the outbox, each attempt claimed by one worker under a row lock
(service.HeadEnd._claim). Each worker keeps a broker session that outlives it (client id
`headend-w<i>`, session expiry 1 h), so what the broker had handed a worker that is killed comes again
when the supervisor restarts it; what it had claimed from the outbox is due again at its retry time.

Logins: a broker configured by `meterkit headend broker-config` binds the client id to the user name
(`use_username_as_clientid`), so workers sharing one login would all be client `headend` and take over
each other's session in turn. With `--broker-logins FILE` (broker-config's `headend-workers.json`, made
with `--workers N`) worker i logs in as `headend-w<i>` with its own password and the workers share the
uplinks in the file's secret group (brokerconfig.worker_settings says why); without it every worker
uses the --broker URL's login and the group `headend` (a development broker).
A worker gets its URL (and so its password) and group through the environment, never on its command line."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from host_tools.errors import UsageError
from host_tools.headend import acl
from host_tools.headend.broker import parse_url, with_login

GROUP = "headend"
# Several workers commit one meter's uplinks out of order (seqwindow.py): a seq is still accepted (once)
# up to this far below the meter's highest. The reorder is at most the number of the meter's uplinks in
# flight at once: the firmware's uplink queue holds about 10 (comms/uplink.py, 3,800 bytes); 62 is the
# most the 64-bit up_window column holds.
SEQ_WINDOW = 62
RESTART_PAUSE_S = 0.5


BROKER_ENV = "METERKIT_HEADEND_BROKER"     # serve's --broker default: how a worker is given its URL
GROUP_ENV = "METERKIT_HEADEND_SHARE_GROUP"  # the workers' shared-subscription group (a secret with logins)
SHARE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def share_group():
    """The group a worker joins: the secret one its supervisor passed, else GROUP."""
    g = os.environ.get(GROUP_ENV, "")
    return g if SHARE_NAME.match(g) else GROUP


def load_logins(path, n):
    """({index: (user, password)} for workers 0..n-1, the shared-subscription group) from broker-config's
    headend-workers.json."""
    made_by = f"`meterkit headend broker-config --workers {n} --out DIR` writes DIR/headend-workers.json"
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read the broker logins {path}: {e.strerror}", hint=made_by) from None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not JSON", hint=made_by) from None
    users = doc.get("logins") if isinstance(doc, dict) else None
    group = doc.get("group") if isinstance(doc, dict) else None
    if not isinstance(users, dict) or not isinstance(group, str) or not SHARE_NAME.match(group):
        raise UsageError(f"{path} is not broker-config's workers file (logins and group)", hint=made_by)
    missing = [acl.worker_user(i) for i in range(n) if not isinstance(users.get(acl.worker_user(i)), str)
               or not users.get(acl.worker_user(i))]
    if missing:
        raise UsageError(f"{path} has no login for {', '.join(missing)}",
                         hint=f"re-run `meterkit headend broker-config --workers {n}` (then SIGHUP mosquitto)")
    return {i: (acl.worker_user(i), users[acl.worker_user(i)]) for i in range(n)}, group


def worker_url(args, index, logins=None):
    """The broker URL worker `index` connects with: its own login when there are logins."""
    if logins:
        user, password = logins[index]
        return with_login(args.broker, user, password)
    return args.broker


def worker_client_id(index):
    """A worker's client id, `headend-w<i>`: its user name when it has its own login (what broker-config's
    mosquitto binds it to), and distinct from the other workers' on a development broker."""
    return acl.worker_user(index)


def worker_argv(args, index):
    argv = [sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", args.db,
            "--worker-id", str(index), "--retry-s", str(args.retry_s), "--retry-max-s", str(args.retry_max_s),
            "--operator", args.operator_name, "--fleet-silence-s", str(args.fleet_silence_s),
            "--meter-silence-s", str(args.meter_silence_s)]
    if getattr(args, "ca_file", None):
        argv += ["--ca-file", args.ca_file]       # every worker verifies the broker as the supervisor would
    return argv


class Supervisor:
    """Starts the workers, restarts one that dies, stops them all on stop()."""

    def __init__(self, args, n, out=sys.stdout):
        if not args.broker:
            raise UsageError("--workers needs --broker (mosquitto: MQTT v5 shared subscriptions)",
                             hint="e.g. --broker mqtt://headend:PASSWORD@127.0.0.1:1883")
        self.args = args
        self.n = n
        self.logins, self.group = None, GROUP
        if getattr(args, "broker_logins", None):
            self.logins, self.group = load_logins(args.broker_logins, n)
        self.procs = {}
        self.restarts = 0
        self.out = out
        self._stopping = False

    def _spawn(self, i):
        env = dict(os.environ, **{BROKER_ENV: worker_url(self.args, i, self.logins), GROUP_ENV: self.group})
        self.procs[i] = subprocess.Popen(worker_argv(self.args, i), stdin=subprocess.DEVNULL, env=env)
        user = parse_url(env[BROKER_ENV])[2]
        self.out.write(f"worker {i} started (pid {self.procs[i].pid}, broker user {user})\n")
        self.out.flush()

    def start(self):
        for i in range(self.n):
            self._spawn(i)
        return self

    def poll(self):
        """Restart the workers that exited (unless stopping); returns how many were restarted."""
        n = 0
        for i, p in list(self.procs.items()):
            if p.poll() is not None and not self._stopping:
                self.out.write(f"worker {i} exited ({p.returncode}); restarting it\n")
                self.out.flush()
                time.sleep(RESTART_PAUSE_S)
                self._spawn(i)
                self.restarts += 1
                n += 1
        return n

    def pids(self):
        return {i: p.pid for i, p in self.procs.items()}

    def run(self, stop_event):
        while not stop_event.is_set():
            self.poll()
            stop_event.wait(0.2)

    def stop(self, timeout=30.0):
        self._stopping = True
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return {i: p.returncode for i, p in self.procs.items()}


def default_workers():
    return int(os.environ.get("METERKIT_HEADEND_WORKERS", "1"))
