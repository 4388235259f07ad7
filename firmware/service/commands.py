"""The service port's adapter onto the meter's actions (app/actionpath.py): each command takes its
arguments from the JSON request, runs the action of its name and answers its result. Loaded only while
one of these commands is handled. Privileged: top-up, relay, clock, tamper, settings; a token is its own
authentication."""

NAMES = ("credit", "statement", "emergency", "reconnect", "token", "topup", "relay", "set_time", "clear_tamper",
         "set_config")
PRIVILEGED = ("topup", "relay", "set_time", "clear_tamper", "set_config")
# the request keys each action takes, in order (the others take none)
_ARGS = {"topup": ("amount", "ref"), "token": ("digits",), "relay": ("open",), "set_time": ("unix",),
         "set_config": ("settings",)}


def handle(actions, cmd, req):
    args = [req.get(k) for k in _ARGS.get(cmd, ())]
    args.append("service")
    return actions.run(cmd, *args)
