"""Benchmarks of the agency: the customer's home page at 50 concurrent customers (p95 target 100 ms; the
agency served by `meterkit agency serve` in its own process, as in production, each customer with a
signed-in session and a year of hourly readings), and `meterkit agency scenario` with 1,000 purchases at
30 % provider faults and 30 % link loss (targets: 0 duplicates, 0 lost; pay-to-credit p95 in simulated
seconds)."""
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

CUSTOMERS = int(os.environ.get("AGENCY_BENCH_CUSTOMERS", "50"))
REQUESTS_EACH = int(os.environ.get("AGENCY_BENCH_REQUESTS", "40"))
PURCHASES = int(os.environ.get("AGENCY_BENCH_PURCHASES", "1000"))


def _p(values, q):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))]


def _prepare(workdir, n):
    """A head-end database with n meters, a year of hourly readings each, n customers and a session each."""
    from host_tools.agency import registry, schema, security
    from host_tools.agency.history import seed_history
    from host_tools.agency.settings import Settings
    from host_tools.agency.stack import customers_csv
    from host_tools.headend.demo import make_fleet
    from host_tools.headend.store import Store
    csv_path, ks_path, rows = make_fleet(os.path.join(workdir, "fleet"), n)
    db = os.path.join(workdir, "headend.db")
    store = Store(db)
    store.import_csv(csv_path)
    schema.migrate(store)
    now = time.time()
    for i, r in enumerate(rows):
        seed_history(store, r["meter_id"], end=now - 60, days=365, seed=i + 1)
    registry.import_csv(store, customers_csv([r["meter_id"] for r in rows]), now)
    settings = Settings()
    tokens = [security.open_session(store, settings, "customer", c["id"], "bench")[0]
              for c in store.q("SELECT id FROM customers ORDER BY id")]
    store.close()
    return db, ks_path, tokens


def _wait_port(port, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("agency serve exited: " + proc.stderr.read().decode()[-2000:])
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("agency serve did not listen")


async def _get(reader, writer, request):
    """One HTTP/1.1 keep-alive request; (status, body). A small client, so that measuring costs this
    shared 2-core machine little next to the server it measures."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for h in lines[1:]:
        if h[:15].lower() == b"content-length:":
            length = int(h[15:])
    body = await reader.readexactly(length)
    return status, body


async def _load(url, tokens, each):
    host, port = url.split("//")[1].split(":")
    lat, bad = [], 0

    async def customer(token):
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, int(port))
        req = ("GET /home HTTP/1.1\r\nHost: %s:%s\r\nCookie: ag_c=%s\r\n\r\n" % (host, port, token)).encode()
        try:
            for _ in range(each):
                t0 = time.perf_counter()
                status, body = await _get(reader, writer, req)
                lat.append(time.perf_counter() - t0)
                if status != 200 or b'id="credit"' not in body:
                    bad += 1
        finally:
            writer.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(customer(t) for t in tokens))
    return lat, bad, time.perf_counter() - t0


def home_page(n=CUSTOMERS, each=REQUESTS_EACH):
    from host_tools.agency.server import free_port
    with tempfile.TemporaryDirectory(prefix="agency-bench-") as tmp:
        db, ks, tokens = _prepare(tmp, n)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "host_tools.cli", "agency", "serve", "--db", db, "--keystore", ks,
                                 "--bind", "127.0.0.1:%d" % port], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(port, proc)
            url = "http://127.0.0.1:%d" % port
            asyncio.run(_load(url, tokens[:5], 3))                    # warm up
            lat, bad, wall = asyncio.run(_load(url, tokens, each))
        finally:
            proc.terminate()
            proc.wait(10)
    return {"agency_home_customers": n, "agency_home_requests": len(lat), "agency_home_errors": bad,
            "agency_home_p50_ms": round(_p(lat, 50) * 1000, 1), "agency_home_p95_ms": round(_p(lat, 95) * 1000, 1),
            "agency_home_per_second": round(len(lat) / wall, 1)}


def purchases(n=PURCHASES):
    from host_tools.agency import scenario
    r = scenario.run(customers=n, seed=1, provider_faults=0.3, drop=0.3, speed=20.0, concurrency=50)
    return {"agency_scenario_purchases": r["purchases"], "agency_scenario_paid": r["paid"],
            "agency_scenario_credited_once": r["credited_once"], "agency_scenario_duplicates": r["duplicates"],
            "agency_scenario_lost": r["lost"], "agency_scenario_customer_errors": r["customer_errors"],
            "agency_scenario_p95_pay_to_credit_s": r["p95_pay_to_credit_s"],
            "agency_scenario_p50_pay_to_credit_s": r["p50_pay_to_credit_s"],
            "agency_scenario_faults": json.dumps(r["provider_fault_counts"], sort_keys=True),
            "agency_scenario_wall_s": r["wall_seconds"]}


def run():
    out = home_page()
    out.update(purchases())
    return out


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    res = home_page() if which == "home" else purchases() if which == "purchases" else run()
    print(json.dumps(res, indent=1))
