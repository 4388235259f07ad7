"""`meterkit agency serve|demo|scenario|import|operator`: the digital agency's verbs."""
import os
import secrets
import signal
import sys
import threading
import time

from host_tools.cli import emit
from host_tools.errors import DeviceError, UsageError


def _bind(text):
    host, _, port = (text or "").rpartition(":")
    try:
        port = int(port)
        if not host or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise UsageError("--bind %r is not HOST:PORT" % text, hint="e.g. --bind 127.0.0.1:8080") from None
    return host, port


def register(subparsers):
    from host_tools.headend.cli import default_db
    p = subparsers.add_parser("agency", help="the digital agency: customers' web app and operators' console")
    sub = p.add_subparsers(dest="agency_verb", metavar="VERB")
    sub.required = True

    s = sub.add_parser("serve", help="serve the agency over the head-end's store")
    s.add_argument("--db", default=default_db(), help="head-end SQLite database (default %(default)s)")
    s.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s)")
    s.add_argument("--broker", help="also run the head-end's delivery on this broker (mqtt://...); without it, "
                                    "`meterkit headend serve` must run beside")
    s.add_argument("--keystore", default=os.environ.get("METERKIT_KEYSTORE"),
                   help="vending settings JSON (kt, base_date, hsm); the vending key is in the PKCS#11 module")
    s.add_argument("--provider-url", help="mobile-money provider base URL (default: start the simulated one)")
    s.add_argument("--provider-key", default=os.environ.get("METERKIT_PROVIDER_KEY"))
    s.add_argument("--provider-secret", default=os.environ.get("METERKIT_PROVIDER_SECRET"),
                   help="the secret the provider signs callbacks with")
    s.add_argument("--public-url", help="the URL the provider calls back and returns customers to "
                                        "(default http://BIND)")
    s.add_argument("--sms-gateway", help="SMS gateway base URL (POST /sms); default: print messages")
    s.add_argument("--smtp", help="HOST:PORT of the SMTP server for e-mail")
    s.add_argument("--whatsapp-url", help="WhatsApp Business API base URL")
    s.add_argument("--whatsapp-phone-id", default="0")
    s.add_argument("--whatsapp-token", default=os.environ.get("METERKIT_WHATSAPP_TOKEN", ""))
    s.add_argument("--duration-s", type=float, help="stop after this long")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="a simulated fleet (one real-firmware meter), head-end, payment provider, "
                                    "gateways and SMTP, and the agency")
    d.add_argument("--bind", default="127.0.0.1:8080")
    d.add_argument("--meters", type=int, default=4, help="lightweight meters beside the firmware one (default 4)")
    d.add_argument("--duration-s", type=float, help="stop after this long (default: until Ctrl-C)")
    d.add_argument("--json", action="store_true", help="print the addresses and sign-ins as one JSON object")
    d.set_defaults(func=cmd_demo)

    sc = sub.add_parser("scenario", help="N customers buy credit over HTTP while the provider and the link misbehave")
    sc.add_argument("--customers", type=int, default=50)
    sc.add_argument("--seed", type=int, default=1)
    sc.add_argument("--provider-faults", type=float, default=0.3, help="share of payments whose callback is late, "
                                                                       "doubled, reordered or never sent (default 0.3)")
    sc.add_argument("--drop", type=float, default=0.3, help="meters' link: share of downlinks and of results lost "
                                                            "(default 0.3)")
    sc.add_argument("--speed", type=float, default=20.0, help="time acceleration (default 20)")
    sc.add_argument("--concurrency", type=int, default=16, help="customers at once (default 16)")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_scenario)

    i = sub.add_parser("import", help="import customers from CSV (name,phone,meters,whatsapp,email,language,"
                                      "channels,consent,arrears_minor,arrears_share_bp)")
    i.add_argument("csv")
    i.add_argument("--db", default=default_db())
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_import)

    o = sub.add_parser("operator", help="create or update an operator account (password from "
                                        "$METERKIT_OPERATOR_PASSWORD or asked)")
    o.add_argument("username")
    o.add_argument("--role", choices=("viewer", "agent", "admin"), default="agent")
    o.add_argument("--db", default=default_db())
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_operator)


def _store(db):
    from host_tools.agency import schema
    from host_tools.headend.store import Store
    if not os.path.exists(db):
        raise UsageError("no head-end database at %s" % db, hint="import meters first: meterkit headend import FILE.csv")
    store = Store(db)
    schema.migrate(store)
    return store


def cmd_import(args):
    from host_tools.agency import registry
    store = _store(args.db)
    try:
        text = open(args.csv, encoding="utf-8-sig").read()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (args.csv, e.strerror)) from None
    except UnicodeDecodeError as e:
        raise UsageError("%s is not UTF-8 text (byte %d)" % (args.csv, e.start), hint="save the sheet as CSV UTF-8") from None
    try:
        n = registry.import_csv(store, text, time.time())
    except registry.RegistryError as e:
        raise UsageError("nothing imported: %s" % e, hint="columns: " + ",".join(registry.CSV_COLUMNS)) from None
    emit({"imported": n, "db": args.db}, args.json)
    return 0


def cmd_operator(args):
    from host_tools.agency import security
    store = _store(args.db)
    pw = os.environ.get("METERKIT_OPERATOR_PASSWORD")
    if pw is None:
        import getpass
        try:
            pw = getpass.getpass("password for %s: " % args.username)
        except EOFError:            # no terminal and nothing on stdin
            raise UsageError("no password given", hint="type it at the prompt or set METERKIT_OPERATOR_PASSWORD") from None
    try:
        security.add_operator(store, args.username, pw, args.role, time.time())
    except ValueError as e:
        raise UsageError(str(e)) from None
    emit({"operator": args.username, "role": args.role}, args.json)
    return 0


