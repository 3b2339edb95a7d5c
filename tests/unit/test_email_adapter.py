"""The SMTP adapter against the SMTP sink: what a customer's mail client sees, and one session reused safely."""

from __future__ import annotations

import email
import email.policy
import socket

import httpx
import pytest

from adapters.email import SmtpMailer
from core.notifications import Message
from sims.smtp_sink import SmtpSink

SENDER = "Pressroom <orders@pressroom.dev>"


@pytest.fixture(scope="module")
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def mailer(sink):
    httpx.delete(f"{sink.http_url}/messages")
    found = SmtpMailer("127.0.0.1", sink.smtp_port, SENDER)
    yield found
    found.close()


def emails(sink) -> list[dict]:
    return httpx.get(f"{sink.http_url}/messages").json()


def message(n: int = 1, name: str = "Ada") -> Message:
    return Message(subject=f"Order PR-{n:05d} is on its way", text=f"Hi {name},\n\nOrder PR-{n:05d}.\n",
                   html=f"<p>Hi {name}, order <b>PR-{n:05d}</b>.</p>", preview=f"Order PR-{n:05d}")


def test_a_non_ascii_subject_and_text_arrive_as_written_with_the_stable_message_id(mailer):
    sent = Message(subject="Zoë, your order is on its way — PR-00001", text="Hi Zoë,\n\nÇa arrive.\n",
                   html="<p>Hi Zoë, ça arrive.</p>", preview="Ça arrive")
    raw = mailer.build(to="zoe@example.com", message=sent, idempotency_key="ntf_abc").as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == sent.subject and parsed["Message-ID"] == "<ntf_abc@pressroom.dev>"
    assert parsed["From"] == SENDER and parsed["To"] == "zoe@example.com"
    assert parsed.get_body(("plain",)).get_content() == sent.text
    assert parsed.get_body(("html",)).get_content() == sent.html + "\n"
    assert raw.isascii()  # 7bit on the wire: quoted-printable and RFC 2047, not raw UTF-8


def test_an_html_part_with_a_very_long_line_is_accepted_and_arrives_intact(mailer, sink):
    long_html = "<p>" + "x" * 3000 + "</p>\n"
    mailer.send(to="ada@example.com", message=Message(subject="s", text="t\n", html=long_html, preview="p"),
                idempotency_key="ntf_long")
    [stored] = emails(sink)
    assert httpx.get(f"{sink.http_url}/messages/{stored['id']}",
                     headers={"Accept": "application/json"}).json()["html"].replace("\r\n", "\n") == long_html


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(mailer, sink):
    with pytest.raises(ValueError):
        mailer.send(to="ada@example.com\r\nBcc: eve@example.com", message=message(), idempotency_key="ntf_x")
    assert emails(sink) == []


def test_consecutive_messages_of_one_thread_share_a_session_and_each_arrives_once(mailer, sink):
    mailer.send(to="ada@example.com", message=message(1), idempotency_key="ntf_1")
    session = mailer._local.smtp
    mailer.send(to="ada@example.com", message=message(2), idempotency_key="ntf_2")
    assert mailer._local.smtp is session
    assert sorted(m["message_id"] for m in emails(sink)) == ["<ntf_1@pressroom.dev>", "<ntf_2@pressroom.dev>"]


def test_a_session_the_server_dropped_is_replaced_and_the_message_goes_out_once(mailer, sink):
    # given a reused session whose connection has gone away (the server timed it out)
    mailer.send(to="ada@example.com", message=message(1), idempotency_key="ntf_1")
    dropped = mailer._local.smtp
    dropped.sock.shutdown(socket.SHUT_RDWR)
    # when the next message is sent
    mailer.send(to="ada@example.com", message=message(2), idempotency_key="ntf_2")
    # then it went out on a fresh session, once
    assert mailer._local.smtp is not dropped
    assert sorted(m["message_id"] for m in emails(sink)) == ["<ntf_1@pressroom.dev>", "<ntf_2@pressroom.dev>"]


def test_a_session_idle_too_long_is_not_reused(sink):
    mailer = SmtpMailer("127.0.0.1", sink.smtp_port, SENDER, idle_s=0.0)
    mailer.send(to="ada@example.com", message=message(1), idempotency_key="ntf_1")
    first = mailer._local.smtp
    mailer.send(to="ada@example.com", message=message(2), idempotency_key="ntf_2")
    assert mailer._local.smtp is not first
    mailer.close()
