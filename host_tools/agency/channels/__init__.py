"""Message channels to customers: SMS (the head-end's SMS gateway over HTTP), e-mail (SMTP) and WhatsApp
(an HTTP client shaped like the WhatsApp Business Cloud API). Each has `send(address, text, subject)`
and raises ChannelError when the message did not go."""


class ChannelError(Exception):
    pass


class RecordingChannel:
    """A channel that keeps what it was given (tests, the scenario): same interface, no network."""

    def __init__(self, name="sms"):
        self.name = name
        self.sent = []

    def send(self, address, text, subject=None):
        self.sent.append((address, text))
        return "rec-%d" % len(self.sent)

    def to(self, address):
        return [t for a, t in self.sent if a == address]
