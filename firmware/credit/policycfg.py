"""Friendly-credit configuration, loaded on demand while a `credit.policy.Policy` is built: checks the
`friendly` windows ('HH:MM' start and end on weekdays) and the `holidays` ('YYYY-MM-DD'), with
ValueErrors naming the bad entry. Not resident: the policy keeps only the tables made here."""
from micropython import const

from credit import civil

_DAY_MIN = const(1440)


def _minutes(s, where):
    if not isinstance(s, str) or len(s) != 5 or s[2] != ":":
        raise ValueError("%s must be 'HH:MM' (got %r)" % (where, s))
    try:
        h, m = int(s[:2]), int(s[3:])
    except ValueError:
        raise ValueError("%s must be 'HH:MM' (got %r)" % (where, s))
    if not 0 <= h <= 23 or not 0 <= m <= 59:
        raise ValueError("%s must be 00:00..23:59 (got %r)" % (where, s))
    return h * 60 + m


def friendly(cfg):
    """(windows, holidays): windows as (start minute of week, length in minutes), ready for one modulo
    test each; holidays as day numbers."""
    windows = []
    wl = cfg.get("friendly", [])
    if not isinstance(wl, list):
        raise ValueError("friendly must be a list of windows")
    for i, w in enumerate(wl):
        where = "friendly[%d]" % i
        if not isinstance(w, dict):
            raise ValueError("%s must be an object" % where)
        days = w.get("days")
        if not isinstance(days, list) or not days:
            raise ValueError("%s.days must be a non-empty list of weekdays 0..6 (Mon=0)" % where)
        a = _minutes(w.get("start"), where + ".start")
        b = _minutes(w.get("end"), where + ".end")
        n = (b - a) % _DAY_MIN or _DAY_MIN
        for d in days:
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
                raise ValueError("%s.days must hold weekdays 0..6 (Mon=0), got %r" % (where, d))
            windows.append((d * _DAY_MIN + a, n))
    hl = cfg.get("holidays", [])
    if not isinstance(hl, list):
        raise ValueError("holidays must be a list of 'YYYY-MM-DD' dates")
    return windows, [civil.parse_date(h) for h in hl]
