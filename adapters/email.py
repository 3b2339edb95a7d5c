"""E-mail over SMTP (smtplib): multipart text + HTML, with a Message-ID that is the same on every attempt."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
import time
import uuid
from email.charset import QP, Charset
from email.header import Header
from email.message import Message as MimeMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate, parseaddr

from core.notifications import DeliveryUnknown, Message, NotDelivered

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # non-ASCII text stays readable in the raw message (not base64)
_WIRE = compat32.clone(linesep="\r\n")  # SMTP lines end in CRLF
MAX_PLAIN_LINE = 78  # longer lines (HTML) are quoted-printable: SMTP servers refuse lines over 998 octets


class _Reconnect(Exception):
    """A reused connection turned out closed before the server took anything: open a fresh one."""


class SmtpMailer:
    """One SMTP connection per worker thread, reused for the next message while it is fresh.

    A connection is reused only after a clean hand-over, for at most `max_per_connection` messages and while
    it has been idle less than `idle_s` (servers drop idle sessions); a reused connection the server closed
    meanwhile fails at MAIL FROM, before any message data went out, so it is replaced once and the message
    handed over on the fresh one. Any other error closes the connection.

    Implements `core.notifications.Mailer`. The embedded default talks to the SMTP sink sim; production sets
    credentials and STARTTLS.
    """

    def __init__(self, host: str, port: int, sender: str, *, username: str = "", password: str = "",
                 starttls: bool = False, timeout_s: float = 30.0, idle_s: float = 10.0,
                 max_per_connection: int = 100) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls = username, password, starttls
        self.timeout_s, self.idle_s, self.max_per_connection = timeout_s, idle_s, max_per_connection
        self.envelope_from = parseaddr(sender)[1]
        self.domain = self.envelope_from.rpartition("@")[2] or "localhost"
        self._local = threading.local()

    def message_id(self, idempotency_key: str) -> str:
        return f"<{idempotency_key}@{self.domain}>"

    def build(self, *, to: str, message: Message, idempotency_key: str) -> MimeMessage:
        """The MIME message: text/plain, plus text/html as the preferred alternative when there is one.

        Built with the classic (compat32) `email.mime` classes: the same message as `EmailMessage` would make
        (short-lined ASCII parts 7bit, others UTF-8 quoted-printable, RFC 2047 for a non-ASCII header), at a
        third of its CPU (its header registry parses every header it sets).

        Raises:
            ValueError: a header value holds a line break (as `EmailMessage` raises: no header injection).
        """
        if message.html:
            mail: MimeMessage = MIMEMultipart("alternative", boundary=_boundary(message))
            mail.attach(_text_part(message.text, "plain"))
            mail.attach(_text_part(message.html, "html"))
        else:
            mail = _text_part(message.text, "plain")
        mail["From"] = _header(self.sender)
        mail["To"] = _header(to)
        mail["Subject"] = _header(message.subject)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = self.message_id(idempotency_key)
        return mail

    def send(self, *, to: str, message: Message, idempotency_key: str) -> None:
        """Hand one message to the SMTP server.

        Raises:
            NotDelivered: unreachable, or the server refused the sender, the recipient or the data.
            DeliveryUnknown: the connection broke while the message was being handed over.
        """
        data = self.build(to=to, message=message, idempotency_key=idempotency_key).as_bytes(policy=_WIRE)
        smtp, reused = self._connection()
        try:
            try:
                self._hand_over(smtp, to, data, reused=reused)
            except _Reconnect:
                self._drop(smtp)
                smtp, reused = self._connection()
                self._hand_over(smtp, to, data, reused=False)
        except BaseException:
            self._drop(smtp)
            raise
        local = self._local
        local.sent, local.used_at = local.sent + 1, time.monotonic()
        if local.sent >= self.max_per_connection:
            self.close()

    def close(self) -> None:
        """Say goodbye on this thread's connection, if it has one."""
        smtp = getattr(self._local, "smtp", None)
        if smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()  # the server has every message: a failed goodbye changes nothing
            self._drop(smtp)

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection and whether it was used before; a fresh session when there is none."""
        local = self._local
        smtp = getattr(local, "smtp", None)
        if smtp is not None and time.monotonic() - local.used_at < self.idle_s:
            return smtp, True
        if smtp is not None:  # idle too long: the server may have dropped it without a word, so no goodbye
            self._drop(smtp)
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as error:
            raise NotDelivered(f"SMTP {self.host}:{self.port} unreachable: {error}") from error
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        except (OSError, smtplib.SMTPException) as error:
            smtp.close()
            raise NotDelivered(f"SMTP session refused: {error}") from error
        local.smtp, local.sent, local.used_at = smtp, 0, time.monotonic()
        return smtp, False

    def _drop(self, smtp: smtplib.SMTP) -> None:
        smtp.close()
        if getattr(self._local, "smtp", None) is smtp:
            self._local.smtp = None

    def _hand_over(self, smtp: smtplib.SMTP, to: str, data: bytes, *, reused: bool) -> None:
        """MAIL, RCPT, DATA (what `send_message` does), with each failure classified as before; only a reused
        session's failure at MAIL FROM, before anything of the message went out, asks for a fresh session."""
        try:
            code, reply = smtp.mail(self.envelope_from)
        except (OSError, smtplib.SMTPException) as error:
            if reused:
                raise _Reconnect from error
            raise DeliveryUnknown(f"SMTP connection broke mid-send: {error}") from error
        if code == 421 and reused:  # the server is closing this (old) session
            raise _Reconnect
        if code != 250:
            raise NotDelivered(f"SMTP refused the message: {code} {reply!r}")
        try:
            code, _reply = smtp.rcpt(parseaddr(to)[1] or to)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryUnknown(f"SMTP connection broke mid-send: {error}") from error
        if code not in (250, 251):  # its reply names the address: PII stays out of errors
            raise NotDelivered(f"SMTP refused the recipient ({code})")
        try:
            code, reply = smtp.data(data)
        except smtplib.SMTPDataError as error:  # refused DATA before the message went out
            raise NotDelivered(f"SMTP refused the message: {error.smtp_code} {error.smtp_error!r}") from error
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryUnknown(f"SMTP connection broke mid-send: {error}") from error
        if code != 250:
            raise NotDelivered(f"SMTP refused the message: {code} {reply!r}")


def _header(value: str) -> str | Header:
    if "\r" in value or "\n" in value:
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    return value if value.isascii() else Header(value, "utf-8")


def _text_part(text: str, subtype: str) -> MIMEText:
    text = text if text.endswith("\n") else text + "\n"  # as `EmailMessage.set_content` ends every part
    plain = text.isascii() and max(map(len, text.splitlines())) <= MAX_PLAIN_LINE
    return MIMEText(text, subtype, "us-ascii" if plain else _UTF8_QP)


def _boundary(message: Message) -> str:
    """A multipart boundary that appears in neither part (chosen here: the generator's own check compiles a
    regular expression per message)."""
    while True:
        boundary = f"=_{uuid.uuid4().hex}"
        if boundary not in message.text and boundary not in (message.html or ""):
            return boundary