def _wait(duration_s):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait(duration_s) if duration_s else stop.wait()
    except KeyboardInterrupt:
        pass


def cmd_serve(args):
    from host_tools.agency.agency import Agency
    from host_tools.agency.channels.console import ConsoleChannel
    from host_tools.agency.channels.email import SmtpEmail
    from host_tools.agency.channels.sms import GatewaySms
    from host_tools.agency.channels.whatsapp import WhatsAppCloud
    from host_tools.agency.payments.mobilemoney import MobileMoney
    from host_tools.agency.server import ServerThread
    from host_tools.agency.settings import Settings
    from host_tools.agency.web.app import create_app
    from host_tools.headend import vending
    host, port = _bind(args.bind)
    ks = vending.load_keystore(args.keystore)
    store = _store(args.db)
    settings = Settings.from_env(callback_base=args.public_url or "http://%s:%d" % (host, port))
    parts = []
    sim = None
    if args.provider_url:
        if not (args.provider_key and args.provider_secret):
            raise UsageError("--provider-url needs --provider-key and --provider-secret")
        provider = MobileMoney(args.provider_url, args.provider_key, args.provider_secret)
    else:
        from host_tools.agency.payments.simprovider import SimProvider
        key, secret = secrets.token_hex(8), secrets.token_hex(16)
        sim = SimProvider(key, secret)
        parts.append(ServerThread(sim.app, host=host, name="sim-provider").start())
        provider = MobileMoney(parts[-1].url, key, secret)
    sms = GatewaySms(args.sms_gateway) if args.sms_gateway else ConsoleChannel("sms")
    email = None
    if args.smtp:
        h, p = _bind(args.smtp)
        email = SmtpEmail(h, p)
    wa = WhatsAppCloud(args.whatsapp_url, args.whatsapp_phone_id, args.whatsapp_token) if args.whatsapp_url else None
    agency = Agency(store, settings, provider, ks, sms=sms, email=email, whatsapp=wa)
    he = None
    stop = threading.Event()
    if args.broker:
        from host_tools.headend.service import HeadEnd
        he = HeadEnd(store, args.broker).start()
        threading.Thread(target=he.serve, args=(stop,), daemon=True).start()
    server = ServerThread(create_app(agency), host=host, port=port, name="agency").start()
    agency.start_worker()
    print("agency serving on http://%s:%d (db %s)%s%s" % (
        host, port, args.db, "; simulated payment provider on " + parts[0].url if sim else "",
        "; head-end delivery on " + args.broker if he else ""), flush=True)
    try:
        _wait(args.duration_s)
    finally:
        stop.set()
        agency.stop_worker()
        server.stop()
        if he:
            he.stop()
        for p in parts:
            p.stop()
        if sim:
            sim.close()
        store.close()
    return 0


def cmd_demo(args):
    from host_tools.agency.demo import DemoWorld
    host, port = _bind(args.bind)
    if not 0 <= args.meters <= 200:
        raise UsageError("--meters must be 0..200")

    def show(channel, to, text):
        if not args.json:
            print("  [%s to %s] %s" % (channel, to, text), flush=True)
    if not args.json:
        print("starting: a real-firmware meter (MicroPython, simulated modem, broker, head-end), %d more meters, "
              "payment provider, gateways, SMTP, agency..." % args.meters, flush=True)
    try:
        world = DemoWorld(fake_meters=args.meters, host=host, port=port, on_sms=show).start()
    except OSError as e:
        raise DeviceError("the demo could not start: %s" % e, hint="is %s free?" % args.bind) from None
    try:
        info = dict(world.sign_ins(), url=world.url, operator_console=world.url + "/op/signin",
                    smtp_port=world.stack.smtp.port, provider=world.stack.provider_server.url)
        if args.json:
            emit(info, True)
        else:
            print("\nagency: %s   (operator console: %s)" % (world.url, info["operator_console"]))
            print("customers sign in with their phone; the code arrives by SMS, printed here. Try %s "
                  "(its meter %s runs the real firmware)." % (info["firmware_meter_customer"], info["firmware_meter"]))
            print("operators: " + ", ".join("%s / %s" % kv for kv in info["operators"].items()))
            print("Ctrl-C to stop.", flush=True)
        _wait(args.duration_s)
    finally:
        world.close()
    return 0


def cmd_scenario(args):
    from host_tools.agency import scenario
    prog = None
    progress = log = None
    if not args.json:
        from rich.console import Console
        from rich.progress import Progress
        prog = Progress(console=Console(stderr=True), transient=True)
        prog.start()
        task = prog.add_task("purchases", total=args.customers)

        def progress(done, total):
            prog.update(task, completed=done)

        def log(text):
            prog.console.print(text)
    try:
        rep = scenario.run(customers=args.customers, seed=args.seed, provider_faults=args.provider_faults,
                           drop=args.drop, speed=args.speed, concurrency=args.concurrency, progress=progress, log=log)
    finally:
        if prog:
            prog.stop()
    emit(rep, args.json)
    ok = rep["duplicates"] == 0 and rep["lost"] == 0 and rep["customer_errors"] == 0
    if not ok and not args.json:
        sys.stderr.write("meterkit agency scenario: exactly-once NOT met (duplicates/lost/customer_errors)\n")
    return 0 if ok else 1
