"""The fields of each uplink type (docs/protocol.md section 4), checked after the MAC and before the
head-end acts: a signed uplink whose fields would not fit the store (a string where a number goes, an
integer past 64 bits, a tamper list of objects) is rejected as `malformed` and moves no counter, instead
of failing half-way through its transaction."""
from host_tools.headend.envelope import EnvelopeError

_INT_MAX = 2 ** 62          # SQLite integers are 64-bit; meters send far smaller values
_TEXT_MAX = 64


def _bad(why):
    raise EnvelopeError("malformed", why)


def _int(inner, name, required=False, lo=-_INT_MAX):
    v = inner.get(name)
    if v is None:
        if required:
            _bad(f"{name} missing")
        return
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= _INT_MAX:
        _bad(f"{name} is not an integer in range: {str(v)[:20]!r}")


def _text(inner, name, required=False, limit=_TEXT_MAX):
    v = inner.get(name)
    if v is None:
        if required:
            _bad(f"{name} missing")
        return
    if not isinstance(v, str) or not 0 < len(v) <= limit:
        _bad(f"{name} is not a text of 1..{limit} characters")


def _texts(inner, name):
    v = inner.get(name)
    if v is None:
        return
    if not isinstance(v, list) or len(v) > 32 or not all(isinstance(x, str) and len(x) <= _TEXT_MAX for x in v):
        _bad(f"{name} is not a list of short texts")


def _object(inner, name):
    v = inner.get(name)
    if v is not None and not isinstance(v, dict):
        _bad(f"{name} is not an object")


def _result(inner):
    _text(inner, "ref", required=True)
    _text(inner, "code", required=True, limit=32)
    _object(inner, "detail")


def _reading(inner):
    _int(inner, "ts", required=True, lo=0)
    for name in ("import_wh", "export_wh", "credit", "debt", "arrears", "p_w", "urms_cv", "topups"):
        _int(inner, name)
    _text(inner, "supply", limit=16)
    _text(inner, "mode", limit=8)
    if not isinstance(inner.get("reasons"), str):    # the firmware sends "NO_CREDIT|REMOTE" ("" for none)
        _texts(inner, "reasons")
    elif len(inner["reasons"]) > 200:
        _bad("reasons is too long")
    _texts(inner, "tamper")
    _object(inner, "link")


def _event(inner):
    _text(inner, "kind", required=True, limit=40)
    _int(inner, "seq", lo=0)
    _int(inner, "ts", lo=0)
    _object(inner, "data")


def _statement(inner):
    month = inner.get("month")
    if not (isinstance(month, str) and len(month) == 7 and month[4] == "-" and month[:4].isdigit()
            and month[5:].isdigit() and 1 <= int(month[5:]) <= 12):
        _bad("month is not YYYY-MM")
    for name in ("import_wh", "cost", "topups", "credit"):
        _int(inner, name)


def _reject(inner):
    _text(inner, "why", required=True, limit=32)
    _int(inner, "s", lo=0)


CHECKS = {"result": _result, "reading": _reading, "event": _event, "statement": _statement, "reject": _reject}


def _utf8(v, depth=0):
    # JSON may carry "\ud800": a lone surrogate, valid JSON, that no UTF-8 store can hold (the
    # event log's INSERT raised UnicodeEncodeError half-way through the uplink's transaction)
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            _bad("text that is not UTF-8 (a lone surrogate)")
    elif depth < 32 and isinstance(v, dict):
        for k, x in v.items():
            _utf8(k, depth + 1)
            _utf8(x, depth + 1)
    elif depth < 32 and isinstance(v, list):
        for x in v:
            _utf8(x, depth + 1)


def check(inner):
    """Raise EnvelopeError('malformed') unless the inner message's fields fit its type."""
    _utf8(inner)
    fn = CHECKS.get(inner.get("t"))
    if fn is None:
        raise EnvelopeError("wrong_type", f"type {inner.get('t')!r} is not an uplink")
    fn(inner)
