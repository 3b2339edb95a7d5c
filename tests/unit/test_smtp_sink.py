"""The SMTP sink keeps what real SMTP clients send it and shows it over HTTP: inbox page, JSON, raw, delete."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from sims.smtp_sink import SmtpSink, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


def send(sink: SmtpSink, *, to: str = "ada@example.com", subject: str = "Hello", html: str | None = None) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Pressroom <orders@pressroom.dev>", to, subject
    mail["Message-ID"] = f"<{subject.replace(' ', '-')}@pressroom.dev>"
    mail.set_content(f"plain {subject}")
    if html is not None:
        mail.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)


def test_a_sent_message_is_listed_newest_first_with_its_parts(sink):
    # given two messages sent over SMTP
    send(sink, subject="First")
    send(sink, to="bob@example.com", subject="Second", html="<p>hello <b>Bob</b></p>")
    # when the inbox API is read
    listed = httpx.get(f"{sink.http_url}/messages").json()
    # then both are there, newest first, with envelope and headers
    assert [m["subject"] for m in listed] == ["Second", "First"]
    assert listed[0]["rcpt_tos"] == ["bob@example.com"] and listed[0]["message_id"] == "<Second@pressroom.dev>"
    assert (listed[0]["has_html"], listed[1]["has_html"]) == (True, False)
    full = httpx.get(f"{sink.http_url}/messages/{listed[0]['id']}", headers={"Accept": "application/json"}).json()
    assert full["text"].strip() == "plain Second" and full["html"].strip() == "<p>hello <b>Bob</b></p>"
    assert [m["subject"] for m in httpx.get(f"{sink.http_url}/messages", params={"to": "ada@example.com"}).json()] \
        == ["First"]


def test_the_inbox_page_lists_messages_and_a_message_page_shows_its_html_sandboxed(sink):
    send(sink, subject="Your order <PR-1> shipped", html='<p>Hi</p><script>alert(1)</script>')
    inbox = httpx.get(f"{sink.http_url}/")
    assert inbox.status_code == 200 and "Your order &lt;PR-1&gt; shipped" in inbox.text
    [message] = httpx.get(f"{sink.http_url}/messages").json()
    page = httpx.get(f"{sink.http_url}/messages/{message['id']}")
    assert page.headers["content-type"].startswith("text/html")
    assert '<iframe sandbox=""' in page.text and "<script>" not in page.text
    raw = httpx.get(f"{sink.http_url}/messages/{message['id']}/raw")
    assert raw.headers["content-type"] == "message/rfc822" and b"Subject: Your order <PR-1> shipped" in raw.content


def test_delete_forgets_every_message_and_unknown_ids_are_404(sink):
    send(sink)
    assert httpx.delete(f"{sink.http_url}/messages").json() == {"deleted": 1}
    assert httpx.get(f"{sink.http_url}/messages").json() == []
    assert httpx.get(f"{sink.http_url}/messages/1").status_code == 404


def test_the_oldest_messages_are_dropped_beyond_the_cap():
    with SmtpSink(max_messages=2) as small:
        for n in range(3):
            send(small, subject=f"m{n}")
        assert [m["subject"] for m in httpx.get(f"{small.http_url}/messages").json()] == ["m2", "m1"]
        # a reconciliation reading the list must learn that one message was pushed out, not lost
        assert httpx.get(f"{small.http_url}/sim/ledger").json() == {"received": 3, "kept": 2, "cap": 2,
                                                                    "dropped": 1}
        httpx.delete(f"{small.http_url}/messages")
        assert httpx.get(f"{small.http_url}/sim/ledger").json()["dropped"] == 1  # forgetting is not dropping


def test_it_runs_as_a_process_from_the_procfile_command():
    smtp_port, http_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "sims.smtp_sink", "--smtp-port", str(smtp_port),
                                "--http-port", str(http_port)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/messages").json() == []:
                    break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
                time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.sendmail("a@pressroom.dev", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
        assert [m["subject"] for m in httpx.get(f"http://127.0.0.1:{http_port}/messages").json()] == ["hi"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
