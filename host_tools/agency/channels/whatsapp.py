"""WhatsApp through an HTTP API shaped like the WhatsApp Business Cloud API: POST
{base}/{version}/{phone_number_id}/messages with a bearer token and
{"messaging_product": "whatsapp", "to": ..., "type": "text", "text": {"body": ...}}, answered with
{"messages": [{"id": ...}]}."""
import httpx

from host_tools.agency.channels import ChannelError


class WhatsAppCloud:
    name = "whatsapp"

    def __init__(self, base_url, phone_number_id, token, version="v19.0", timeout=5.0):
        self.url = "%s/%s/%s/messages" % (base_url.rstrip("/"), version, phone_number_id)
        self.client = httpx.Client(timeout=timeout, headers={"Authorization": "Bearer " + token})

    def send(self, address, text, subject=None):
        body = {"messaging_product": "whatsapp", "to": address.lstrip("+"), "type": "text",
                "text": {"preview_url": False, "body": text}}
        try:
            r = self.client.post(self.url, json=body)
        except httpx.HTTPError as e:
            raise ChannelError("WhatsApp API unreachable: %s" % e) from None
        if r.status_code != 200:
            raise ChannelError("WhatsApp API answered %d: %s" % (r.status_code, r.text[:200]))
        return r.json()["messages"][0]["id"]
