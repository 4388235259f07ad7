"""Benchmark: a fleet of lightweight simulated meter sessions (FakeMeter: the real envelope protocol and
MACs, each meter its own paho MQTT session, STS tokens checked with the firmware's decoder) against
mosquitto run from `meterkit headend broker-config` (a user per meter, ACLs, client id bound to the user,
a login per worker; its plain loopback listener, or with HEADEND_FLEET_TLS=1 its mqtts listener for the
meters and the workers) and PostgreSQL (private
server, fsync on), served by `meterkit headend serve --workers N` for N in 4, 2, 1. The sessions are
driven by one asyncio loop (host_tools/headend/fakefleet.py), connected concurrently and paced. Per N:

- readings ingested per second: every meter publishes HEADEND_FLEET_READINGS readings at once, timed
  from the first publish until all are in the store;
- top-ups per second end to end: one token vended for each of HEADEND_FLEET_TOPUPS meters spread over
  the fleet (vend, outbox, delivery, the meter's STS check, its result recorded), timed from the first
  vend until every result is in;
- p95 latency of a top-up (vend to recorded result): under that burst, and paced at half the burst rate;
- CPU per reading: the workers' CPU seconds (and PostgreSQL's, mosquitto's, and the load generator's)
  over the readings phase divided by the readings.

Size and shape from the environment: HEADEND_FLEET_SESSIONS (10000), HEADEND_FLEET_WORKERS ("4,2,1"),
HEADEND_FLEET_READINGS (1), HEADEND_FLEET_TOPUPS (1000), HEADEND_FLEET_PACED (300), HEADEND_FLEET_TLS (0). The load generator
(the fake meters, the vending) runs on the same 2 cores as the workers, the broker and the database:
see docs/scale.md."""
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SESSIONS = int(os.environ.get("HEADEND_FLEET_SESSIONS", "10000"))
WORKERS = [int(x) for x in os.environ.get("HEADEND_FLEET_WORKERS", "4,2,1").split(",")]
READINGS = int(os.environ.get("HEADEND_FLEET_READINGS", "1"))
TOPUPS = int(os.environ.get("HEADEND_FLEET_TOPUPS", "1000"))
PACED = int(os.environ.get("HEADEND_FLEET_PACED", "300"))
IDLE_S = 10.0
TLS = os.environ.get("HEADEND_FLEET_TLS", "0") == "1"     # meters and workers on the mqtts listener
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _pg_cpu(pg):
    with open(os.path.join(pg._data, "postmaster.pid")) as f:
        master = int(f.readline())
    return sum(_cpu_s(p) for p in [master] + _children(master))


def _p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else None


class _Serve:
    def __init__(self, db, url, n, logins=None, ca_file=None):
        argv = [sys.executable, "-m", "host_tools.cli", "headend", "serve", "--db", db, "--broker", url,
                "--workers", str(n), "--retry-s", "120", "--retry-max-s", "600", "--operator", "bench"]
        if ca_file:
            argv += ["--ca-file", ca_file]
        if n > 1 and logins:
            argv += ["--broker-logins", logins]      # each worker its own login, the secret group
        self.n = n
        self.started = time.time()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def worker_pids(self):
        if self.n == 1:
            return [self.proc.pid]
        pids = {}
        for m in (re.search(r"worker (\d+) started \(pid (\d+)", x) for x in list(self.lines)):
            if m:
                pids[int(m.group(1))] = int(m.group(2))       # a restarted worker: its newest pid
        return list(pids.values())

    def ready(self, store, timeout=120):
        """Every worker has beaten its heartbeat since this serve started (a previous run's are older)."""
        keys = ["heartbeat"] if self.n == 1 else [f"heartbeat:w{i}" for i in range(self.n)]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            vals = [store.service(k) for k in keys]
            if all(v is not None and float(v) > self.started for v in vals) and len(self.worker_pids()) == self.n:
                return True
            time.sleep(0.2)
        return False

    def quiet(self, timeout=300, window_s=3.0, below=0.10):
        """Wait until the workers together use less than `below` of a core (the retained statuses every
        worker is handed at subscription, 10,000 of them, are worked through first)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pids = self.worker_pids()
            c0 = sum(_cpu_s(p) for p in pids)
            time.sleep(window_s)
            if (sum(_cpu_s(p) for p in pids) - c0) / window_s < below:
                return True
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_count(store, sql, target, timeout, stall_s=180):
    """Wait until the count reaches target; gives up at timeout or when it has not moved for stall_s."""
    end = time.monotonic() + timeout
    n, last, moved = 0, -1, time.monotonic()
    while time.monotonic() < end:
        n = store.q1(sql)["n"]
        if n >= target:
            return n, True
        if n != last:
            last, moved = n, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            break
        time.sleep(0.1)
    return n, False


def _settle(store, quiet_s=5.0, timeout=600):
    """Wait until the head-end's event log has not grown for quiet_s (statuses, results all taken)."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        n = store.q1("SELECT COUNT(*) AS n FROM events")["n"]
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.5)


