"""SMTP sink: an SMTP server (aiosmtpd) that keeps every message it is given, with a web inbox and a JSON API.

It stands in for the mail provider in the embedded default and in tests: nothing is relayed anywhere.

HTTP (on its own port):
    GET    /                       the inbox, newest first (refreshes itself)
    GET    /messages               JSON summaries, newest first; `?to=<address>` filters, `?limit=` (default 100)
    GET    /messages/{id}          the message as a page (its HTML part sandboxed); JSON with `Accept: application/json`
    GET    /messages/{id}/raw      the message as received (message/rfc822)
    DELETE /messages               forget every message
    GET    /sim/ledger             how many messages were received, are kept, and were dropped past the cap

Run: python -m sims.smtp_sink --smtp-port 8025 --http-port 8026
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as the sink received it: the envelope, the main headers, the text and HTML parts."""

    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    message_id: str
    sender: str
    to: str
    text: str | None
    html: str | None
    raw: bytes

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "received_at": self.received_at.isoformat(), "mail_from": self.mail_from,
                "rcpt_tos": list(self.rcpt_tos), "from": self.sender, "to": self.to, "subject": self.subject,
                "message_id": self.message_id, "has_text": self.text is not None,
                "has_html": self.html is not None, "size": len(self.raw)}

    def as_json(self) -> dict[str, Any]:
        return self.summary() | {"text": self.text, "html": self.html}


def parse(message_id: int, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> StoredMessage:
    """Pick the headers and the text/plain and text/html bodies out of a received message."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    def body(kind: str) -> str | None:
        part = parsed.get_body(preferencelist=(kind,))
        return part.get_content() if part is not None and part.get_content_subtype() == kind else None

    return StoredMessage(id=message_id, received_at=datetime.now(UTC), mail_from=mail_from,
                         rcpt_tos=tuple(rcpt_tos), subject=str(parsed.get("Subject", "")),
                         message_id=str(parsed.get("Message-ID", "")), sender=str(parsed.get("From", "")),
                         to=str(parsed.get("To", "")), text=body("plain"), html=body("html"), raw=raw)


class Mailbox:
    """Every message received, up to `max_messages` (the oldest are dropped), safe across threads."""

    def __init__(self, max_messages: int = 10_000) -> None:
        self._messages: deque[StoredMessage] = deque(maxlen=max_messages)
        self._next_id = 1
        self._dropped = 0
        self._lock = threading.Lock()

    def ledger(self) -> dict[str, int]:
        """What a reconciliation needs before it trusts the list: messages dropped past the cap are not lost."""
        with self._lock:
            received, kept = self._next_id - 1, len(self._messages)
        return {"received": received, "kept": kept, "cap": self._messages.maxlen or 0,
                "dropped": self._dropped}

    def add(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> StoredMessage:
        with self._lock:
            stored = parse(self._next_id, mail_from, rcpt_tos, raw)
            self._next_id += 1
            self._dropped += len(self._messages) == self._messages.maxlen
            self._messages.append(stored)
        return stored

    def newest_first(self, *, to: str | None = None, limit: int = 100) -> list[StoredMessage]:
        with self._lock:
            messages = list(reversed(self._messages))
        if to:
            wanted = to.lower()
            messages = [m for m in messages if wanted in (r.lower() for r in m.rcpt_tos)]
        return messages[:limit]

    def get(self, message_id: int) -> StoredMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> int:
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
        return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)


class _SmtpHandler:
    """aiosmtpd's handler: accept everything, keep it."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        stored = self.mailbox.add(envelope.mail_from, envelope.rcpt_tos, envelope.original_content or envelope.content)
        return f"250 2.0.0 Ok: queued as {stored.id}"


# ---- the web inbox -----------------------------------------------------------------------------------------

_STYLE = ("body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#18181b}"
          "table{border-collapse:collapse;width:100%}td,th{padding:6px 10px;border-bottom:1px solid #e4e4e7;"
          "text-align:left;font-size:14px}th{color:#71717a;font-weight:normal}a{color:#2563eb}"
          "pre{white-space:pre-wrap;background:#f4f4f5;padding:12px;border-radius:6px}"
          "iframe{width:100%;height:640px;border:1px solid #e4e4e7;border-radius:6px}")


def _page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def inbox_page(mailbox: Mailbox, *, limit: int = 200) -> str:
    rows = "".join(
        f"<tr><td>{m.id}</td><td>{escape(m.received_at.strftime('%H:%M:%S'))}</td>"
        f"<td>{escape(', '.join(m.rcpt_tos))}</td>"
        f"<td><a href=\"/messages/{m.id}\">{escape(m.subject or '(no subject)')}</a></td></tr>"
        for m in mailbox.newest_first(limit=limit))
    return _page("SMTP sink inbox", f"<h1>Inbox</h1><p>{len(mailbox)} message(s); newest first.</p>"
                 f"<table><tr><th>#</th><th>received</th><th>to</th><th>subject</th></tr>{rows}</table>",
                 refresh=5)


def message_page(m: StoredMessage) -> str:
    headers = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in (
        ("From", m.sender), ("To", m.to), ("Subject", m.subject), ("Message-ID", m.message_id),
        ("Received", m.received_at.isoformat())))
    html = (f'<h2>HTML</h2><iframe sandbox="" title="HTML part" srcdoc="{escape(m.html, quote=True)}"></iframe>'
            if m.html is not None else "")
    text = f"<h2>Text</h2><pre>{escape(m.text)}</pre>" if m.text is not None else ""
    return _page(m.subject or "(no subject)", f'<p><a href="/">&larr; inbox</a> &middot; '
                 f'<a href="/messages/{m.id}/raw">raw</a></p><h1>{escape(m.subject or "(no subject)")}</h1>'
                 f"<table>{headers}</table>{html}{text}")


