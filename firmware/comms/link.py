"""The meter's cellular link composed: supervisor + MQTT session + protocol + uplink queue + SMS,
wired to the application's handlers. The app builds one `MeterLink` and calls `poll()` every wake.

On each new MQTT session the meter subscribes to `meters/<id>/down` (QoS 1) and publishes `online`,
retained, on `meters/<id>/status` (the will says `offline`); downlinks go to the protocol, whose
answers and the uplink messages leave through the persistent uplink queue on `meters/<id>/up`."""
from comms import dialect as dl
from comms.mqtt import MQTTClient, UP
from comms.protocol import Protocol
from comms.uplink import Uplink
from comms.sms import SmsService
from comms.supervisor import Supervisor


class MeterLink:
    def __init__(self, modem, clock, cfg, store, rng, emit=None, on_token=None, on_command=None,
                 on_balance=None, read=None):
        """`cfg`: meter_id, key (32 bytes), password, dialect, apn, host, port, keepalive_s, ping_wait_s,
        probe_s, brisk_s (link liveness, comms/mqtt.py),
        reading_period_s, queue_capacity, sms_check_s, customer, registered, lang, minor_per_unit."""
        mid = cfg["meter_id"]
        self.topic_down = "meters/%s/down" % mid
        self.topic_up = "meters/%s/up" % mid
        self.topic_status = "meters/%s/status" % mid
        self.topic_fw = "meters/%s/fw" % mid          # update chunks (firmware/ota/), QoS 0
        self.on_fw = None
        self.protocol = Protocol(mid, cfg["key"], store, self._queue, on_token, on_command, emit)
        self.uplink = Uplink(self.protocol, store, clock, self.topic_up, cfg.get("queue_capacity", 32),
                             cfg.get("reading_period_s", 900), read)
        self.protocol.send_result = self.uplink.enqueue
        self.mqtt = MQTTClient(clock, None, mid, user=mid, password=cfg.get("password", ""),
                               keepalive_s=cfg.get("keepalive_s", 120),
                               ping_wait_ms=cfg.get("ping_wait_s", 10) * 1000,
                               probe_ms=cfg.get("probe_s", 2) * 1000, brisk_ms=cfg.get("brisk_s", 120) * 1000,
                               will=(self.topic_status, b"offline", 1, True),
                               on_message=self._message, on_puback=self.uplink.on_puback)
        self.sms = None
        if on_balance is not None:
            self.sms = SmsService(self.protocol, on_token, on_balance, cfg.get("customer"),
                                  cfg.get("registered", ()), cfg.get("lang", "fr"),
                                  cfg.get("minor_per_unit", 100), emit,
                                  tokens_from_registered=cfg.get("sms_tokens_registered_only", False),
                                  balance_from_registered=cfg.get("sms_balance_registered_only", True),
                                  clock=clock)
        dialect = dl.for_board(cfg.get("dialect", "sim7600"))
        if cfg.get("ca"):
            # TLS to the broker through the modem's SSL stack; a dialect without one never falls back
            # to plain TCP (the meter stays offline and says why, see cellular.start)
            if not hasattr(dialect, "tls_ca"):
                raise ValueError("the %s modem has no TLS: provision it without a CA" % dialect.name)
            dialect.tls_ca = cfg["ca"]
        self.supervisor = Supervisor(modem, clock, dialect, cfg,
                                     self.mqtt, rng, emit, self.sms, self._session_up,
                                     self.uplink.session_lost)
        self.supervisor.busy = self.uplink.flowing

    def _queue(self, envelope):
        self.uplink.enqueue(envelope)

    def _session_up(self):
        self.mqtt.subscribe(self.topic_down, 1)
        if self.on_fw is not None:
            self.mqtt.subscribe(self.topic_fw, 0)
        self.mqtt.publish(self.topic_status, b"online", 1, True)

    def _message(self, topic, payload, pid):
        if topic == self.topic_down:
            self.protocol.receive(payload)
        elif topic == self.topic_fw and self.on_fw is not None:
            self.on_fw(payload)
        return True  # handled (or not for us): acknowledge so the broker stops resending

    def quiet_ms(self):
        """Milliseconds the link has nothing to do (the scheduler's `quiet`, see app/sched.py)."""
        q = self.supervisor.quiet_ms()
        if q:
            u = self.uplink.quiet_ms()
            if u < q:
                q = u
        return q

    def up(self):
        """True while the MQTT session is up."""
        return self.mqtt.state == UP and self.supervisor.state == "up"

    def event(self, kind, data=None):
        """An event for the head-end (queued in flash until acknowledged)."""
        self.uplink.event(kind, data)

    def poll(self):
        n = self.supervisor.poll()
        self.uplink.poll(self.mqtt if self.mqtt.state == UP and self.supervisor.state == "up" else None)
        return n

    def status(self):
        st = self.supervisor.status()
        st["queued"] = len(self.uplink.queue)
        return st
