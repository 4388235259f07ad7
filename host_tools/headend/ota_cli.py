"""`meterkit headend ota upload|campaign start|pause|resume|cancel|status`: firmware update campaigns
(host_tools/headend/ota.py; `headend serve` runs them and serves the chunks)."""
import os

from host_tools.cli import emit
from host_tools.errors import UsageError


def register(sub, common):
    p = sub.add_parser("ota", help="firmware updates: upload a package, run campaigns in stages")
    osub = p.add_subparsers(dest="ota_verb", metavar="OTAVERB")
    osub.required = True
    u = osub.add_parser("upload", help="check a package (signature, image hash) and keep it for campaigns")
    u.add_argument("package")
    u.add_argument("--trust", action="append", default=[], help="the manufacturer's public key (.pub.pem); "
                   "repeat for several (default: $METERKIT_OTA_TRUST)")
    common(u)
    u.set_defaults(func=cmd_upload)

    c = osub.add_parser("campaign", help="start, pause, resume or cancel a campaign")
    csub = c.add_subparsers(dest="campaign_verb", metavar="ACTION")
    csub.required = True
    s = csub.add_parser("start", help="offer an uploaded package to a group of meters, stage by stage")
    s.add_argument("package", help="the package's version or SHA-256 (prefix)")
    s.add_argument("--meters", default="all", help="all (default) or a comma-separated list of meter ids")
    s.add_argument("--share", type=float, default=100.0, help="%% of those meters (default 100)")
    s.add_argument("--stages", default="1,10,100", help="cumulative %% of the targets per stage (default 1,10,100)")
    s.add_argument("--threshold", type=float, default=95.0,
                   help="a stage proceeds only when at least this %% of the meters that tried it are valid, "
                   "and at least one is (default 95)")
    s.add_argument("--stage-timeout-s", type=float, default=86400.0,
                   help="judge a stage on the meters finished after this long (offline ones get it later); "
                   "with none finished, or all refused, the campaign halts")
    common(s)
    s.set_defaults(func=cmd_start)
    for action in ("pause", "resume", "cancel"):
        a = csub.add_parser(action, help=f"{action} a campaign")
        a.add_argument("campaign", type=int)
        common(a)
        a.set_defaults(func=cmd_action, action=action)

    st = osub.add_parser("status", help="campaigns and each meter's state (offered, downloading, installed, "
                                        "valid, rolled back, refused)")
    st.add_argument("campaign", type=int, nargs="?")
    common(st)
    st.set_defaults(func=cmd_status)


def _store(args):
    from host_tools.headend.cli import _store as open_store
    return open_store(args)


def cmd_upload(args):
    from host_tools.headend import ota
    trust = list(args.trust) or [t for t in os.environ.get("METERKIT_OTA_TRUST", "").split(os.pathsep) if t]
    if not trust:
        raise UsageError("no trusted key to check the package with", hint="pass --trust ota-signing-key.pub.pem")
    store = _store(args)
    try:
        emit(ota.upload(store, args.package, ota.trusted_keys(trust)), args.json)
    finally:
        store.close()
    return 0


def cmd_start(args):
    from host_tools.headend import ota
    try:
        stages = [float(x) for x in args.stages.split(",")]
    except ValueError:
        raise UsageError(f"--stages {args.stages!r} is not a list of numbers", hint="e.g. 1,10,100") from None
    meters = "all" if args.meters == "all" else [m.strip() for m in args.meters.split(",") if m.strip()]
    store = _store(args)
    try:
        cid = ota.start_campaign(store, args.package, meters, args.share, stages, args.threshold, args.stage_timeout_s)
        emit(ota.status(store, cid), args.json)
    finally:
        store.close()
    return 0


def cmd_action(args):
    from host_tools.headend import ota
    store = _store(args)
    try:
        emit(ota.set_state(store, args.campaign, args.action), args.json)
    finally:
        store.close()
    return 0


def cmd_status(args):
    from host_tools.headend import ota
    if args.campaign is not None and not 0 <= args.campaign < 2 ** 63:
        raise UsageError("campaign %d is not a campaign number" % args.campaign)
    store = _store(args)
    try:
        emit(ota.status(store, args.campaign), args.json)
    finally:
        store.close()
    return 0
