"""`meterkit headend serve --workers N`: N head-end processes on one store and one broker. Uplinks are
shared through the MQTT v5 shared subscription `$share/headend/meters/+/up` (each message to one worker);
downlinks leave through the outbox, each attempt claimed by one worker under a row lock
(service.HeadEnd._claim). Each worker keeps a broker session that outlives it (client id
`headend-w<i>`, session expiry 1 h), so what the broker had handed a worker that is killed comes again
when the supervisor restarts it; what it had claimed from the outbox is due again at its retry time."""
import os
import signal
import subprocess
import sys
import time

from host_tools.errors import UsageError

GROUP = "headend"
SEQ_WINDOW = 32          # several workers commit one meter's uplinks out of order (seqwindow.py)
RESTART_PAUSE_S = 0.5


def worker_argv(args, index):
    argv = [sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", args.db, "--broker", args.broker,
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
        self.procs = {}
        self.restarts = 0
        self.out = out
        self._stopping = False

    def _spawn(self, i):
        self.procs[i] = subprocess.Popen(worker_argv(self.args, i), stdin=subprocess.DEVNULL)
        self.out.write(f"worker {i} started (pid {self.procs[i].pid})\n")
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

    def stop(self, timeout=10.0):
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
