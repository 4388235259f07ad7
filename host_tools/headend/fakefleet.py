"""Thousands of FakeMeter sessions in one process: each meter keeps its own paho client (the real MQTT
3.1.1 session: CONNECT with its login and last will, SUBSCRIBE, QoS 1 both ways, keepalive), and one
asyncio loop drives all their sockets through paho's external-loop callbacks (epoll: a quiet session
costs nothing per turn, unlike a poll set rebuilt over every meter). Sessions connect concurrently,
paced: at most `in_flight` CONNECTs wait for their CONNACK at once and at most `rate` start a second,
so a loaded broker's listen backlog never overflows. For the fleet benchmark."""
import asyncio
import threading
import time

import paho.mqtt.client as mqtt

MISC_EVERY_S = 5.0          # paho's keepalive bookkeeping (PINGREQ when due) for every session, this often


class AsyncMeterFleet:
    def __init__(self, host, port, meters, keepalive=300, in_flight=100, rate=500.0, ca_file=None):
        """`ca_file`: every session over TLS (mqtts), trusting this CA (broker-config's ca.crt); one SSL
        context serves them all. `host` must then be a name on the broker's certificate."""
        self.host, self.port = host, port
        self._tls = None
        if ca_file:
            import ssl
            self._tls = ssl.create_default_context(cafile=str(ca_file))
        self.meters = list(meters)
        self.keepalive = keepalive
        self.in_flight = in_flight
        self.rate = rate
        self.connected = 0
        self.refused = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fakefleet", daemon=True)
        self._slots = None
        self._misc = None

    # -- the loop thread ---------------------------------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _client(self, fm):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=fm.meter_id, clean_session=False,
                        protocol=mqtt.MQTTv311, userdata=fm, reconnect_on_failure=False)
        c.username_pw_set(fm.meter_id, fm.password or "")
        c.will_set(f"meters/{fm.meter_id}/status", b"offline", qos=1, retain=True)
        c.max_queued_messages_set(0)
        if self._tls is not None:
            c.tls_set_context(self._tls)     # the handshake runs inside connect(): on loopback, a few ms
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        loop = self.loop
        c.on_socket_open = lambda cl, u, sock: loop.add_reader(sock, cl.loop_read)
        c.on_socket_close = lambda cl, u, sock: (loop.remove_reader(sock), loop.remove_writer(sock))
        c.on_socket_register_write = lambda cl, u, sock: loop.add_writer(sock, cl.loop_write)
        c.on_socket_unregister_write = lambda cl, u, sock: loop.remove_writer(sock)
        fm.client = c
        return c

    def _on_connect(self, c, fm, flags, reason, props):
        fut = getattr(fm, "_connack", None)
        if reason.is_failure:
            self.refused += 1
        else:
            c.subscribe(fm.down_topic, qos=1)
            c.publish(f"meters/{fm.meter_id}/status", b"online", qos=1, retain=True)
            self.connected += 1
        if fut is not None and not fut.done():
            fut.set_result(not reason.is_failure)

    def _on_message(self, c, fm, msg):
        for topic, payload in fm.handle_down(msg.payload):
            c.publish(topic, payload, qos=1)

    async def _connect_one(self, fm, timeout):
        async with self._slots:
            fm._connack = self.loop.create_future()
            c = self._client(fm)
            try:
                c.connect(self.host, self.port, keepalive=self.keepalive)   # loopback TCP: returns at once
                c.loop_write()
                await asyncio.wait_for(fm._connack, timeout)
            except (OSError, asyncio.TimeoutError):
                pass
            finally:
                fm._connack = None

    async def _connect_all(self, timeout):
        self._slots = asyncio.Semaphore(self.in_flight)
        tasks = []
        t0 = time.monotonic()
        for i, fm in enumerate(self.meters):
            due = t0 + i / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await self._slots.acquire()            # wait for a slot before starting the next: paced by CONNACKs
            self._slots.release()
            tasks.append(self.loop.create_task(self._connect_one(fm, timeout)))
        await asyncio.gather(*tasks)

    async def _misc_forever(self):
        while True:
            await asyncio.sleep(MISC_EVERY_S)
            for i, fm in enumerate(self.meters):
                if fm.client is not None:
                    fm.client.loop_misc()
                if i % 500 == 499:
                    await asyncio.sleep(0)

    # -- from other threads ----------------------------------------------------------------------
    def start(self, timeout=1800.0, progress=None):
        """Connect every meter; returns how many got their CONNACK. `progress(connected, total)` is called
        about once a second while connecting."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._connect_all(min(timeout, 120.0)), self.loop)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(1.0)
            if progress:
                progress(self.connected, len(self.meters))
        self._misc = asyncio.run_coroutine_threadsafe(self._misc_forever(), self.loop)
        return self.connected

    def run(self, fn, timeout=600.0):
        """fn() on the loop thread (paho clients are driven there); returns its result."""
        async def call():
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def publish_each(self, make, chunk=200, timeout=1800.0):
        """For every meter, publish make(fm) -> (topic, payload) with QoS 1, `chunk` meters per loop turn
        (the loop keeps serving acks and downlinks in between)."""
        async def go():
            for i, fm in enumerate(self.meters):
                if fm.client is not None:
                    topic, payload = make(fm)
                    fm.client.publish(topic, payload, qos=1)
                if i % chunk == chunk - 1:
                    await asyncio.sleep(0)
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout)

    def stop(self):
        """Close every session without DISCONNECT (as a power cut would) and stop the loop."""
        if not self._thread.is_alive():
            return

        def close_all():
            if self._misc is not None:
                self._misc.cancel()
            for fm in self.meters:
                c = fm.client
                sock = c.socket() if c is not None else None
                if sock is not None:
                    try:
                        self.loop.remove_reader(sock)
                        self.loop.remove_writer(sock)
                        sock.close()
                    except (OSError, ValueError):
                        pass
        try:
            self.run(close_all, timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
