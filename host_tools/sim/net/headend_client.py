"""The head-end's MQTT client on the simulator's in-process broker (host_tools/sim/net/mqttbroker.py): the
part of paho's interface `HeadEnd` uses, over a `LocalClient`, so the real head-end runs unchanged in
virtual time. paho reconnects by itself after a broker restart; so does this client, `reconnect_s`
virtual seconds later, when the scenario calls `service()` on its step."""


class _Reason:
    def __init__(self, failure):
        self.is_failure = failure

    def __str__(self):
        return "refused" if self.is_failure else "success"


class _Message:
    __slots__ = ("topic", "payload", "qos", "dup", "retain")

    def __init__(self, topic, payload, qos, dup, retain):
        self.topic, self.payload, self.qos, self.dup, self.retain = topic, payload, qos, dup, retain


class SimHeadEndClient:
    def __init__(self, broker, client_id="headend", clock=None, reconnect_s=0.5, keepalive_s=60):
        self.broker = broker
        self.clock = clock or broker.clock
        self.reconnect_s = reconnect_s
        self.on_connect = self.on_disconnect = self.on_message = self.on_socket_open = None
        self._subs = []
        self._retry_at = None
        self._wanted = False
        self.local = broker.client(client_id, clean_session=False, keepalive_s=keepalive_s,
                                   on_message=self._message, on_connect=self._connected,
                                   on_disconnect=self._disconnected)

    # -- paho's interface, as HeadEnd uses it ------------------------------------------------------
    def username_pw_set(self, username, password=None):
        self.local.username, self.local.password = username, password

    def max_inflight_messages_set(self, n):
        pass

    def max_queued_messages_set(self, n):
        pass

    def reconnect_delay_set(self, min_delay=1, max_delay=120):
        self.reconnect_s = min_delay

    def connect(self, host=None, port=None, keepalive=60):
        self._wanted = True
        code = self.local.connect()
        if code:
            raise OSError("the in-process broker refused the head-end (CONNACK %d)" % code)

    def loop_start(self):
        pass

    def loop_stop(self):
        pass

    def disconnect(self):
        self._wanted = False
        self.local.disconnect()

    def subscribe(self, subs, qos=1):
        if isinstance(subs, str):
            subs = [(subs, qos)]
        for f, q in subs:
            self.local.subscribe(f, q)

    def publish(self, topic, payload, qos=0, retain=False):
        return self.local.publish(topic, payload, qos, retain)

    # -- the broker's callbacks --------------------------------------------------------------------
    def _connected(self, present):
        self._retry_at = None
        if self.on_connect:
            self.on_connect(self, None, {"session present": present}, _Reason(False), None)

    def _disconnected(self, why):
        if self.on_disconnect:
            self.on_disconnect(self, None, None, _Reason(True), None)
        if self._wanted:
            self._retry_at = self.clock() + self.reconnect_s

    def _message(self, topic, payload, qos, dup, retain):
        if self.on_message:
            self.on_message(self, None, _Message(topic, payload, qos, dup, retain))

    def service(self):
        """Reconnect when due (after a broker restart), as paho's network loop does."""
        if self._retry_at is not None and self.clock() >= self._retry_at and not self.local.connected:
            self._retry_at = None
            if self.local.connect():
                self._retry_at = self.clock() + self.reconnect_s
