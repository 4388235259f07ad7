"""Local stand-ins for the outside world's message services, as real HTTP/SMTP servers on 127.0.0.1:
an SMS gateway and a WhatsApp Business-API-shaped endpoint (one small Starlette app that keeps what it
received), and an SMTP server (aiosmtpd) that keeps the e-mails. For tests and the demo."""
import email
import email.policy
import threading

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from host_tools.agency.server import ServerThread, free_port


class FakeGateways:
    def __init__(self, token="demo-token", on_message=None):
        self.on_message = on_message   # called (channel, to, text) for each message: the demo prints them
        self.sms = []          # (to, text)
        self.whatsapp = []     # (to, text)
        self.token = token
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/sms", self._sms, methods=["POST"]),
                                     Route("/{version}/{phone_id}/messages", self._wa, methods=["POST"])])
        self.server = None

    async def _sms(self, request):
        try:
            b = await request.json()
            to, text = str(b["to"]), str(b["text"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "to and text expected"}, status_code=400)
        with self._lock:
            self.sms.append((to, text))
            n = len(self.sms)
        if self.on_message:
            self.on_message("sms", to, text)
        return JSONResponse({"id": "sms-%d" % n})

    async def _wa(self, request):
        if request.headers.get("authorization") != "Bearer " + self.token:
            return JSONResponse({"error": {"message": "invalid token", "code": 190}}, status_code=401)
        try:
            b = await request.json()
            assert b["messaging_product"] == "whatsapp" and b["type"] == "text"
            to, text = "+" + str(b["to"]).lstrip("+"), str(b["text"]["body"])
        except (ValueError, KeyError, TypeError, AssertionError):
            return JSONResponse({"error": {"message": "bad message", "code": 100}}, status_code=400)
        with self._lock:
            self.whatsapp.append((to, text))
        if self.on_message:
            self.on_message("whatsapp", to, text)
        with self._lock:
            return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": to}],
                                 "messages": [{"id": "wamid.%d" % len(self.whatsapp)}]})

    def sms_to(self, number):
        with self._lock:
            return [t for a, t in self.sms if a == number]

    def start(self):
        self.server = ServerThread(self.app, name="fake-gateways").start()
        self.url = self.server.url
        return self

    def stop(self):
        if self.server:
            self.server.stop()


class LocalSmtp:
    """aiosmtpd on a free loopback port; `messages` holds the parsed e-mails received."""

    def __init__(self):
        self.messages = []
        self.port = free_port()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def to(self, address):
        return [m for m in self.messages if m["To"] == address]

    def stop(self):
        if self.controller:
            self.controller.stop()
