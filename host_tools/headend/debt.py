"""Arrears sent to a meter as debt: a signed `load_debt` command (docs/protocol.md) queued in the outbox
like every management command, with a message id derived from the meter and the load's reference, so
queuing the same load again queues nothing (and the meter loads a reference once, whatever arrives).
The meter recovers the debt from later top-ups by the arrears share; it never opens the supply for it.
`meterkit headend debt METER --amount A --ref R` is its CLI; the meter's answer is recorded on the message
like any command's result (code `done` with {applied, duplicate, debt, arrears, credit}, or `bad_args`)."""
import json
import re
import time
from decimal import Decimal, InvalidOperation

from host_tools.errors import UsageError

AMOUNT_MAX_MINOR = 100000000        # what the meter takes in one load (firmware/app/actionpath.py DEBT_MAX)
REF = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")


def minor_units(text, minor_per_major=100):
    """Minor units of an amount in currency units ("50", "50.25"); UsageError when it is not one."""
    try:
        d = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        d = None
    if d is None or not d.is_finite() or (d * minor_per_major) != (d * minor_per_major).to_integral_value():
        raise UsageError(f"--amount {text!r} is not an amount in currency units", hint="e.g. --amount 50.00")
    m = int(d * minor_per_major)
    if not 0 < m <= AMOUNT_MAX_MINOR:
        raise UsageError(f"--amount {text} must be above 0 and at most {AMOUNT_MAX_MINOR // minor_per_major}",
                         hint="arrears are loaded as a positive debt")
    return m


def msg_id(meter_id, ref):
    return "d-%s-%s" % (meter_id, ref)


def queue_debt(store, meter_id, amount_minor, ref, share_bp=None, now=None):
    """Queue the load of `amount_minor` of arrears on `meter_id` under `ref` (1..32 of A-Z a-z 0-9 _ . : -),
    recovered by `share_bp` (1..9000) of each top-up, or the meter's own share when None. Returns
    {"msg_id", "meter", "amount_minor", "ref", "share_bp", "repeat"}; a second call with the same ref
    queues nothing and returns the first (repeat True; a different amount for a used ref is refused)."""
    from host_tools.headend.commandargs import check
    if not isinstance(ref, str) or not REF.match(ref):
        raise UsageError(f"ref {ref!r} must be 1..32 characters of A-Z a-z 0-9 _ . : -",
                         hint="one reference per load, e.g. arrears-2026-01 (it makes the load idempotent)")
    args = {"amount": amount_minor, "ref": ref}
    if share_bp is not None:
        args["share_bp"] = share_bp
    args = check("load_debt", args)
    meter = store.meter(meter_id)
    mode = (store.last_reading(meter_id) or {}).get("mode")
    if mode == "kwh":
        raise UsageError(f"meter {meter_id} keeps its credit in kWh: arrears in money cannot be loaded on it",
                         hint="recover these arrears at the agency instead")
    now = store.clock() if now is None else now
    mid = msg_id(meter["meter_id"], ref)
    body = {"t": "cmd", "id": mid, "cmd": "load_debt", "args": args}
    out = {"msg_id": mid, "meter": meter_id, "amount_minor": amount_minor, "ref": ref, "share_bp": share_bp}
    with store.tx() as db:
        old = db.execute("SELECT body FROM messages WHERE msg_id=?", (mid,)).fetchone()
        if old is not None:
            was = json.loads(old["body"])["args"]
            if was.get("amount") != amount_minor or was.get("share_bp") != share_bp:
                raise UsageError(f"ref {ref} was used for a load of {was.get('amount')} minor units on {meter_id}",
                                 hint="give each load its own --ref")
            return dict(out, repeat=True)
        db.execute("INSERT INTO messages (msg_id, meter_id, kind, body, created) VALUES (?,?,?,?,?)",
                   (mid, meter_id, "cmd", json.dumps(body, sort_keys=True), now))
        store.log(meter_id, "headend", "command_queued", {"msg_id": mid, "cmd": "load_debt", "amount": amount_minor,
                                                          "ref": ref}, db=db)
    return dict(out, repeat=False)


def result(store, mid):
    """(state, code, detail, attempts) of a queued load, or None for an unknown message id."""
    r = store.q1("SELECT state, code, detail, attempts FROM messages WHERE msg_id=?", (mid,))
    if r is None:
        return None
    return r["state"], r["code"], json.loads(r["detail"] or "{}"), r["attempts"]


# -- CLI ----------------------------------------------------------------------------------------------
def register(sub, common):
    from host_tools.headend.cli import number
    d = sub.add_parser("debt", help="load post-paid arrears on a meter as debt, recovered by a share of each "
                                    "top-up (never a cut-off)")
    common(d)
    d.add_argument("meter", help="meter id")
    d.add_argument("--amount", required=True, help="the arrears in currency units, e.g. 50.00")
    d.add_argument("--ref", required=True, help="this load's reference (1..32 characters): the same ref again "
                                                "loads nothing more")
    d.add_argument("--share-bp", type=number(1, 9000, integer=True, unit="bp"),
                   help="share of each top-up that recovers it, in 1/100 %% (1..9000; default: the meter's)")
    d.add_argument("--wait", type=number(0, 86400), metavar="S", help="wait up to S seconds for the meter's result")
    d.set_defaults(func=cmd_debt)


def cmd_debt(args):
    from host_tools.cli import emit
    from host_tools.errors import DeviceError
    from host_tools.headend.cli import _check_wait, _store, service_running
    _check_wait(args.wait)
    amount = minor_units(args.amount)
    store = _store(args)
    q = queue_debt(store, args.meter, amount, args.ref, args.share_bp)
    args.audit.update(msg_id=q["msg_id"], detail={"amount_minor": amount, "ref": args.ref, "repeat": q["repeat"]})
    out = dict(q, state="queued")
    r = result(store, q["msg_id"])
    if args.wait is not None:
        end = time.monotonic() + args.wait
        while r[0] != "done" and time.monotonic() < end:
            time.sleep(0.1)
            r = result(store, q["msg_id"])
        if r[0] != "done":
            why = ("the head-end service is not running: start `meterkit headend serve`" if not service_running(store)
                   else "the meter has not answered: it stays queued and is resent until it does")
            raise DeviceError(f"no result for {q['msg_id']} from {args.meter} within {args.wait} s", hint=why)
    if r[0] == "done":
        out.update(state="done", code=r[1], detail=r[2], attempts=r[3])
    elif not service_running(store):
        out["note"] = "queued; delivered when `meterkit headend serve` runs"
    ok = out.get("code", "done") == "done"
    args.audit["refused"] = not ok
    if args.json:
        emit(out, True)
    elif out["state"] == "done":
        d = out["detail"]
        if ok:
            print(f"arrears {args.amount} on meter {args.meter} (ref {args.ref}): "
                  f"{'loaded' if d.get('applied') else 'already loaded'}; the meter owes {d.get('debt', 0) / 100:.2f}, "
                  f"{d.get('arrears', 0) / 100:.2f} of it arrears")
        else:
            print(f"arrears on meter {args.meter} REFUSED ({out['code']}): {d.get('why', '')}")
    else:
        print(f"arrears {args.amount} for meter {args.meter} queued as {q['msg_id']}"
              + ("" if not q["repeat"] else " (already queued)")
              + ("; delivered when `meterkit headend serve` runs" if out.get("note") else ""))
    return 0 if ok else 1
