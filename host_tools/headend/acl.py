"""Who may do what on the broker: the one policy that the mosquitto files (`brokerconfig.py`), the
embedded amqtt broker (`amqtt_auth.py`) and the simulator's stepped broker (`sim/net/mqttbroker.py` hooks)
all enforce, so a test on any of them tests the same rules.

- Every meter logs in as its own user (user name = meter id, its provisioned password) and its client
  id must be that user name, so one meter's login can never take over another client's session (the
  head-end's included).
- A meter publishes only `meters/<its id>/up` and `meters/<its id>/status` (its will must be on that
  status topic), and subscribes to and receives only `meters/<its id>/down`.
- The head-end's users (`headend`, and `headend-w<i>` for worker i of `serve --workers N`, each its own
  login and so its own client id) publish only on
  `meters/<id>/down` and subscribe to `meters/+/up` and `meters/+/status` (also as MQTT v5 shared
  subscriptions `$share/<group>/...`)."""
import re

HEADEND_USER = "headend"
WORKER_USER = HEADEND_USER + "-w{}"     # worker i's own login (and, bound to it, its client id)
_HEADEND = re.compile(r"headend(-[A-Za-z0-9_]{1,16})?\Z")
_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
PUBLISH, SUBSCRIBE, RECEIVE = "publish", "subscribe", "receive"
HEADEND_FILTERS = ("meters/+/up", "meters/+/status", "meters/+/fwreq")
# topics by who writes them: a meter its uplinks, status and firmware-chunk requests (firmware/ota/);
# the head-end downlinks and firmware chunks (host_tools/headend/ota.py)
METER_WRITES = ("up", "status", "fwreq")
HEADEND_WRITES = ("down", "fw")


def worker_user(index):
    """The broker login of worker `index` (0-based) of `serve --workers N`."""
    return WORKER_USER.format(int(index))


def is_headend_user(user):
    return bool(user) and bool(_HEADEND.match(user))


def client_id_ok(client_id, user):
    """The client id is bound to the user name (mosquitto: use_username_as_clientid)."""
    return bool(user) and client_id == user


def _unshare(topic):
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        return parts[2] if len(parts) == 3 and parts[1] else None
    return topic


def allowed(user, topic, action):
    """True when `user` may `action` (publish | subscribe | receive) on `topic` (a filter for subscribe)."""
    if not user or not isinstance(topic, str):
        return False
    if is_headend_user(user):
        if action == PUBLISH:
            p = topic.split("/")
            return len(p) == 3 and p[0] == "meters" and p[2] in HEADEND_WRITES and bool(_ID.match(p[1]))
        t = _unshare(topic) if action == SUBSCRIBE else topic
        if t is None:
            return False
        if action == SUBSCRIBE and t in HEADEND_FILTERS:
            return True
        p = t.split("/")
        return len(p) == 3 and p[0] == "meters" and p[2] in METER_WRITES and bool(_ID.match(p[1]))
    if not _ID.match(user):
        return False
    own = "meters/" + user + "/"
    if action == PUBLISH:
        return topic.startswith(own) and topic[len(own):] in METER_WRITES
    return topic.startswith(own) and topic[len(own):] in HEADEND_WRITES


def will_ok(user, will_topic):
    """A meter's last will may only say its own status; the head-end's users have none to give."""
    if will_topic is None:
        return True
    return not is_headend_user(user) and will_topic == "meters/" + user + "/status"


def mosquitto_acl(headend_users):
    """The mosquitto acl_file text for this policy (the same rules, in mosquitto's words)."""
    lines = ["# written by `meterkit headend broker-config`: meters reach only their own topics",
             "# (%u is the user name, which is also the client id: use_username_as_clientid true)", ""]
    for u in headend_users:
        lines += [f"user {u}"]
        lines += ["topic read meters/+/%s" % t for t in METER_WRITES]
        lines += ["topic write meters/+/%s" % t for t in HEADEND_WRITES]
        lines += ["topic read $share/+/meters/+/%s" % t for t in METER_WRITES] + [""]
    lines += ["pattern read meters/%%u/%s" % t for t in HEADEND_WRITES]
    lines += ["pattern write meters/%%u/%s" % t for t in METER_WRITES] + [""]
    return "\n".join(lines)


def registry_hooks(store, users):
    """(authenticate, authorize) for the simulator's stepped broker (`SimBroker(authenticate=...,
    authorize=...)`): meters' passwords from the head-end's store, `users` {name: password} for the
    head-end's own users; the same rules as mosquitto and amqtt. A will is checked when it is published."""
    import hmac

    def _text(v):
        return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "")

    def authenticate(client_id, username, password):
        user, pw = _text(username), _text(password)
        if not client_id_ok(client_id, user):
            return False
        if user in users:
            return hmac.compare_digest(users[user], pw)
        if is_headend_user(user):
            return False
        row = store.q1("SELECT broker_password FROM meters WHERE meter_id=?", (user,))
        return row is not None and bool(row["broker_password"]) and hmac.compare_digest(row["broker_password"], pw)

    def authorize(client_id, username, topic, action):
        return allowed(_text(username), topic, action)

    return authenticate, authorize
