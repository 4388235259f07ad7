"""E-mail over SMTP (smtplib): statements and receipts for customers who chose e-mail."""
import smtplib
from email.message import EmailMessage

from host_tools.agency.channels import ChannelError


class SmtpEmail:
    name = "email"

    def __init__(self, host, port, sender="agence@utility.example", timeout=10.0):
        self.host, self.port, self.sender, self.timeout = host, int(port), sender, timeout

    def send(self, address, text, subject=None):
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = address
        msg["Subject"] = subject or text[:60]
        msg.set_content(text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as s:
                s.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError("SMTP %s:%d: %s" % (self.host, self.port, e)) from None
        return msg["Message-ID"]
