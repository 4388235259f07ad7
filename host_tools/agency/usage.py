"""What a customer sees of their meter, from the head-end's readings: the latest state, energy per day
and per month (register differences at UTC day/month boundaries), the same period before it, the cost
split by the tariff's blocks and standing charge, and an estimate of the days of credit left."""
import datetime
import json

DAY = 86400


def _utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def day_start(ts):
    return int(ts) - int(ts) % DAY


def month_start(ts, back=0):
    d = _utc(ts)
    y, m = d.year, d.month - back
    while m < 1:
        m += 12
        y -= 1
    return int(datetime.datetime(y, m, 1, tzinfo=datetime.timezone.utc).timestamp())


def register_at(store, meter_id, ts):
    """The import register (Wh) at the last reading at or before ts, or None."""
    r = store.q1("SELECT import_wh FROM readings WHERE meter_id=? AND ts<=? AND import_wh IS NOT NULL "
                 "ORDER BY ts DESC LIMIT 1", (meter_id, int(ts)))
    return r["import_wh"] if r else None


def latest(store, meter_id):
    r = store.q1("SELECT ts, raw FROM readings WHERE meter_id=? ORDER BY ts DESC LIMIT 1", (meter_id,))
    return json.loads(r["raw"]) if r else None


def _between(store, meter_id, a, b, now_reg):
    ra = register_at(store, meter_id, a)
    rb = register_at(store, meter_id, b) if b is not None else now_reg
    if ra is None or rb is None:
        return None
    return max(0, rb - ra)


_HOME_CACHE = {}        # (meter, newest reading's ts, day, hour) -> derived figures: new readings renew it


def home(store, meter_id, now):
    """Latest state, today's and this month's Wh, days left, and flags for warnings."""
    last = latest(store, meter_id)
    out = {"reading": last, "today_wh": None, "month_wh": None, "days_left": None}
    if last is None:
        return out
    key = (store.path, meter_id, last.get("ts"), day_start(now), int(now) // 3600)
    got = _HOME_CACHE.get(key)
    if got is None:
        reg = last.get("import_wh")
        got = (_between(store, meter_id, day_start(now), None, reg),
               _between(store, meter_id, month_start(now), None, reg),
               days_left(store, meter_id, now, last.get("credit")))
        if len(_HOME_CACHE) > 20000:
            _HOME_CACHE.clear()
        _HOME_CACHE[key] = got
    out["today_wh"], out["month_wh"], out["days_left"] = got
    return out


def days_left(store, meter_id, now, credit, window_days=7):
    """Credit / the average daily spend over the last week (credit falls between readings; rises are
    top-ups and are not spend). None without enough history or spend."""
    if credit is None:
        return None
    rows = store.q("SELECT ts, credit FROM readings WHERE meter_id=? AND ts>=? AND credit IS NOT NULL ORDER BY ts",
                   (meter_id, int(now - window_days * DAY)))
    if len(rows) < 2:
        return None
    spent = sum(max(0, a["credit"] - b["credit"]) for a, b in zip(rows, rows[1:]))
    span = rows[-1]["ts"] - rows[0]["ts"]
    if span < 3600 or spent <= 0:
        return None
    return round(credit / (spent * DAY / span), 1)


def daily(store, meter_id, now, days):
    """[(YYYY-MM-DD, Wh or None, Wh the same day one period earlier or None)], oldest first."""
    today = day_start(now)
    starts = [today - i * DAY for i in range(2 * days - 1, -1, -1)]
    regs = {t: register_at(store, meter_id, t) for t in starts + [today + DAY]}
    reg_now = (latest(store, meter_id) or {}).get("import_wh")
    regs[today + DAY] = reg_now if regs[today + DAY] is None else regs[today + DAY]

    def wh(t):
        a, b = regs.get(t), regs.get(t + DAY)
        if b is None and t == today:
            b = reg_now
        return None if a is None or b is None else max(0, b - a)

    out = []
    for t in starts[days:]:
        out.append((_utc(t).strftime("%Y-%m-%d"), wh(t), wh(t - days * DAY)))
    return out


def monthly(store, meter_id, now, months=12):
    """[(YYYY-MM, Wh or None, Wh the same month a year earlier or None)], oldest first."""
    reg_now = (latest(store, meter_id) or {}).get("import_wh")
    cache = {}

    def reg(ts):
        if ts not in cache:
            cache[ts] = register_at(store, meter_id, ts)
        return cache[ts]

    def wh(back):
        a = reg(month_start(now, back))
        b = reg(month_start(now, back - 1)) if back > 0 else reg_now
        return None if a is None or b is None else max(0, b - a)

    out = []
    for back in range(months - 1, -1, -1):
        out.append((_utc(month_start(now, back)).strftime("%Y-%m"), wh(back), wh(back + 12)))
    return out


def chart_svg(series, title, unit="kWh", width=640, height=220):
    """A bar chart as inline SVG (drawn on the server: nothing to download): bars for the period, a
    thin bar beside each for the period before. Values in Wh, shown in kWh."""
    vals = [v for _, a, b in series for v in (a, b) if v is not None]
    top = max(vals) if vals else 1
    top = max(top, 1)
    n = max(len(series), 1)
    pad_l, pad_b = 8, 22
    w = (width - pad_l) / n
    parts = ['<svg viewBox="0 0 %d %d" role="img" aria-label="%s" class="chart" preserveAspectRatio="none">'
             % (width, height, title)]
    h = height - pad_b - 4
    for i, (label, a, b) in enumerate(series):
        x = pad_l + i * w
        if b is not None:
            bh = h * b / top
            parts.append('<rect class="prev" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %.1f %s</title></rect>'
                         % (x + w * 0.55, 4 + h - bh, w * 0.35, bh, label, b / 1000, unit))
        if a is not None:
            ah = h * a / top
            parts.append('<rect class="cur" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %.1f %s</title></rect>'
                         % (x + w * 0.1, 4 + h - ah, w * 0.5, ah, label, a / 1000, unit))
        step = max(1, n // 6)
        if i % step == 0:
            parts.append('<text x="%.1f" y="%d" class="lbl">%s</text>' % (x, height - 6, label[5:] if len(label) > 7 else label))
    parts.append('<text x="%d" y="14" class="lbl" text-anchor="end">max %.1f %s</text>' % (width - 4, top / 1000, unit))
    parts.append("</svg>")
    return "".join(parts)
