"""Benchmark: the head-end serving 1,000 simultaneous meter sessions (lightweight fake meters, several
hundred per thread) on a real broker (mosquitto when installed, else the embedded amqtt): one top-up
per meter vended, delivered, checked by the meter with the firmware's STS decoder and answered."""
import os
import resource
import shutil
import tempfile
import threading
import time

SESSIONS = int(os.environ.get("HEADEND_BENCH_SESSIONS", "1000"))
POOLS = 4


def _raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def run(sessions=SESSIONS):
    from host_tools.headend import vending
    from host_tools.headend.broker import EmbeddedBroker
    from host_tools.headend.demo import make_fleet
    from host_tools.headend.fakemeter import FakeMeter, FakeMeterPool
    from host_tools.headend.mosquitto import Mosquitto, mosquitto_path
    from host_tools.headend.service import HeadEnd
    from host_tools.headend.store import Store

    _raise_fd_limit(4 * sessions + 256)
    tmp = tempfile.mkdtemp(prefix="headend-bench-")
    try:
        csv_path, ks_path, rows = make_fleet(tmp, sessions)
        store = Store(os.path.join(tmp, "he.db"))
        store.import_csv(csv_path)
        ks = vending.load_keystore(ks_path)
        use_mosq = bool(mosquitto_path()) and os.environ.get("HEADEND_BENCH_BROKER", "mosquitto") != "amqtt"
        broker = (Mosquitto() if use_mosq else EmbeddedBroker(db=store.path)).start()
        try:
            meters = [FakeMeter(r["meter_id"], bytes.fromhex(r["message_key_hex"]), r["broker_password"],
                                vending.decoder_key(ks, store.meter(r["meter_id"]))) for r in rows]
            pools = [FakeMeterPool("127.0.0.1", broker.port, meters[i::POOLS]) for i in range(POOLS)]
            t0 = time.monotonic()
            connected = sum(p.start(timeout=120) for p in pools)
            connect_s = time.monotonic() - t0
            he = HeadEnd(store, broker.url, retry_s=60, poll_s=0.02)
            he.start()
            stop = threading.Event()
            th = threading.Thread(target=he.serve, args=(stop,), daemon=True)
            th.start()
            time.sleep(0.5)
            t1 = time.monotonic()
            for r in rows:
                vending.vend_topup(store, ks, r["meter_id"], kwh="10")
            vend_s = time.monotonic() - t1
            end = time.monotonic() + 300
            done = 0
            while time.monotonic() < end:
                done = store.q1("SELECT COUNT(*) AS n FROM messages WHERE state='done' AND code='accepted'")["n"]
                if done >= sessions:
                    break
                time.sleep(0.05)
            total_s = time.monotonic() - t1
            stop.set()
            th.join(5)
            he.stop()
            credited = sum(len(m.credited) for m in meters)
            for p in pools:
                p.stop()
        finally:
            broker.stop()
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "headend_sessions": connected,
        "headend_broker": "mosquitto" if use_mosq else "amqtt",
        "headend_connect_s": round(connect_s, 2),
        "headend_vend_per_second": round(sessions / vend_s, 1),
        "headend_topups_delivered": done,
        "headend_topups_credited": credited,
        "headend_topups_per_second": round(done / total_s, 1),
    }


if __name__ == "__main__":
    print(run())
