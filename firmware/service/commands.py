"""The service port's adapter onto the meter's actions (app/actions.py): each command reads its
arguments from the JSON request, calls one action and answers its result. Loaded only while one of
these commands is handled. Privileged: top-up, relay, clock, tamper, settings; a token is its own
authentication."""

NAMES = ("credit", "statement", "emergency", "reconnect", "token", "topup", "relay", "set_time", "clear_tamper",
         "set_config")
PRIVILEGED = ("topup", "relay", "set_time", "clear_tamper", "set_config")
BY = "service"


def handle(actions, cmd, req):
    if cmd == "credit":
        return actions.credit()
    if cmd == "statement":
        return actions.statement()
    if cmd == "topup":
        return actions.topup(req.get("amount"), req.get("ref"), BY)
    if cmd == "token":
        return actions.token(req.get("digits"), BY)
    if cmd == "emergency":
        return actions.emergency(BY)
    if cmd == "reconnect":
        return actions.reconnect(BY)
    if cmd == "relay":
        return actions.relay(req.get("open"), BY)
    if cmd == "clear_tamper":
        return actions.clear_tamper(BY)
    if cmd == "set_time":
        return actions.set_time(req.get("unix"), BY)
    if cmd == "set_config":
        return actions.set_config(req.get("settings"), BY)
    raise ValueError("unknown command %r" % cmd)
