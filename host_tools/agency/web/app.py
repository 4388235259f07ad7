"""The Starlette application: customer pages at /, the operator console at /op, the payment provider's
callback at /payments/callback, static files at /static (shipped in the package)."""
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from host_tools.agency.web import callbacks, common, customer, operator, purchases

log = logging.getLogger("agency.web")

# Everything comes from this site: scripts and styles in files (no inline script), no framing.
HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                        b"script-src 'self'; frame-ancestors 'none'; form-action 'self' http: https:"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + HEADERS
            await send(message)
        return await self.app(scope, receive, send_with_headers)


def create_app(agency):
    routes = (customer.routes() + purchases.routes() + callbacks.routes() +
              [Mount("/op", routes=operator.routes()),
               Mount("/static", app=StaticFiles(directory=str(common.STATIC)), name="static")])

    async def http_error(request, exc):
        return common.error_page(request, exc.status, exc.message)

    async def starlette_error(request, exc):
        msg = {404: "no such page", 405: "this page does not accept that request"}.get(exc.status_code, exc.detail)
        return common.error_page(request, exc.status_code, msg)

    async def crash(request, exc):
        log.exception("%s %s failed", request.method, request.url.path)
        return common.error_page(request, 500, "something went wrong on our side; it has been logged")

    app = Starlette(routes=routes, exception_handlers={common.HttpError: http_error, HTTPException: starlette_error,
                                                       Exception: crash},
                    middleware=[Middleware(SecurityHeaders)])
    app.state.agency = agency
    return app
