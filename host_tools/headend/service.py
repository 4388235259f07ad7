"""The head-end service: one MQTT session (paho, QoS 1, clean_session false) that delivers queued
downlinks with retry until the meter answers with a result, and ingests uplinks: every one checked
against the meter's message key and last accepted sequence number before it is acted on."""
import json
import logging
import socket
import threading
import time

import paho.mqtt.client as mqtt

from host_tools.errors import DeviceError
from host_tools.headend import envelope, seqwindow, silence, topups, uplink_fields
from host_tools.headend.broker import is_tls, parse_url

log = logging.getLogger("headend")

DOWN = "meters/{}/down"
# Results that are not an answer yet: the meter could not decide now (a fault while it acted, a
# keypad lockout); the downlink stays open and is sent again. Every other code is definitive, and the
# first definitive result for a message is the one recorded; later ones are logged beside it.
TRANSIENT = ("fault", "locked_out")
UP_FILTER = "meters/+/up"
STATUS_FILTER = "meters/+/status"


def _no_delay(client, userdata, sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class HeadEnd:
    """Delivery and ingest over one broker. `tick()` sends what is due; `serve(stop)` loops until stop is set.

    Retry: a downlink without a result is sent again after retry_s, doubling up to retry_max_s. A resend
    keeps the message id (the meter's idempotency key) and takes a fresh, persisted sequence number (the
    old one would be rejected as stale by a meter that accepted it)."""

    def __init__(self, store, broker_url, client_id="headend", retry_s=30.0, retry_max_s=600.0, poll_s=0.2,
                 clock=time.time, client=None, resend_on_online=True, fleet_silence_s=silence.FLEET_SILENCE_S,
                 meter_silence_s=silence.METER_SILENCE_S, silence_check_s=10.0, ca_file=None, seq_window=0,
                 shared_group=None, claim_batch=200):
        """`clock`: seconds (wall time by default; a scenario passes the simulator's virtual clock).
        `client`: a paho-compatible MQTT client to use instead of a new paho one (the simulator's
        in-process broker hands one out). `resend_on_online`: when a meter's status turns `online`,
        its downlinks still without a result go again at once instead of at their retry time.
        `fleet_silence_s`, `meter_silence_s`: no uplink for this long from any meter / from one meter
        raises an alarm (`silence.py`), checked every `silence_check_s` while serving.
        `ca_file`: the CA that signed the broker's certificate, for an mqtts:// URL (the system's
        trusted CAs when None).
        `shared_group`: one of several workers: uplinks come through the MQTT v5 shared subscription
        `$share/<group>/...` (each message to one worker of the group). `seq_window`: how far below a
        meter's highest accepted uplink seq a seq not yet seen is still accepted (once): several
        workers take one meter's uplinks in parallel and may commit them out of order (0: strictly
        increasing, right for one worker)."""
        self.store = store
        self.url = broker_url
        self.host, self.port, self.username, self.password = parse_url(broker_url)
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.resend_on_online = resend_on_online
        if not 0 <= seq_window <= seqwindow.MAX_WINDOW:
            raise ValueError(f"seq_window {seq_window} must be 0..{seqwindow.MAX_WINDOW}")
        self.seq_window = seq_window
        self.shared_group = shared_group
        self.claim_batch = claim_batch
        self.answer_grace_s = 5.0 if shared_group else 0.0
        self.poll_s = poll_s
        self.clock = clock
        self.connected = threading.Event()
        self._gone = threading.Event()            # set when the session has ended (our DISCONNECT sent)
        self.counts = {"sent": 0, "results": 0, "rejected": 0, "readings": 0, "events": 0}
        self._keys = {}
        self.silence = silence.SilenceWatch(store, clock, fleet_silence_s, meter_silence_s)
        self.silence_check_s = silence_check_s
        self._silence_next = 0.0
        # more uplink topics (meters/<id>/<name>) -> handler(meter_id, payload): firmware updates' chunk
        # requests (host_tools/headend/ota.py); subscribed with QoS 0 on every session
        self.topic_handlers = {}
        if client is None:
            if shared_group:
                # MQTT v5 for $share; a session that outlives a crash (1 h), so what the broker had sent
                # this worker without an acknowledgement comes again when it reconnects
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
            else:
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                     protocol=mqtt.MQTTv311)
            if is_tls(broker_url):
                client.tls_set(ca_certs=ca_file)       # verifies the broker's certificate and host name
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            # paho leaves Nagle on: a small downlink right after our PUBACK would wait for the broker's
            # delayed ACK (40 ms on Linux) - per meter, per message
            client.on_socket_open = _no_delay
        if self.username:
            client.username_pw_set(self.username, self.password)
        self.client = client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message

    # -- session -----------------------------------------------------------------------------------
    def start(self, timeout=10.0):
        try:
            if self.shared_group and getattr(self.client, "_protocol", None) == mqtt.MQTTv5:
                from paho.mqtt.properties import Properties
                from paho.mqtt.packettypes import PacketTypes
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
                self.client.connect(self.host, self.port, keepalive=60, clean_start=False, properties=props)
            else:
                self.client.connect(self.host, self.port, keepalive=60)
        except OSError as e:
            raise DeviceError(f"MQTT broker at {self.host}:{self.port} unreachable: {e.strerror or e}",
                              hint="start the broker (e.g. mosquitto) or omit --broker to use the embedded one") from None
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            raise DeviceError(f"MQTT broker at {self.host}:{self.port} did not accept the head-end's connection",
                              hint="check the broker's credentials in the URL (mqtt://user:password@host:port)")
        self.store.set_service("broker", self.url)
        return self

    def stop(self, timeout=10.0):
        self.connected.clear()            # (the disconnect that follows is ours, not one to count)
        self._gone.clear()
        if self.shared_group and getattr(self.client, "_protocol", None) == mqtt.MQTTv5:
            # stopped on purpose: leave the group, so the broker stops handing this worker a share (a
            # killed worker keeps its session, and its restart takes back what it had been handed)
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            rc = self.client.disconnect(properties=props)
        else:
            rc = self.client.disconnect()
        # paho's network thread writes the DISCONNECT; stopping it first would lose the packet, and a
        # worker's session would then stay in the shared group for its expiry (1 h), dealt a share of the
        # uplinks that no one takes (seen in the fleet bench going from 4 workers to 2: 45 % of readings)
        if rc == mqtt.MQTT_ERR_SUCCESS and getattr(self.client, "_thread", None) is not None:
            self._gone.wait(timeout)
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason, props):
        if reason.is_failure:
            log.error("broker refused the head-end: %s", reason)
            return
        extra = [("meters/+/" + n, 0) for n in self.topic_handlers]
        if self.shared_group:
            share = "$share/%s/" % self.shared_group
            client.subscribe([(share + UP_FILTER, 1), (share + STATUS_FILTER, 1)] + [(share + t, q) for t, q in extra])
        else:
            client.subscribe([(UP_FILTER, 1), (STATUS_FILTER, 1)] + extra)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, props):
        self._gone.set()
        if self.connected.is_set():
            self.counts["disconnects"] = self.counts.get("disconnects", 0) + 1   # taken over, or the link dropped
        self.connected.clear()

    def serve(self, stop_event, on_tick=None):
        while not stop_event.is_set():
            try:
                self.store.retrying(self.tick)
            except Exception:  # the database away for a moment: the outbox waits, the service carries on
                log.exception("delivery round failed")
            self.store.set_service("heartbeat", self.clock())
            self.check_silence()
            if on_tick:
                on_tick(self)
            stop_event.wait(self.poll_s)

    def check_silence(self):
        """Raise or clear the silence alarms when due (every silence_check_s)."""
        now = self.clock()
        if now < self._silence_next:
            return None
        self._silence_next = now + self.silence_check_s
        try:
            return self.silence.check(now)
        except Exception:  # an alarm check must never stop delivery
            log.exception("silence check failed")
            return None

    # -- delivery ----------------------------------------------------------------------------------
    def tick(self, now=None):
        """Send every downlink that is due (new, or waiting for a result past its retry time)."""
        if not self.connected.is_set():
            return 0
        now = self.clock() if now is None else now
        sent = 0
        while True:
            batch = self._claim(now)
            for msg_id, topic, payload in batch:
                try:
                    self.client.publish(topic, payload, qos=1)
                    sent += 1
                except Exception as e:  # one meter's failed publish never stops the others
                    self._delivery_failed(msg_id, now, e)
            if len(batch) < self.claim_batch:
                break
        self.counts["sent"] += sent
        return sent

    def _delivery_failed(self, msg_id, now, error):
        """Log the failure on the message's meter and hold the message back until its next retry time
        (it stays in the outbox: an operator can fix the record, and it goes again)."""
        self.counts["failed"] = self.counts.get("failed", 0) + 1
        why = f"{type(error).__name__}: {error}"[:200]
        log.warning("delivery of %s failed: %s", msg_id, why)
        try:
            with self.store.tx() as db:
                m = db.execute("SELECT meter_id, attempts FROM messages WHERE msg_id=?", (msg_id,)).fetchone()
                if m is None:
                    return
                delay = min(self.retry_s * (2 ** max(m["attempts"] - 1, 0)), self.retry_max_s)
                db.execute("UPDATE messages SET next_try=? WHERE msg_id=?", (now + delay, msg_id))
                self.store.log(m["meter_id"], "headend", "delivery_failed", {"msg_id": msg_id, "error": why}, db=db)
        except Exception:
            log.exception("recording the failed delivery of %s failed", msg_id)

    def _claim(self, now):
        """Claim up to claim_batch due downlinks in one transaction and return them sealed.

        The claim is the outbox's row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL: another worker
        skips these rows and takes others; SQLite's one writer at a time) and what it writes: a fresh,
        persisted downlink seq, one more attempt and the retry time. Committed before anything is
        published, so each attempt goes out from one worker only; a worker killed after its claim
        loses nothing: the message is due again at its retry time, for any worker."""
        out = []
        with self.store.tx() as db:
            rows = db.execute("SELECT msg_id, meter_id, body, attempts FROM messages WHERE state!='done' AND "
                              "next_try<=? ORDER BY created LIMIT ? FOR UPDATE SKIP LOCKED",
                              (now, self.claim_batch)).fetchall()
            failed = []
            for m in rows:
                try:
                    out.append((m["msg_id"],) + self._prepare(db, m, now))
                except Exception as e:  # one meter's bad record never stops the others' deliveries
                    failed.append((m["msg_id"], e))
        for msg_id, e in failed:
            self._delivery_failed(msg_id, now, e)
        return out

    def _prepare(self, db, m, now):
        """Take the next downlink seq (persisted first), schedule the retry, return (topic, payload)."""
        msg_id = m["msg_id"]
        meter = db.execute("SELECT meter_id, message_key_hex, down_seq FROM meters WHERE meter_id=? FOR UPDATE",
                           (m["meter_id"],)).fetchone()
        seq = meter["down_seq"] + 1
        db.execute("UPDATE meters SET down_seq=? WHERE meter_id=?", (seq, meter["meter_id"]))
        delay = min(self.retry_s * (2 ** m["attempts"]), self.retry_max_s)
        db.execute("UPDATE messages SET state='sent', attempts=attempts+1, next_try=?, last_seq=? WHERE msg_id=?",
                   (now + delay, seq, msg_id))
        if m["attempts"]:
            self.store.log(meter["meter_id"], "headend", "redelivery",
                           {"msg_id": msg_id, "attempt": m["attempts"] + 1, "seq": seq}, db=db)
        body = json.loads(m["body"])
        key = bytes.fromhex(meter["message_key_hex"])
        # Everything is signed, tokens too: a token is secure end to end by itself, but only a signed
        # one tells the meter it came from the utility, so it never counts towards a lockout there.
        payload = envelope.seal(key, meter["meter_id"], seq, body, sign=True)
        return DOWN.format(meter["meter_id"]), payload

    # -- ingest ------------------------------------------------------------------------------------
    def _on_message(self, client, userdata, msg):
        try:
            parts = msg.topic.split("/")
            if len(parts) != 3 or parts[0] != "meters":
                return
            if parts[2] == "status":
                self._status(parts[1], msg.payload, retained=bool(getattr(msg, "retain", False)))
            elif parts[2] == "up":
                self.store.retrying(lambda: self.ingest(parts[1], msg.payload))
            elif parts[2] in self.topic_handlers:
                self.topic_handlers[parts[2]](parts[1], msg.payload)
        except Exception:  # one bad message must never stop the service
            log.exception("ingest of %s failed", msg.topic)

    def _status(self, meter_id, payload, retained=False):
        status = payload.decode("utf-8", "replace")[:16] or "cleared"
        if retained:
            # a retained status handed over at (re)subscription, to every worker: news only if it differs
            row = self.store.q1("SELECT status FROM meters WHERE meter_id=?", (meter_id,))
            if row is None or row["status"] == status:
                return
        with self.store.tx() as db:
            db.relaxed()   # presence, not money: the broker's retained status tells it again
            n = db.execute("UPDATE meters SET status=?, last_seen=? WHERE meter_id=?",
                           (status, self.clock(), meter_id)).rowcount
            if n:
                self.store.log(meter_id, "broker", status, db=db)
            if n and status == "online" and self.resend_on_online and not retained:
                # (a retained `online` is what the broker remembered, not the meter coming back)
                # The meter is back: what waits for its result goes now, not at its retry time (a
                # downlink sent into the outage may be lost with a broker that forgot the session).
                db.execute("UPDATE messages SET next_try=? WHERE meter_id=? AND state='sent' AND next_try>?",
                           (self.clock(), meter_id, self.clock()))

    def ingest(self, meter_id, payload):
        """Check and act on one uplink; returns the inner type acted on, or 'rejected:<why>'.

        Every check comes before anything changes: parse, meter id, type for this direction (a
        reflected downlink is `wrong_type`), MAC with the `up` direction, sequence, then the fields
        of the type. Only an uplink that passed them all moves `up_seq`, in the same transaction as
        its effect; a rejected one is logged (`uplink_rejected`, why) and moves nothing."""
        with self.store.tx() as db:
            meter = db.execute("SELECT message_key_hex, up_seq, up_window FROM meters WHERE meter_id=? FOR UPDATE",
                               (meter_id,)).fetchone()
            if meter is None:
                self.store.log(meter_id, "headend", "unknown_meter", {"bytes": len(payload)}, db=db)
                return "rejected:unknown_meter"
            try:
                s, inner = envelope.check(bytes.fromhex(meter["message_key_hex"]), payload,
                                          None if self.seq_window else meter["up_seq"], envelope.UP,
                                          meter_id=meter_id)
                uplink_fields.check(inner)
                up_seq, up_window = seqwindow.accept(meter["up_seq"], meter["up_window"], s, self.seq_window)
            except envelope.EnvelopeError as e:
                self.counts["rejected"] += 1
                seq = None
                try:
                    seq = envelope.parse(payload)[1]
                except envelope.EnvelopeError:
                    pass
                self.store.log(meter_id, "headend", "uplink_rejected", {"why": e.why, "s": seq, "detail": str(e)[:200]},
                               db=db)
                return "rejected:" + e.why
            now = self.clock()
            db.execute("UPDATE meters SET up_seq=?, up_window=?, last_seen=?, last_uplink=? WHERE meter_id=?",
                       (up_seq, up_window, now, now, meter_id))
            return self._act(db, meter_id, s, inner)

    def _act(self, db, meter_id, s, inner):
        t = inner.get("t")
        if t == "result":
            self._result(db, meter_id, inner)
        elif t == "reading":
            db.relaxed()  # telemetry: the next reading carries the registers again; money paths stay durable
            db.execute("INSERT INTO readings (meter_id, ts, import_wh, export_wh, credit, debt, p_w, supply, raw)"
                       " VALUES (?,?,?,?,?,?,?,?,?)",
                       (meter_id, int(inner.get("ts") or 0), inner.get("import_wh"), inner.get("export_wh"),
                        inner.get("credit"), inner.get("debt"), inner.get("p_w"), inner.get("supply"),
                        json.dumps(inner, sort_keys=True)))
            self.counts["readings"] += 1
        elif t == "event":
            self.counts["events"] += 1
            self.store.log(meter_id, "meter", str(inner.get("kind")),
                           {"seq": inner.get("seq"), "ts": inner.get("ts"), "data": inner.get("data") or {}}, db=db)
            if inner.get("kind") == "topup":          # any channel's top-up, for reconciliation
                topups.record(db, meter_id, inner, self.clock())
        elif t == "statement":
            db.execute("INSERT INTO statements (meter_id, month, import_wh, cost, topups, received) VALUES "
                       "(?,?,?,?,?,?) ON CONFLICT(meter_id, month) DO UPDATE SET import_wh=excluded.import_wh, "
                       "cost=excluded.cost, topups=excluded.topups, received=excluded.received",
                       (meter_id, str(inner.get("month")), inner.get("import_wh"), inner.get("cost"),
                        inner.get("topups"), self.clock()))
        elif t == "reject":
            self.store.log(meter_id, "meter", "downlink_rejected", {"why": inner.get("why"), "s": inner.get("s")}, db=db)
        else:
            self.store.log(meter_id, "meter", "unknown_uplink", {"t": t}, db=db)
        return t

    def _result(self, db, meter_id, inner):
        """Record the first definitive result of a downlink; log every result beside it.

        A token answered `used` before any other definitive result was credited by this meter earlier
        (its TID is unique to this meter and key, and only this head-end vends for it): the answer to
        the first delivery was lost on the way. It is recorded as `accepted`, confirmed by `used`, so
        the books match the meter's ledger."""
        ref = str(inner.get("ref"))
        code = str(inner.get("code"))
        detail = inner.get("detail") or {}
        if not isinstance(detail, dict):
            detail = {"detail": detail}
        now = self.clock()
        self.counts["results"] += 1
        m = db.execute("SELECT state, kind, code FROM messages WHERE msg_id=? AND meter_id=?", (ref, meter_id)).fetchone()
        first = False
        recorded = code
        if m is None:
            recorded = None
        elif m["state"] != "done" and code in TRANSIENT:
            wait = detail.get("locked_s") if code == "locked_out" else None
            wait = wait if isinstance(wait, int) and 0 < wait <= 86400 else self.retry_s
            db.execute("UPDATE messages SET next_try=? WHERE msg_id=?", (now + wait, ref))
            recorded = None
        elif m["state"] != "done":
            if code == "used" and m["kind"] == "token":
                recorded = "accepted"
                detail = dict(detail, confirmed_by="used")
            db.execute("UPDATE messages SET state='done', code=?, detail=?, done_at=? WHERE msg_id=?",
                       (recorded, json.dumps(detail, sort_keys=True), now, ref))
            first = True
        else:
            recorded = m["code"]
        if m is not None:
            # The link carries answers now: anything older for this meter still without its result (its
            # answer was lost, say in a broker restart) goes again now, while the meter still remembers
            # it, rather than at a retry time up to 10 minutes away, after which the meter may have
            # forgotten the message and its TID (a credited token would then be answered `old`).
            # With several workers an older answer may still be in another worker's hands: it gets
            # answer_grace_s to land before the resend.
            soon = now + self.answer_grace_s
            db.execute("UPDATE messages SET next_try=? WHERE meter_id=? AND state='sent' AND next_try>? AND "
                       "created<=(SELECT created FROM messages WHERE msg_id=?) AND msg_id!=?",
                       (soon, meter_id, soon, ref, ref))
        self.store.log(meter_id, "meter", "result", {"ref": ref, "code": code, "detail": detail, "first": first,
                                                     "recorded": recorded}, db=db)
