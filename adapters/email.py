"""E-mail over SMTP (smtplib): multipart text + HTML, with a Message-ID that is the same on every attempt."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from core.notifications import DeliveryUnknown, Message, NotDelivered


class SmtpMailer:
    """One SMTP connection per message (milestone mail is a trickle, and a fresh connection has no stale state).

    Implements `core.notifications.Mailer`. The embedded default talks to the SMTP sink sim; production sets
    credentials and STARTTLS.
    """

    def __init__(self, host: str, port: int, sender: str, *, username: str = "", password: str = "",
                 starttls: bool = False, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls = username, password, starttls
        self.timeout_s = timeout_s
        self.domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"

    def message_id(self, idempotency_key: str) -> str:
        return f"<{idempotency_key}@{self.domain}>"

    def build(self, *, to: str, message: Message, idempotency_key: str) -> EmailMessage:
        """The MIME message: text/plain, plus text/html as the preferred alternative when there is one."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = self.message_id(idempotency_key)
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, *, to: str, message: Message, idempotency_key: str) -> None:
        """Hand one message to the SMTP server.

        Raises:
            NotDelivered: unreachable, or the server refused the sender, the recipient or the data.
            DeliveryUnknown: the connection broke while the message was being handed over.
        """
        mail = self.build(to=to, message=message, idempotency_key=idempotency_key)
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as error:
            raise NotDelivered(f"SMTP {self.host}:{self.port} unreachable: {error}") from error
        try:
            try:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password)
            except (OSError, smtplib.SMTPException) as error:
                raise NotDelivered(f"SMTP session refused: {error}") from error
            try:
                smtp.send_message(mail)
            except smtplib.SMTPRecipientsRefused as error:  # its text (and the reply) name the address: PII
                codes = ", ".join(str(code) for code, _reply in error.recipients.values())
                raise NotDelivered(f"SMTP refused the recipient ({codes})") from error
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
                raise NotDelivered(f"SMTP refused the message: {error.smtp_code} {error.smtp_error!r}") from error
            except (OSError, smtplib.SMTPException) as error:
                raise DeliveryUnknown(f"SMTP connection broke mid-send: {error}") from error
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()  # the server has the message: a failed goodbye changes nothing
        finally:
            smtp.close()
