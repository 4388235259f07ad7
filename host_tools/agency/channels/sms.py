"""SMS through the head-end's SMS gateway: an HTTP POST of {"to", "text"} answered with {"id"}.
(A meter also texts its household from its own SIM: top-up receipts, low credit, statements.)"""
import httpx

from host_tools.agency.channels import ChannelError


class GatewaySms:
    name = "sms"

    def __init__(self, url, timeout=5.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def send(self, address, text, subject=None):
        try:
            r = self.client.post(self.url + "/sms", json={"to": address, "text": text})
        except httpx.HTTPError as e:
            raise ChannelError("SMS gateway unreachable: %s" % e) from None
        if r.status_code != 200:
            raise ChannelError("SMS gateway answered %d: %s" % (r.status_code, r.text[:200]))
        return r.json().get("id")
