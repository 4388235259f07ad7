"""Top-ups as the meter reports them, from every channel (remote downlink, keypad, SMS, service port,
OpenPAYGO), recorded for reconciliation against the head-end's vends.

What the meter must send (docs/headend-store.md): an uplink event `{"t": "event", "kind": "topup",
"seq": N, "ts": unix, "data": {"ch": "remote|keypad|sms|service|...", "tid": STS TID or null,
"amt": credited amount, "unit": "minor|wh", "ref": the downlink's message id or null, "reg": the
topups register after it}}` each time it credits, whatever the channel. `seq` (the meter's event
sequence) makes a repeated event harmless."""
import json

CHANNELS = ("remote", "keypad", "sms", "service", "opaygo", "other")


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and -2 ** 62 < v < 2 ** 62 else None


def record(db, meter_id, inner, received):
    """Record one `topup` event (ingest calls it inside its transaction); False if it was seen before
    or has no usable sequence number."""
    data = inner.get("data") if isinstance(inner.get("data"), dict) else {}
    seq = _int(inner.get("seq"))
    if seq is None:
        return False
    ch = data.get("ch") if data.get("ch") in CHANNELS else "other"
    unit = data.get("unit") if data.get("unit") in ("minor", "wh") else None
    ref = data.get("ref") if isinstance(data.get("ref"), str) and len(data.get("ref")) <= 64 else None
    amt = _int(data.get("amt"))
    n = db.execute("INSERT INTO topups (meter_id, seq, channel, tid, what, quantity, minor, msg_id, at, received, raw)"
                   " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (meter_id, seq) DO NOTHING",
                   (meter_id, seq, ch, _int(data.get("tid")), unit, amt, amt if unit == "minor" else None, ref,
                    _int(inner.get("ts")), received, json.dumps(inner, sort_keys=True)[:2000])).rowcount
    return n == 1


def reconcile_meter(store, meter_id, vends):
    """Match the meter's reported top-ups with its vends (by message id, else by TID).
    Returns (summary, mismatches). `vends`: rows with msg_id, tid, state, code."""
    rows = store.q("SELECT * FROM topups WHERE meter_id=? ORDER BY seq", (meter_id,))
    by_msg = {v["msg_id"]: v for v in vends}
    by_tid = {v["tid"]: v for v in vends}
    matched, mismatches, seen = 0, [], set()
    channels = {}
    for t in rows:
        channels[t["channel"]] = channels.get(t["channel"], 0) + 1
        v = by_msg.get(t["msg_id"]) if t["msg_id"] else None
        if v is None and t["tid"] is not None:
            v = by_tid.get(t["tid"])
        base = {"meter_id": meter_id, "seq": t["seq"], "channel": t["channel"], "tid": t["tid"],
                "quantity": t["quantity"], "unit": t["what"]}
        if v is None:
            mismatches.append(dict(base, kind="unvended_topup", msg_id=t["msg_id"],
                                   cause="the meter credited a top-up (%s) that this head-end never vended: a "
                                         "service-port credit, a token from another vendor, or a vend lost in a "
                                         "restore; find who made it" % t["channel"]))
        elif v["msg_id"] in seen:
            mismatches.append(dict(base, kind="topup_twice", msg_id=v["msg_id"],
                                   cause="the meter reported one vend credited twice"))
        else:
            seen.add(v["msg_id"])
            matched += 1
    if rows:
        # once a meter reports its top-ups, every accepted vend must have its event
        for v in vends:
            if v["state"] == "done" and v["code"] == "accepted" and v["msg_id"] not in seen:
                mismatches.append({"meter_id": meter_id, "msg_id": v["msg_id"], "tid": v["tid"], "kind": "no_topup_event",
                                   "cause": "accepted by the meter but no top-up event came (yet): check its event queue"})
    return {"reported": len(rows), "matched": matched, "by_channel": channels}, mismatches