def _handler(mailbox: Mailbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "smtp-sink"

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any, status: int = 200) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _html(self, page: str, status: int = 200) -> None:
            self._send(status, page.encode(), "text/html; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            if not parts:
                return self._html(inbox_page(mailbox))
            if parts == ["sim", "ledger"]:
                return self._json(mailbox.ledger())
            if parts == ["messages"]:
                limit = int(query.get("limit", ["100"])[0])
                return self._json([m.summary() for m in mailbox.newest_first(to=query.get("to", [None])[0],
                                                                            limit=limit)])
            if len(parts) in (2, 3) and parts[0] == "messages" and parts[1].isdigit():
                message = mailbox.get(int(parts[1]))
                if message is None:
                    return self._json({"error": "no such message"}, 404)
                if len(parts) == 3 and parts[2] == "raw":
                    return self._send(200, message.raw, "message/rfc822")
                if len(parts) == 2:
                    if "application/json" in self.headers.get("Accept", ""):
                        return self._json(message.as_json())
                    return self._html(message_page(message))
            return self._json({"error": "not found"}, 404)

        def do_DELETE(self) -> None:  # noqa: N802 - the stdlib's name
            if urlsplit(self.path).path.rstrip("/") == "/messages":
                return self._json({"deleted": mailbox.clear()})
            return self._json({"error": "not found"}, 404)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s", format % args)

    return Handler


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SmtpSink:
    """Both servers in background threads: `with SmtpSink() as sink: …` (ports 0 pick free ones)."""

    def __init__(self, *, host: str = "127.0.0.1", smtp_port: int = 0, http_port: int = 0,
                 max_messages: int = 10_000) -> None:
        self.host = host
        self.mailbox = Mailbox(max_messages)
        self.smtp_port = smtp_port or free_port(host)
        self._smtp = Controller(_SmtpHandler(self.mailbox), hostname=host, port=self.smtp_port,
                                server_hostname="smtp-sink", ready_timeout=10)
        self._http = ThreadingHTTPServer((host, http_port), _handler(self.mailbox))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        self.http_url = f"http://{host}:{self.http_port}"
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="smtp-sink-http", daemon=True)

    def start(self) -> SmtpSink:
        self._smtp.start()
        self._http_thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sims.smtp_sink", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--smtp-port", type=int, default=8025)
    p.add_argument("--http-port", type=int, default=8026)
    p.add_argument("--max-messages", type=int, default=10_000, help="the oldest are dropped beyond this")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s smtp-sink %(message)s")
    stopping = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stopping.set())
    with SmtpSink(host=args.host, smtp_port=args.smtp_port, http_port=args.http_port,
                  max_messages=args.max_messages) as sink:
        log.info("SMTP on %s:%d, inbox on %s", args.host, sink.smtp_port, sink.http_url)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