def _vend_all(store, ks, ids, threads=2):
    from host_tools.headend import vending
    from host_tools.headend.store import Store
    out = []

    def work(part):
        s = Store(store.path)
        try:
            for mid in part:
                out.append(vending.vend_topup(s, ks, mid, kwh="1")["msg_id"])
        finally:
            s.close()
    ts = [threading.Thread(target=work, args=(ids[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def _latencies(store, msg_ids):
    wanted = set(msg_ids)
    rows = store.q("SELECT msg_id, created, done_at FROM messages WHERE state='done' AND kind='token'")
    return [r["done_at"] - r["created"] for r in rows if r["msg_id"] in wanted]


def _cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(sessions=SESSIONS, workers=WORKERS, topups=TOPUPS, paced=PACED, readings=READINGS, tls=TLS):
    import json

    from host_tools.headend import brokerconfig, vending
    from host_tools.headend.broker import free_port, with_login
    from host_tools.headend.demo import make_fleet
    from host_tools.headend.fakefleet import AsyncMeterFleet
    from host_tools.headend.fakemeter import FakeMeter
    from host_tools.headend.mosquitto import Mosquitto
    from host_tools.headend.pgserver import PostgresServer
    from host_tools.headend.store import Store

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * sessions + 512)), hard))
    tmp = tempfile.mkdtemp(prefix="fleet-bench-")
    pg = PostgresServer(fsync=True).start()
    broker = None
    fleet = None
    res = {"fleet_sessions_target": sessions, "fleet_tls": tls,
           "fleet_load_average_at_start": round(os.getloadavg()[0], 1)}
    try:
        url = pg.database("fleet")
        csv_path, ks_path, rows = make_fleet(tmp, sessions)
        store = Store(url)
        store.import_csv(csv_path)
        ks = vending.load_keystore(ks_path)
        # the broker as broker-config writes it (users, ACLs, client id = user, a login per worker), on its
        # plain loopback listener; the head-end's share of a burst waits in the broker: its queue must hold it
        tls_port, plain = free_port(), free_port()
        os.chmod(tmp, 0o755)
        out = brokerconfig.build(store, os.path.join(tmp, "broker"), port=tls_port, plain_port=plain,
                                 workers=max(max(workers), 2), persistence=False, max_queued=1000000,
                                 bind="127.0.0.1", run_as="root" if os.geteuid() == 0 else None)
        broker = Mosquitto(config=out["conf"], port=plain).start()
        host, port, ca = ("localhost", tls_port, out["ca"]) if tls else ("127.0.0.1", plain, None)
        with open(os.path.join(out["folder"], "headend-users.json")) as f:
            he_url = with_login(f"{'mqtts' if tls else 'mqtt'}://{host}:{port}", "headend", json.load(f)["headend"])
        step = max(1, sessions // max(1, topups))
        sample = {r["meter_id"] for r in rows[::step][:topups]}
        meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                            vending.decoder_key(ks, store.meter(r["meter_id"])) if r["meter_id"] in sample else None)
                  for r in rows]
        fleet = AsyncMeterFleet(host, port, meters, ca_file=ca)
        t0 = time.monotonic()
        last = [0.0]

        def progress(n, total):
            if time.monotonic() - last[0] > 30:
                last[0] = time.monotonic()
                print(f"   connecting: {n} of {total} sessions, {time.monotonic() - t0:.0f} s", flush=True)
        res["fleet_sessions"] = fleet.start(progress=progress)
        res["fleet_connect_s"] = round(time.monotonic() - t0, 1)
        res["fleet_connects_per_s"] = round(res["fleet_sessions"] / max(0.001, res["fleet_connect_s"]), 1)
        print(f"   {res['fleet_sessions']} sessions connected in {res['fleet_connect_s']} s", flush=True)
        ids = [r["meter_id"] for r in rows if r["meter_id"] in sample]
        ts_base = 1796601600
        for n in workers:
            k = f"fleet_w{n}_"
            res[k + "load_average"] = round(os.getloadavg()[0], 1)
            serve = _Serve(url, he_url, n, out["logins_file"], ca)
            try:
                if not serve.ready(store):
                    res[k + "error"] = "workers not ready: " + " | ".join(serve.lines[-3:])
                    continue
                # the retained statuses every worker is handed at subscription: drained before timing
                _settle(store)
                res[k + "quiet_before_readings"] = serve.quiet()
                # readings: every meter publishes `readings` at once
                before = store.q1("SELECT COUNT(*) AS n FROM readings")["n"]
                pids = serve.worker_pids()
                # what the workers cost doing nothing (each polls the outbox, beats its heartbeat and checks
                # alarms five times a second), so the net CPU per reading can be told from the gross
                idle0 = (sum(_cpu_s(p) for p in pids), _pg_cpu(pg), time.monotonic())
                time.sleep(IDLE_S)
                idle1 = (sum(_cpu_s(p) for p in pids), _pg_cpu(pg), time.monotonic())
                idle_rate = [(idle1[i] - idle0[i]) / (idle1[2] - idle0[2]) for i in (0, 1)]
                res[k + "idle_cpu_pct_workers"] = round(100 * idle_rate[0], 1)
                res[k + "idle_cpu_pct_postgres"] = round(100 * idle_rate[1], 1)
                cpu0 = (sum(_cpu_s(p) for p in pids), _pg_cpu(pg), _cpu_s(broker.proc.pid), _cpu_self())
                t1 = time.monotonic()
                for r in range(readings):
                    ts_base += 60
                    fleet.publish_each(lambda fm, ts=ts_base: fm.uplink(
                        {"t": "reading", "ts": ts, "import_wh": ts % 100000, "credit": 1000}))
                total = sessions * readings
                got, ok = _wait_count(store, "SELECT COUNT(*) AS n FROM readings", before + total, 1800)
                dt = time.monotonic() - t1
                cpu1 = (sum(_cpu_s(p) for p in pids), _pg_cpu(pg), _cpu_s(broker.proc.pid), _cpu_self())
                n_read = max(1, got - before)
                res[k + "readings"] = got - before
                res[k + "readings_per_s"] = round((got - before) / dt, 1)
                for i, who in enumerate(("workers", "postgres", "mosquitto", "meters")):
                    res[k + "cpu_ms_per_reading_" + who] = round(1000 * (cpu1[i] - cpu0[i]) / n_read, 3)
                for i, who in enumerate(("workers", "postgres")):      # less what they spend idle
                    res[k + "net_cpu_ms_per_reading_" + who] = round(
                        1000 * max(0.0, cpu1[i] - cpu0[i] - idle_rate[i] * dt) / n_read, 3)
                # top-ups: one per sampled meter, vended while the workers deliver
                done0 = store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done'")["n"]
                t2 = time.monotonic()
                burst = _vend_all(store, ks, ids)
                vend_s = time.monotonic() - t2
                got, ok = _wait_count(store, "SELECT COUNT(*) AS n FROM messages WHERE state='done'",
                                      done0 + len(burst), 900)
                dt = time.monotonic() - t2
                res[k + "vends_per_s"] = round(len(burst) / vend_s, 1)
                res[k + "topups_done"] = got - done0
                res[k + "topups_per_s"] = round((got - done0) / dt, 1)
                lat = _latencies(store, burst)
                res[k + "topup_p95_s_burst"] = round(_p95(lat), 3) if lat else None
                # paced: `paced` top-ups at half the burst rate, one meter each
                rate = max(1.0, res[k + "topups_per_s"] / 2)
                paced_ids = []
                t3 = time.monotonic()
                for i, mid in enumerate(ids[:paced]):
                    due = t3 + i / rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    paced_ids.append(vending.vend_topup(store, ks, mid, kwh="1")["msg_id"])
                _wait_count(store, "SELECT COUNT(*) AS n FROM messages WHERE state='done'",
                            done0 + len(burst) + len(paced_ids), 600)
                lat = _latencies(store, paced_ids)
                res[k + "paced_rate_per_s"] = round(rate, 1)
                res[k + "topup_p95_s_paced"] = round(_p95(lat), 3) if lat else None
                res[k + "topup_p50_s_paced"] = round(sorted(lat)[len(lat) // 2], 3) if lat else None
                res[k + "rejected_uplinks"] = store.q1(
                    "SELECT COUNT(*) AS n FROM events WHERE kind='uplink_rejected'")["n"]
            finally:
                serve.stop()
            print(f"   workers {n}: " + ", ".join(f"{x[len(k):]} {v}" for x, v in res.items() if x.startswith(k)),
                  flush=True)
        res["fleet_credited_exactly_once"] = all(len({m for m, _ in fm.credited}) == len(fm.credited) for fm in meters)
        res["fleet_load_average_at_end"] = round(os.getloadavg()[0], 1)
        store.close()
    finally:
        if fleet:
            fleet.stop()
        if broker:
            broker.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
