"""`meterkit monitor`: stream a meter's events as they happen and its readings at an interval, as
`esphome logs` streams a device's log. Events are asked for by sequence number, so none is missed
or shown twice between two polls."""
import json
import sys
import time

from host_tools import render


def _reading_line(r):
    return "%s  %s  %s  %s  %s  pf %s  %s" % (
        time.strftime("%H:%M:%S"), _f(r.get("urms_cv"), 100, 1, "V"), _f(r.get("irms_ma"), 1000, 3, "A"),
        "%s W" % r.get("p_w", "-"), _f(r.get("freq_chz"), 100, 2, "Hz"), _f(r.get("pf_milli"), 1000, 2, ""),
        r.get("health", "-"))


def _f(v, div, nd, unit):
    return "-" if v is None else ("%.*f %s" % (nd, v / div, unit)).strip()


def monitor(client, interval=2.0, count=None, as_json=False, out=None, sleep=time.sleep):
    """Print new events and one readings line per interval until Ctrl-C (or `count` readings)."""
    out = out or sys.stdout
    ev = client.call("events")
    seq = ev.get("seq", 0)
    if not as_json:
        ident = client.call("identity")
        out.write("monitoring %s on %s (Ctrl-C stops); %d events so far\n" % (
            ident.get("meter_id") or "an unprovisioned meter", client.port, seq))
    n = 0
    try:
        while count is None or n < count:
            ev = client.call("events", since=seq)
            for e in ev.get("events") or []:
                s, at, kind, data = (list(e) + [None] * 4)[:4]
                if as_json:
                    out.write(json.dumps({"event": kind, "seq": s, "time": at, "data": data}, sort_keys=True) + "\n")
                else:
                    out.write("%s  EVENT #%s %s %s\n" % (render.local_time(at) if at else "time unknown", s, kind,
                                                         render.detail(data)))
                seq = max(seq, s or 0)
            seq = max(seq, ev.get("seq", seq))
            r = client.call("readings", fresh=True)
            r.pop("id", None)
            r.pop("ok", None)
            if as_json:
                out.write(json.dumps({"readings": r, "time": time.time()}, sort_keys=True) + "\n")
            else:
                out.write(_reading_line(r) + "\n")
            out.flush()
            n += 1
            if count is None or n < count:
                sleep(interval)
    except KeyboardInterrupt:
        pass
    return 0
