"""`meterkit headend serve|import|topup|meters|events|statements|command|sms-command|reconcile|backup|restore|
audit`: the utility operator's verbs, each recorded in the audit with its operator (audit.py).

`serve` is the only process on MQTT; the other verbs work through the shared SQLite database: `topup`
vends a token and queues it, `serve` delivers it and records the meter's result, `topup --wait` waits
for that result in the database."""
import argparse
import os
import signal
import sys
import threading
import time

from host_tools.cli import emit
from host_tools.errors import DeviceError, UsageError
from host_tools.headend import reports, silence, vending
from host_tools.headend.store import Store
from host_tools.paths import data_dir

HEARTBEAT_STALE_S = 5.0


def number(lo, hi, integer=False, unit="s"):
    """An argparse type: a finite number within lo..hi (nan, inf, negatives and absurd values are
    refused with the range, never echoed back as a float)."""
    import argparse
    import math

    def parse(text):
        shown = text if len(text) <= 16 else text[:13] + "..."
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown!r} is not {'a whole number' if integer else 'a number'}")
        if not math.isfinite(v) or not lo <= v <= hi:
            if unit == "port":
                raise argparse.ArgumentTypeError(f"{shown!r} is not a port (1..65535)")
            raise argparse.ArgumentTypeError(f"{shown!r} is outside {lo:g}..{hi:g} {unit}".rstrip())
        return v
    return parse


def default_db():
    """$METERKIT_HEADEND_DB, else headend.db in $METERKIT_DATA or the working folder (never the checkout)."""
    return os.environ.get("METERKIT_HEADEND_DB") or str(data_dir() / "headend.db")


