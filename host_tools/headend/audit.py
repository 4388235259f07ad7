"""The operators' audit: every `meterkit headend` verb and every remote command records who (an operator
name: `--operator`, else $METERKIT_OPERATOR, else the OS user), what (the verb, its target and its
arguments), when, and the result, in the store's `headend_audit` table. A remote command's row carries
its message id, so the listing shows the meter's answer beside it. `meterkit headend audit` lists them."""
import getpass
import json
import os
import re
import time

from host_tools.errors import MeterkitError, UsageError

_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# arguments never written to the audit (paths to secrets are fine: they say what was used, not what it holds)
_NOT_RECORDED = {"func", "db", "json", "operator", "headend_verb", "audit", "verb"}


def operator_name(explicit=None):
    """The operator's name: explicit, else $METERKIT_OPERATOR, else the OS user; checked."""
    name = explicit or os.environ.get("METERKIT_OPERATOR") or _os_user()
    if not _NAME.match(name or ""):
        raise UsageError(f"operator name {name!r} is not valid",
                         hint="1..64 letters, digits or . _ @ - (e.g. --operator a.benali)")
    return name


def _os_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "uid%d" % os.getuid()


def record(store, operator, action, target=None, args=None, result="ok", detail=None, msg_id=None,
           origin="cli", db=None):
    row = (store.clock(), operator, origin, action, target, json.dumps(args or {}, sort_keys=True, default=str),
           result, json.dumps(detail or {}, sort_keys=True, default=str), msg_id)
    sql = ("INSERT INTO headend_audit (at, operator, origin, action, target, args, result, detail, msg_id) "
           "VALUES (?,?,?,?,?,?,?,?,?)")
    if db is not None:
        db.execute(sql, row)
    else:
        with store.tx() as tx:
            tx.execute(sql, row)


def entries(store, limit=200, operator=None, action=None):
    """The newest `limit` audit rows, oldest first, each with the meter's answer for a remote command."""
    where, params = [], []
    if operator:
        where.append("a.operator=?")
        params.append(operator)
    if action:
        where.append("a.action=?")
        params.append(action)
    sql = ("SELECT a.*, m.state AS delivery_state, m.code AS delivery_code FROM headend_audit a LEFT JOIN messages m "
           "ON m.msg_id=a.msg_id" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.id DESC LIMIT ?")
    rows = store.q(sql, tuple(params) + (limit,))
    out = []
    for r in reversed(rows):
        e = {"id": r["id"], "at": r["at"], "operator": r["operator"], "origin": r["origin"], "action": r["action"],
             "target": r["target"], "args": json.loads(r["args"]), "result": r["result"],
             "detail": json.loads(r["detail"])}
        if r["msg_id"]:
            e["msg_id"] = r["msg_id"]
            e["meter_answer"] = r["delivery_code"] if r["delivery_state"] == "done" else (r["delivery_state"] or "unknown")
        out.append(e)
    return out


def audited(verb, func, open_store):
    """Wrap a verb's function: run it, then record who ran it, on what, and how it ended (also when it
    failed). `open_store(args)` opens the verb's store, or raises if there is none (nothing recorded)."""
    def run(args):
        who = operator_name(getattr(args, "operator", None))
        args.audit = {}
        started = time.time()
        result, detail = "ok", {}
        try:
            rc = func(args)
            if rc:
                result = "refused" if args.audit.get("refused") else f"exit {rc}"
            return rc
        except MeterkitError as e:
            result, detail = "error", {"error": str(e)}
            raise
        except KeyboardInterrupt:
            result = "interrupted"
            raise
        finally:
            recorded = {k: _no_password(v) for k, v in vars(args).items() if k not in _NOT_RECORDED and v is not None}
            detail = dict(detail, seconds=round(time.time() - started, 3), **args.audit.get("detail", {}))
            try:
                store = open_store(args)
            except MeterkitError:
                store = None                 # no store (the verb failed to find one): nothing to record into
            if store is not None:
                try:
                    record(store, who, verb, target=args.audit.get("target") or getattr(args, "meter", None),
                           args=recorded, result=result, detail=detail, msg_id=args.audit.get("msg_id"))
                finally:
                    store.close()
    return run


def _no_password(value):
    """An argument as it may be recorded: a URL's password (a broker's, a database's) hidden."""
    if isinstance(value, str) and "://" in value:
        from host_tools.headend.db import redact
        return redact(value)
    return value


def register(sub, common):
    a = sub.add_parser("audit", help="who did what on the head-end, when, and the result")
    common(a)
    a.add_argument("--limit", type=int, default=200, help="the newest N entries (default 200)")
    a.add_argument("--who", help="only this operator's entries")
    a.add_argument("--action", help="only this verb (e.g. topup, command)")
    a.set_defaults(func=cmd_audit)


def cmd_audit(args):
    import sys

    from host_tools.cli import emit
    from host_tools.headend.cli import _store
    if not 1 <= args.limit <= 100000:
        raise UsageError(f"--limit {args.limit} must be 1..100000", hint="e.g. --limit 50")
    store = _store(args)
    rows = entries(store, args.limit, args.who, args.action)
    store.close()
    if args.json:
        emit({"entries": rows, "count": len(rows)}, True)
        return 0
    from host_tools import render
    for e in rows:
        extra = f"  meter answered {e['meter_answer']}" if "meter_answer" in e else ""
        err = f"  ({e['detail']['error']})" if e["detail"].get("error") else ""
        sys.stdout.write(f"{render.local_time(e['at'])}  {e['operator']:<12} {e['action']:<12} "
                         f"{e['target'] or '-':<20} {e['result']}{err}{extra}\n")
    if not rows:
        sys.stdout.write("no audit entries yet\n")
    return 0
