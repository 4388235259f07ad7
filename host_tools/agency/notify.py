"""Sending to customers: picks the channels (the customer's preferences, or SMS for what must reach the
phone: codes and tokens), sends, and records every message with its outcome in `notifications`."""
import logging

from host_tools.agency.channels import ChannelError

log = logging.getLogger("agency.notify")


class Notifier:
    def __init__(self, store, settings, sms=None, email=None, whatsapp=None):
        self.store = store
        self.settings = settings
        self.channels = {"sms": sms, "email": email, "whatsapp": whatsapp}

    def address(self, customer, channel):
        return {"sms": customer["phone"], "email": customer["email"], "whatsapp": customer["whatsapp"]}[channel]

    def to_customer(self, customer, kind, text, subject=None, channels=None):
        """Send on `channels` (default: the customer's chosen ones); returns the channels it went on."""
        wanted = channels or [c for c in (customer["channels"] or "sms").split(",") if c]
        went = []
        for ch in wanted:
            addr = self.address(customer, ch)
            if not addr:
                continue
            if self.send(ch, addr, kind, text, subject, customer["id"]):
                went.append(ch)
        return went

    def send(self, channel, address, kind, text, subject=None, customer_id=None):
        impl = self.channels.get(channel)
        state, error = "sent", None
        if impl is None:
            state, error = "failed", "no %s channel configured" % channel
        else:
            try:
                impl.send(address, text, subject)
            except ChannelError as e:
                state, error = "failed", str(e)
        if error:
            log.warning("%s to %s failed: %s", channel, address, error)
        with self.store.tx() as db:
            db.execute("INSERT INTO notifications (customer_id, channel, address, kind, text, state, error, created)"
                       " VALUES (?,?,?,?,?,?,?,?)",
                       (customer_id, channel, address, kind, text, state, error, self.settings.clock()))
        return state == "sent"