def register(subparsers):
    p = subparsers.add_parser("headend", help="the utility's head-end: registry, vending, delivery, telemetry")
    sub = p.add_subparsers(dest="headend_verb", metavar="VERB")
    sub.required = True

    def common(sp, json_flag=True):
        sp.add_argument("--db", default=default_db(), help="head-end database: a SQLite file (default headend.db in "
                                                           "$METERKIT_DATA or the working folder, or "
                                                           "$METERKIT_HEADEND_DB) or postgresql://user@host:port/db")
        sp.add_argument("--operator", help="who runs this verb, for the audit (default $METERKIT_OPERATOR or "
                                           "the OS user)")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("serve", help="run the head-end service on MQTT (embedded broker unless --broker)")
    common(s, json_flag=False)
    s.add_argument("--broker", default=os.environ.get("METERKIT_HEADEND_BROKER"),
                   help="mqtt[s]://[user:password@]host:port of the broker (or $METERKIT_HEADEND_BROKER; default: "
                        "start an embedded one)")
    s.add_argument("--ca-file", help="the CA certificate of an mqtts:// broker (broker-config's ca.crt)")
    s.add_argument("--broker-port", type=number(1, 65535, integer=True, unit="port"),
                   help="the embedded broker's port (default: a free one)")
    s.add_argument("--json", action="store_true", help="print one JSON object when stopped")
    s.add_argument("--retry-s", type=number(0.1, 86400), default=30.0,
                   help="resend a downlink with no result after this long (doubling, up to --retry-max-s)")
    s.add_argument("--retry-max-s", type=number(0.1, 7 * 86400), default=600.0)
    s.add_argument("--duration-s", type=number(0.1, 10 * 365 * 86400), help="stop after this long (default: until Ctrl-C)")
    s.add_argument("--fleet-silence-s", type=number(10, 7 * 86400), default=silence.FLEET_SILENCE_S,
                   help="alarm when no uplink arrives from any meter for this long (default %(default)g)")
    s.add_argument("--meter-silence-s", type=number(10, 90 * 86400), default=silence.METER_SILENCE_S,
                   help="alarm when one meter sends nothing for this long (default %(default)g)")
    s.add_argument("--workers", type=number(1, 64, integer=True, unit=""), default=1, help="run N worker processes sharing the uplinks "
                   "(MQTT v5 shared subscription) and the outbox; needs --broker")
    s.add_argument("--broker-logins", metavar="FILE", help="with --workers N: broker-config's headend-workers.json; "
                   "worker i logs in as headend-w<i>, the workers share a secret group (needed on broker-config's "
                   "mosquitto, which binds client id to user name)")
    s.add_argument("--worker-id", type=int, help=argparse.SUPPRESS)   # one worker of --workers N
    s.set_defaults(func=cmd_serve)
    from host_tools.headend import ota_cli     # `headend ota ...`: packages and campaigns
    ota_cli.register(sub, common)

    bc = sub.add_parser("broker-config", help="write mosquitto's configuration from the store: a user per meter, "
                                               "ACLs to its own topics, client id = user, TLS with a utility CA")
    common(bc)
    bc.add_argument("--out", required=True, help="folder for mosquitto.conf, passwd, acl, the CA and server "
                                                 "certificate (the CA is kept on later runs)")
    bc.add_argument("--hostname", action="append", metavar="NAME",
                    help="a name or IP address meters use to reach the broker (repeat; default localhost, 127.0.0.1)")
    bc.add_argument("--port", type=number(1, 65535, integer=True, unit="port"), default=8883, help="the mqtts port")
    bc.add_argument("--plain-port", type=number(1, 65535, integer=True, unit="port"),
                    help="also a plain listener on 127.0.0.1 for a head-end on the same host")
    bc.add_argument("--workers", type=number(1, 64, integer=True, unit=""), default=1,
                    help="head-end users to make: headend, and for N > 1 headend-w0..headend-w<N-1>, one per worker")
    bc.add_argument("--run-as", metavar="USER", help="the `user` mosquitto drops to when started as root "
                                                     "(default: mosquitto's own)")
    bc.set_defaults(func=cmd_broker_config)

    i = sub.add_parser("import", help="import meters from a provisioning CSV")
    common(i)
    i.add_argument("csv", help="CSV with columns meter_id,pan,serial,sgc,ti,krn,message_key_hex,broker_password")
    i.set_defaults(func=cmd_import)

    t = sub.add_parser("topup", help="vend a credit token for a meter and queue it for delivery")
    common(t)
    t.add_argument("meter", help="meter id")
    what = t.add_mutually_exclusive_group(required=True)
    what.add_argument("--kwh", help="energy credit in kWh (STS electricity token, rounded up to 0.1 kWh)")
    what.add_argument("--amount", help="money credit in currency units (STS currency token, rounded up to 0.00001)")
    t.add_argument("--keystore", default=os.environ.get("METERKIT_KEYSTORE"),
                   help="vending settings JSON (kt, base_date, hsm; or $METERKIT_KEYSTORE); the vending key is in "
                        "the PKCS#11 module: see `meterkit keys`")
    t.add_argument("--wait", type=number(0, 86400), metavar="S", help="wait up to S seconds for the meter's result")
    t.add_argument("--request-key", metavar="KEY", help="idempotency key (e.g. the payment reference): the same "
                                                      "key again returns the first vend, never a second token")
    t.set_defaults(func=cmd_topup)

    stt = sub.add_parser("status", help="is the head-end serving, when did an uplink last arrive, which alarms are open")
    common(stt)
    stt.set_defaults(func=cmd_status)

    m = sub.add_parser("meters", help="list registered meters")
    common(m)
    m.set_defaults(func=cmd_meters)

    e = sub.add_parser("events", help="a meter's event log (head-end, broker and meter events)")
    common(e)
    e.add_argument("meter")
    e.add_argument("--limit", type=number(1, 10 ** 7, integer=True, unit="events"), default=200)
    e.set_defaults(func=cmd_events)

    st = sub.add_parser("statements", help="monthly statements computed from a meter's readings")
    common(st)
    st.add_argument("meter")
    st.set_defaults(func=cmd_statements)

    c = sub.add_parser("command", help="queue a signed management command for a meter (delivered by `serve`)")
    common(c)
    c.add_argument("meter")
    c.add_argument("cmd", help="relay_open, relay_close, set_config, set_time, get_readings, get_statement, "
                               "clear_tamper")
    c.add_argument("--args", default="{}", help="the command's arguments as a JSON object, e.g. for "
                                                "set_config '{\"prepaid\": {\"tariff\": {...}}}'")
    c.add_argument("--args-file", help="read the JSON arguments from this file instead")
    c.add_argument("--wait", type=number(0, 86400), metavar="S", help="wait up to S seconds for the meter's result")
    c.set_defaults(func=cmd_command)

    sc = sub.add_parser("sms-command", help="sign a utility command for a meter, to send by SMS from a "
                                            "registered number (when its data link is down)")
    common(sc)
    sc.add_argument("meter")
    sc.add_argument("cmd", help="relay_open, relay_close, set_time, get_readings, get_statement, clear_tamper")
    sc.add_argument("args", nargs="*", metavar="KEY=VALUE", help="arguments, e.g. unix=1767571200")
    sc.set_defaults(func=cmd_sms_command)

    from host_tools.headend import audit, backup, debt, reconcile
    debt.register(sub, common)
    reconcile.register(sub, common)
    backup.register(sub, common)
    audit.register(sub, common)
    # every verb records who ran it, on what, when, and how it ended
    for verb, parser in sub.choices.items():
        parser.set_defaults(func=audit.audited(verb, parser.get_default("func"), _audit_store))


