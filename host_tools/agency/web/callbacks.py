"""The payment provider's signed callback: refused (401, logged) when the signature is wrong."""
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from host_tools.agency.web.common import client_ip


async def callback(request):
    body = await request.body()
    if len(body) > 16384:
        return PlainTextResponse("too large", status_code=413)
    status, text = request.app.state.agency.payments.callback(request.headers, body, ip=client_ip(request))
    return PlainTextResponse(text, status_code=status)


def routes():
    return [Route("/payments/callback", callback, methods=["POST"])]