def _audit_store(args):
    from host_tools.headend.db import is_url
    if not is_url(args.db) and not os.path.exists(args.db):
        raise UsageError("no store")
    return Store(args.db)


def _store(args, must_exist=True):
    from host_tools.headend.db import is_url
    if is_url(args.db):
        return Store(args.db)
    if must_exist and not os.path.exists(args.db):
        raise UsageError(f"no head-end database at {args.db}",
                         hint="import meters first (`meterkit headend import FILE.csv --db ...`) or give --db")
    os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
    return Store(args.db)


def _check_wait(wait):
    import math
    if wait is not None and (not math.isfinite(wait) or wait < 0):
        raise UsageError(f"--wait {wait} must be a number of seconds >= 0", hint="e.g. --wait 30")


def service_running(store):
    hb = store.service("heartbeat")
    return hb is not None and time.time() - float(hb) < HEARTBEAT_STALE_S


def cmd_serve(args):
    from host_tools.headend.broker import EmbeddedBroker
    from host_tools.headend.service import HeadEnd
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers {args.workers} must be 1..64", hint="about one per core, e.g. --workers 4")
    if args.workers > 1:
        return _serve_workers(args)
    store = _store(args, must_exist=False)
    broker = None
    url = args.broker
    if args.broker_port is not None:
        if url:
            raise UsageError("--broker-port is for the embedded broker", hint="with --broker, the port is in its URL")
        if not 1 <= args.broker_port <= 65535:
            raise UsageError(f"--broker-port {args.broker_port} is not a port", hint="1..65535, e.g. 1883")
    if not url:
        broker = EmbeddedBroker(db=args.db, port=args.broker_port).start()
        url = broker.url
    if args.retry_max_s < args.retry_s:
        raise UsageError(f"--retry-max-s {args.retry_max_s:g} is below --retry-s {args.retry_s:g}",
                         hint="the longest wait between resends must be at least the first")
    if args.ca_file and not os.path.exists(args.ca_file):
        raise UsageError(f"no CA certificate at {args.ca_file}", hint="broker-config writes it as ca.crt in --out")
    common = dict(retry_s=args.retry_s, retry_max_s=args.retry_max_s, ca_file=args.ca_file,
                  fleet_silence_s=args.fleet_silence_s, meter_silence_s=args.meter_silence_s)
    if args.worker_id is not None:
        from host_tools.headend import workers
        if not url:
            raise UsageError("a worker needs --broker")
        he = HeadEnd(store, url, client_id=workers.worker_client_id(args.worker_id), shared_group=workers.share_group(),
                     seq_window=workers.SEQ_WINDOW, **common)
    else:
        he = HeadEnd(store, url, **common)
    from host_tools.headend import ota as _ota
    updates = _ota.attach(he)                  # firmware update campaigns and chunks (docs/ota.md)
    try:
        he.start()
    except DeviceError:
        if broker:
            broker.stop()
        raise
    scheme = "mqtts://" if not broker and url.lower().startswith(("mqtts://", "ssl://")) else "mqtt://"
    shown = scheme + (broker.address if broker else url.split("@")[-1]).split("://")[-1]
    # Recorded so `meterkit sim start --headend DB` finds the broker its meters must reach.
    store.set_service("broker_address", shown)
    if not args.json:
        print(f"head-end serving on {shown} ({'embedded amqtt broker' if broker else 'external broker'}), "
              f"db {args.db}; Ctrl-C stops", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    if args.duration_s:
        timer = threading.Timer(args.duration_s, stop.set)
        timer.daemon = True
        timer.start()
    beat = None
    if args.worker_id is not None:
        key = f"heartbeat:w{args.worker_id}"        # each worker's own, beside the service's

        def beat(h):
            store.set_service(key, h.clock())
    try:
        def on_tick(h):
            if beat is not None:
                beat(h)
            updates.tick()
        he.serve(stop, on_tick=on_tick)
    except KeyboardInterrupt:
        pass
    finally:
        he.stop()
        store.set_service("heartbeat", 0)
        if broker:
            broker.stop()
    if args.json:
        emit({"stopped": True, "broker": shown, "db": args.db, "counts": he.counts}, True)
    else:
        c = he.counts
        who = "head-end" if args.worker_id is None else f"head-end worker {args.worker_id}"
        # one write with its newline: workers share their supervisor's output, and a line written in two
        # pieces could be cut by another worker's
        print(who + " stopped: %d downlink(s) sent, %d result(s), %d rejected uplink(s), %d reading(s), "
              "%d event(s) received, %d broker disconnect(s)\n" % (
                  c.get("sent", 0), c.get("results", 0), c.get("rejected", 0), c.get("readings", 0),
                  c.get("events", 0), c.get("disconnects", 0)), end="", flush=True)
    return 0


def cmd_broker_config(args):
    from host_tools.headend import brokerconfig
    store = _store(args)
    out = brokerconfig.build(store, args.out, hostnames=args.hostname or ["localhost", "127.0.0.1"], port=args.port,
                             plain_port=args.plain_port, workers=args.workers, run_as=args.run_as)
    if args.json:
        emit(out, True)
    else:
        print(f"mosquitto configuration for {out['meters']} meter(s) and {len(out['headend_users'])} head-end "
              f"user(s) in {out['folder']}")
        if out["skipped"]:
            print(f"NOT given a login (bad meter ids, fix and re-import): {', '.join(map(repr, out['skipped']))}")
        print(f"run:   mosquitto -c {out['conf']}   (after changes: kill -HUP <its pid>)")
        workers = (f" --workers {args.workers} --broker-logins {out['logins_file']}" if args.workers > 1 else "")
        print(f"serve: meterkit headend serve --db {args.db} --broker \"$(cat {out['url_file']})\" --ca-file {out['ca']}"
              + workers)
        print(f"meters get {out['ca']} (the utility CA) and port {out['port']} with their keys")


def _serve_workers(args):
    from host_tools.headend import audit, workers
    from host_tools.headend.db import redact
    _store(args, must_exist=False).close()        # created and migrated once, before the workers start
    args.operator_name = audit.operator_name(args.operator)
    sup = workers.Supervisor(args, args.workers)
    if not sup.logins and not args.json:
        print(f"note: all {args.workers} workers log in as the --broker URL's user; a broker that binds the client "
              f"id to the user (broker-config's) needs --broker-logins headend-workers.json", flush=True)
    sup.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    if args.duration_s:
        timer = threading.Timer(args.duration_s, stop.set)
        timer.daemon = True
        timer.start()
    if not args.json:
        group = workers.GROUP if not sup.logins else "<secret>"
        print(f"head-end: {args.workers} workers on {args.broker.split('@')[-1]} (shared subscription "
              f"$share/{group}/...), db {redact(args.db)}; Ctrl-C stops", flush=True)
    try:
        sup.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        codes = sup.stop()
    args.audit["detail"] = {"workers": args.workers, "restarts": sup.restarts}
    if args.json:
        emit({"stopped": True, "workers": args.workers, "restarts": sup.restarts, "exit_codes": codes}, True)
    else:
        print(f"head-end stopped: {args.workers} workers, {sup.restarts} restart(s)", flush=True)
    return 0


def cmd_import(args):
    store = _store(args, must_exist=False)
    n = store.import_csv(args.csv)
    args.audit["detail"] = {"imported": n}
    if args.json:
        emit({"imported": n, "db": args.db}, True)
    else:
        print(f"imported {n} meter(s) into {args.db}")
    return 0


def cmd_topup(args):
    _check_wait(args.wait)
    ks = vending.load_keystore(args.keystore)
    store = _store(args)
    v = vending.vend_topup(store, ks, args.meter, kwh=args.kwh, amount=args.amount, request_key=args.request_key)
    args.audit.update(msg_id=v["msg_id"], detail={"tid": v["tid"], "what": v["what"], "quantity": v["quantity"],
                                                  "repeat": v["repeat"]})
    out = dict(v, state="queued")
    running = service_running(store)
    if args.wait is not None:
        end = time.monotonic() + args.wait
        while time.monotonic() < end:
            r = store.q1("SELECT state, code, attempts FROM messages WHERE msg_id=?", (v["msg_id"],))
            if r["state"] == "done":
                out.update(state="done", code=r["code"], attempts=r["attempts"])
                break
            time.sleep(0.1)
        else:
            r = store.q1("SELECT state, attempts FROM messages WHERE msg_id=?", (v["msg_id"],))
            why = ("the head-end service is not running: start `meterkit headend serve`" if not service_running(store)
                   else "the meter has not answered: it stays queued and is resent until it does")
            raise DeviceError(f"no result for token {v['msg_id']} to {args.meter} within {args.wait} s "
                              f"({r['attempts']} delivery attempt(s))", hint=why)
    elif not running:
        out["note"] = "queued; delivered when `meterkit headend serve` runs"
    if args.json:
        emit(out, True)
    else:
        _print_topup(out)
    args.audit["refused"] = out.get("code", "accepted") != "accepted"
    return 0 if out.get("code", "accepted") == "accepted" else 1


def _quantity_text(what, q):
    from host_tools import render
    return render.token_amount(what, q)


def _print_topup(out):
    tok = out["token"]
    w = sys.stdout.write
    w(f"token {' '.join(tok[i:i + 4] for i in range(0, 20, 4))}: {_quantity_text(out['what'], out['quantity'])} "
      f"for meter {out['meter']} (TID {out['tid']}, message {out['msg_id']})\n")
    if out["state"] == "done":
        verdict = "accepted" if out["code"] == "accepted" else f"REFUSED ({out['code']})"
        w(f"the meter answered: {verdict}, after {out['attempts']} delivery attempt(s)\n")
    else:
        w(out.get("note") or "queued: the head-end delivers it\n")
        if out.get("note"):
            w("\n")


def cmd_status(args):
    """Liveness beyond the heartbeat: the newest uplink from any meter and the open silence alarms, so a
    head-end that still ticks but hears nothing (its session taken over, a broker that stopped
    routing) shows as such. Exit 1 while an alarm is open, so monitoring can poll it."""
    store = _store(args)
    hb = store.service("heartbeat")
    newest = store.q1("SELECT MAX(last_uplink) AS t, COUNT(*) AS n, SUM(last_uplink IS NOT NULL) AS heard FROM meters")
    alarms = silence.open_alarms(store)
    out = {"serving": service_running(store), "heartbeat": float(hb) if hb else None,
           "broker": store.service("broker_address"), "meters": newest["n"], "meters_heard": newest["heard"] or 0,
           "last_uplink": newest["t"], "alarms": alarms}
    if args.json:
        emit(out, True)
    else:
        from host_tools import render
        print(f"head-end: {'serving' if out['serving'] else 'NOT serving'} (heartbeat "
              f"{render.local_time(out['heartbeat']) if out['heartbeat'] else 'never'}), broker {out['broker'] or '-'}")
        print(f"meters: {out['meters']} registered, {out['meters_heard']} heard from; last uplink "
              f"{render.local_time(out['last_uplink']) if out['last_uplink'] else 'never'}")
        if not alarms:
            print("alarms: none")
        for a in alarms:
            who = a["meter_id"] or "whole fleet"
            print(f"ALARM {a['kind']} ({who}) since {render.local_time(a['raised'])}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(a["data"].items())))
    return 1 if alarms else 0


def cmd_meters(args):
    store = _store(args)
    silent = {a["meter_id"] for a in silence.open_alarms(store) if a["kind"] == "meter_silent"}
    rows = []
    for r in store.meters():
        last = store.last_reading(r["meter_id"]) or {}
        rows.append({"meter_id": r["meter_id"], "serial": r["serial"], "status": r["status"],
                     "last_seen": r["last_seen"], "down_seq": r["down_seq"], "up_seq": r["up_seq"],
                     "undelivered": r["undelivered"], "credit": last.get("credit"), "supply": last.get("supply"),
                     "tamper": last.get("tamper") or [], "silent": r["meter_id"] in silent})
    if args.json:
        emit({"meters": rows, "count": len(rows)}, True)
        return 0
    if not rows:
        print(f"no meters registered in {args.db} (import them with `meterkit headend import FILE.csv`)")
        return 0
    from rich.table import Table

    from host_tools import render
    t = Table(box=None, pad_edge=False)
    for col in ("meter", "serial", "status", "last seen", "credit", "supply", "queued", "tamper"):
        t.add_column(col, justify="right" if col in ("credit", "queued") else "left",
                     no_wrap=col in ("meter", "serial"), min_width=18 if col == "meter" else None)
    for r in rows:
        t.add_row(r["meter_id"], str(r["serial"]), r["status"] or "-", render.local_time(r["last_seen"]),
                  render.money(r["credit"]) if r["credit"] is not None else "-", r["supply"] or "-",
                  str(r["undelivered"]), " ".join((["SILENT"] if r["silent"] else []) +
                                                  (["TAMPER: " + ", ".join(r["tamper"])] if r["tamper"] else [])))
    con = render.console()
    con.print(t)
    con.print(f"{len(rows)} meter(s)")
    return 0


def cmd_events(args):
    store = _store(args)
    store.meter(args.meter)
    evs = store.events(args.meter, args.limit)
    if args.json:
        emit({"meter": args.meter, "events": evs}, True)
        return 0
    if not evs:
        print(f"no events for meter {args.meter} yet")
        return 0
    from rich.table import Table

    from host_tools import render
    # the unit of the meter's credit figures: money, or Wh on a meter in kWh mode (as its readings say)
    in_kwh = (store.last_reading(args.meter) or {}).get("mode") == "kwh"
    t = Table(box=None, pad_edge=False)
    for col in ("time", "from", "event", "detail"):
        t.add_column(col)
    for e in evs:
        t.add_row(render.local_time(e["at"]), e["source"], e["kind"], render.detail(e["data"], in_kwh))
    render.console().print(t)
    return 0


def cmd_statements(args):
    store = _store(args)
    sts = reports.monthly_statements(store, args.meter)
    if args.json:
        emit({"meter": args.meter, "statements": sts}, True)
        return 0
    store.meter(args.meter)
    if not sts:
        print(f"no statements for meter {args.meter} yet: they are built from the readings it reports")
        return 0
    from rich.table import Table

    from host_tools import render
    t = Table(box=None, pad_edge=False)
    for col in ("month", "imported", "readings", "top-ups", "meter's own: imported", "cost"):
        t.add_column(col, justify="left" if col == "month" else "right")
    for s in sts:
        own = s.get("meter_statement") or {}
        t.add_row(s["month"], render.kwh(s["import_wh"]) if s["import_wh"] is not None else "-", str(s["readings"]),
                  str(s["topups_accepted"]), render.kwh(own["import_wh"]) if own.get("import_wh") is not None else "-",
                  render.money(own["cost"]) if own.get("cost") is not None else "-")
    render.console().print(t)
    return 0


def cmd_sms_command(args):
    from host_tools.headend import smscmd
    store = _store(args)
    out = smscmd.make(store, args.meter, args.cmd, args.args)
    args.audit["detail"] = {"sms_seq": out["seq"]}
    if args.json:
        emit(out, True)
    else:
        sys.stdout.write(out["text"] + "\n")
        sys.stderr.write(f"(command #{out['seq']} for meter {args.meter}: send this text from one of the "
                         "utility's registered numbers)\n")
    return 0


MANAGEMENT = ("relay_open", "relay_close", "set_config", "set_time", "get_readings", "get_statement", "clear_tamper")


def cmd_command(args):
    import json
    if args.cmd not in MANAGEMENT:
        raise UsageError(f"unknown command {args.cmd!r}", hint="one of: " + ", ".join(MANAGEMENT))
    try:
        text = open(args.args_file).read() if args.args_file else args.args
        cargs = json.loads(text)
    except OSError as e:
        raise UsageError(f"cannot read {args.args_file}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"the arguments are not JSON: {e}", hint="e.g. --args '{\"unix\": 1767571200}'") from None
    if not isinstance(cargs, dict):
        raise UsageError("the arguments must be a JSON object")
    _check_wait(args.wait)
    store = _store(args)
    msg_id = vending.queue_command(store, args.meter, args.cmd, cargs)
    args.audit["msg_id"] = msg_id
    out = {"msg_id": msg_id, "meter": args.meter, "cmd": args.cmd, "state": "queued"}
    if args.wait is not None:
        end = time.monotonic() + args.wait
        while time.monotonic() < end:
            r = store.q1("SELECT state, code, detail, attempts FROM messages WHERE msg_id=?", (msg_id,))
            if r["state"] == "done":
                out.update(state="done", code=r["code"], detail=json.loads(r["detail"] or "{}"),
                           attempts=r["attempts"])
                break
            time.sleep(0.1)
        else:
            why = ("the head-end service is not running: start `meterkit headend serve`" if not service_running(store)
                   else "the meter has not answered: it stays queued and is resent until it does")
            raise DeviceError(f"no result for {msg_id} to {args.meter} within {args.wait} s", hint=why)
    elif not service_running(store):
        out["note"] = "queued; delivered when `meterkit headend serve` runs"
    if args.json:
        emit(out, True)
    elif out["state"] == "done":
        verdict = "done" if out["code"] == "done" else f"REFUSED ({out['code']})"
        print(f"{args.cmd} for meter {args.meter}: {verdict} after {out['attempts']} delivery attempt(s)")
        if out.get("detail"):
            from host_tools import render
            render.show(out["detail"])
    else:
        print(f"{args.cmd} for meter {args.meter} queued as {msg_id}" +
              ("; delivered when `meterkit headend serve` runs" if out.get("note") else ""))
    args.audit["refused"] = out.get("code", "done") != "done"
    return 0 if out.get("code", "done") == "done" else 1
