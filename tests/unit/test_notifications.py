"""Customer notifications over real SMTP (the sink) and real HTTP (the SMS sim): one message per milestone and
channel whatever the redeliveries, opt-outs honoured, every message on the timeline, support resends audited."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import dramatiq
import httpx
import pytest
from sqlalchemy import func, insert, select

from adapters.email import SmtpMailer
from adapters.sms import HttpSms
from core.errors import NotAllowed, NotFound
from core.notifications import (
    Channel,
    DeliveryUnknown,
    Links,
    MessageContext,
    Milestone,
    notification_id,
    notification_links,
    render_message,
)
from core.services.customer_changes import cancel_order
from core.services.notify import notify_milestone, resend, send_notification, surface_stale_notifications
from core.services.render import render_order
from db import tables as t
from sims.sms import BackgroundSms
from sims.smtp_sink import SmtpSink
from tests.conftest import ApiHarness
from tests.unit.test_render_stage import place

SENDER = "Pressroom <orders@pressroom.dev>"


@pytest.fixture(scope="module")
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def sms_sim():
    with BackgroundSms() as server:
        yield server


@dataclass
class Outbox:
    """The real adapters, pointed at the sims, and a way to run the notify stage for an order."""

    api: ApiHarness
    sink: SmtpSink
    sms_sim: BackgroundSms
    mailer: SmtpMailer
    sms: HttpSms

    @property
    def links(self) -> Links:
        return notification_links(self.api.services.settings, now=self.api.services.now())

    def send(self, order_id: str, milestone: str, channel: str = "email", *, mailer=None, now=None, **kw) -> str:
        svc = self.api.services
        return send_notification(order_id, milestone, channel, uow=svc.uow(), mailer=mailer or self.mailer,
                                 sms=self.sms, links=self.links, now=now or svc.now, **kw)

    def emails(self) -> list[dict]:
        return httpx.get(f"{self.sink.http_url}/messages").json()

    def email(self, message_id: int) -> dict:
        return httpx.get(f"{self.sink.http_url}/messages/{message_id}", headers={"Accept": "application/json"}).json()

    def texts(self) -> list[dict]:
        return httpx.get(f"{self.sms_sim.url}/v1/messages").json()


@pytest.fixture
def outbox(api, sink, sms_sim):
    httpx.delete(f"{sink.http_url}/messages")
    httpx.delete(f"{sms_sim.url}/v1/messages")
    sms = HttpSms(sms_sim.url, "sms_test_key")
    yield Outbox(api=api, sink=sink, sms_sim=sms_sim, mailer=SmtpMailer("127.0.0.1", sink.smtp_port, SENDER), sms=sms)
    sms.close()


def rendered_order(api) -> str:
    """An accepted order whose design has been rendered, so it has a preview image."""
    order_id = place(api)
    svc = api.services
    render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
    return order_id


def rows(api, order_id: str) -> list[dict]:
    """The order's rows the notify stage has worked on (not those only reserved, still `queued` untried:
    placing the order reserves its `received` messages, which these tests mostly leave unsent)."""
    n = t.notifications
    with api.services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(n).where(n.c.order_id == order_id)
                                                       .order_by(n.c.milestone, n.c.channel))
                if not (r.status == "queued" and r.attempts == 0 and "resend" not in r.milestone)]


def timeline(api, order_id: str, prefix: str = "notification.") -> list[tuple[str, dict]]:
    e = t.order_events
    with api.services.engine.connect() as conn:
        return [(r.type, r.payload) for r in conn.execute(
            select(e.c.type, e.c.payload).where(e.c.order_id == order_id, e.c.type.startswith(prefix))
            .order_by(e.c.id))]


def opt_out(api, order_id: str, channel: Channel) -> None:
    with api.services.uow() as uow:
        customer = uow.orders.get(order_id).customer
        setattr(customer, f"{channel}_opt_out", True)
        uow.commit()


def order_number(api, order_id: str) -> str:
    with api.services.engine.connect() as conn:
        return conn.scalar(select(t.orders.c.number).where(t.orders.c.id == order_id))


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing after the hand-over runs, not even `except Exception`."""


class DiesAfterSending:
    def __init__(self, mailer: SmtpMailer) -> None:
        self.mailer = mailer

    def send(self, **kwargs) -> None:
        self.mailer.send(**kwargs)
        raise WorkerKilled


# ---- one e-mail, and what is in it ---------------------------------------------------------------------------


def test_a_milestone_email_has_text_and_html_the_order_number_and_a_working_preview_image(outbox, api):
    # given a rendered order
    order_id = rendered_order(api)
    # when its preview_ready e-mail goes out
    assert outbox.send(order_id, Milestone.PREVIEW_READY) == "sent"
    # then the sink received one multipart message with a stable Message-ID
    [summary] = outbox.emails()
    mail = outbox.email(summary["id"])
    number = order_number(api, order_id)
    assert summary["rcpt_tos"] == ["ada@example.com"] and summary["from"] == SENDER
    assert summary["message_id"] == f"<{notification_id(order_id, 'preview_ready', 'email')}@pressroom.dev>"
    assert number in mail["subject"] and number in mail["text"] and number in mail["html"]
    assert "Hi Ada," in mail["text"]
    # and the preview image link is a signed link the API serves
    [src] = [part.split('"')[0] for part in mail["html"].split('<img src="')[1:]]
    link = urlsplit(src.replace("&amp;", "&"))
    assert link.path.endswith("/preview") and link.path in mail["text"]
    image = api.client.get(f"{link.path}?{link.query}")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_a_cancelled_order_gets_one_email_and_one_text_saying_nothing_will_be_charged(outbox, api):
    # given an order the customer cancelled before the gate
    order_id = place(api)
    svc = api.services
    assert cancel_order(order_id, by="customer", reason="changed my mind", uow=svc.uow(), payments=api.payments,
                        now=svc.now()) == "cancelled"
    # when its cancelled messages go out (twice: a redelivery)
    for channel in Channel:
        assert outbox.send(order_id, Milestone.CANCELLED, channel) == "sent"
        assert outbox.send(order_id, Milestone.CANCELLED, channel) == "done"
    # then the customer has one e-mail and one text, each naming the order and the released amount
    number = order_number(api, order_id)
    [summary] = outbox.emails()
    mail = outbox.email(summary["id"])
    assert mail["subject"] == f"Order {number} is cancelled"
    assert "nothing will be printed" in mail["text"] and "released" in mail["html"]
    [text] = outbox.texts()
    assert number in text["body"] and "nothing will be charged" in text["body"]


def test_the_shipped_email_carries_the_tracking_link(outbox, api):
    # given an order with a shipment that has a tracking code
    order_id = rendered_order(api)
    now = api.services.now()
    with api.services.engine.begin() as conn:
        conn.execute(insert(t.shipments).values(id="shp_1", order_id=order_id, status="purchased", carrier="USPS",
                                                tracking_code="9400TEST0001", created_at=now,
                                                status_changed_at=now, version=1))
    # when the shipped e-mail and text go out
    assert outbox.send(order_id, Milestone.SHIPPED) == "sent"
    assert outbox.send(order_id, Milestone.SHIPPED, Channel.SMS) == "sent"
    # then both carry the tracking page's link
    mail = outbox.email(outbox.emails()[0]["id"])
    tracking = "http://127.0.0.1:8200/track/9400TEST0001"
    assert tracking in mail["text"] and f'href="{tracking}"' in mail["html"] and "USPS" in mail["text"]
    [text] = outbox.texts()
    assert tracking in text["body"] and text["to"] == "+44 20 7946 0958"


# ---- exactly once --------------------------------------------------------------------------------------------


def test_five_concurrent_deliveries_of_one_milestone_send_one_email_and_one_text(outbox, api):
    order_id = rendered_order(api)
    outcomes: list[str] = []
    start = threading.Barrier(10)

    def deliver(channel: Channel) -> None:
        start.wait()
        outcomes.append(outbox.send(order_id, Milestone.RECEIVED, channel))

    threads = [threading.Thread(target=deliver, args=(channel,)) for channel in Channel for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("sent") == 2 and set(outcomes) <= {"sent", "in_flight", "done"}
    assert len(outbox.emails()) == 1 and len(outbox.texts()) == 1
    assert [(r["channel"], r["status"], r["attempts"]) for r in rows(api, order_id)] == [
        ("email", "sent", 1), ("sms", "sent", 1)]


def test_a_redelivered_message_sends_nothing_more(outbox, api):
    order_id = rendered_order(api)
    assert outbox.send(order_id, Milestone.RECEIVED) == "sent"
    # when the broker delivers the same message again
    assert outbox.send(order_id, Milestone.RECEIVED) == "done"
    assert len(outbox.emails()) == 1 and len(timeline(api, order_id)) == 1


def test_a_worker_killed_between_sending_and_recording_never_sends_twice_and_surfaces_it(outbox, api):
    order_id = rendered_order(api)
    # given a worker that hands the e-mail over and dies before recording it
    with pytest.raises(WorkerKilled):
        outbox.send(order_id, Milestone.QA_PASSED, mailer=DiesAfterSending(outbox.mailer))
    assert len(outbox.emails()) == 1 and rows(api, order_id)[0]["status"] == "sending"
    # when the message is redelivered soon after, it is left alone
    assert outbox.send(order_id, Milestone.QA_PASSED) == "in_flight"
    # and once the claim is stale it is surfaced as unknown, never resent
    later = api.services.now() + timedelta(minutes=11)
    assert outbox.send(order_id, Milestone.QA_PASSED, now=lambda: later) == "unknown"
    assert outbox.send(order_id, Milestone.QA_PASSED, now=lambda: later) == "done"
    assert len(outbox.emails()) == 1
    assert rows(api, order_id)[0]["status"] == "unknown"
    assert [kind for kind, _ in timeline(api, order_id)] == ["notification.unknown"]
    with api.services.engine.connect() as conn:
        alert = conn.execute(select(t.alerts.c.kind, t.alerts.c.message)).one()
    assert alert.kind == "notification" and "Message-ID" in alert.message


def test_the_scheduler_sweep_surfaces_a_dead_workers_claim_without_a_redelivery(outbox, api):
    order_id = rendered_order(api)
    with pytest.raises(WorkerKilled):
        outbox.send(order_id, Milestone.DELIVERED, mailer=DiesAfterSending(outbox.mailer))
    svc = api.services
    assert surface_stale_notifications(uow=svc.uow(), now=svc.now()) == 0
    assert surface_stale_notifications(uow=svc.uow(), now=svc.now() + timedelta(minutes=11)) == 1
    assert rows(api, order_id)[0]["status"] == "unknown" and len(outbox.emails()) == 1


def test_an_unreachable_mail_server_is_tried_again_and_then_sends_once(outbox, api, sink):
    order_id = rendered_order(api)
    closed = SmtpMailer("127.0.0.1", 1, SENDER)  # nothing listens on port 1: refused, nothing went out
    assert outbox.send(order_id, Milestone.PRODUCTION_STARTED, mailer=closed) == "failed"
    assert rows(api, order_id)[0]["status"] == "failed"
    assert outbox.send(order_id, Milestone.PRODUCTION_STARTED) == "sent"
    [row] = rows(api, order_id)
    assert (row["status"], row["attempts"], row["error"]) == ("sent", 2, None)
    assert len(outbox.emails()) == 1
    assert [kind for kind, _ in timeline(api, order_id)] == ["notification.failed", "notification.sent"]


def test_after_the_last_attempt_fails_it_gives_up_and_alerts_support(outbox, api):
    order_id = rendered_order(api)
    closed = SmtpMailer("127.0.0.1", 1, SENDER)
    assert outbox.send(order_id, Milestone.RECEIVED, mailer=closed, max_attempts=2) == "failed"
    assert outbox.send(order_id, Milestone.RECEIVED, mailer=closed, max_attempts=2) == "gave_up"
    assert outbox.send(order_id, Milestone.RECEIVED, max_attempts=2) == "gave_up"
    assert outbox.emails() == []
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(t.alerts.c.kind)) == "notification"


def test_a_hand_over_that_breaks_off_is_unknown_and_not_retried(outbox, api):
    class BreaksOff:
        def send(self, **_kwargs) -> None:
            raise DeliveryUnknown("connection reset during DATA")

    order_id = rendered_order(api)
    assert outbox.send(order_id, Milestone.RECEIVED, mailer=BreaksOff()) == "unknown"
    assert outbox.send(order_id, Milestone.RECEIVED) == "done"
    assert outbox.emails() == [] and rows(api, order_id)[0]["status"] == "unknown"


def test_a_text_whose_hand_over_broke_off_is_tried_again_and_the_customer_gets_one(outbox, api):
    # given an SMS the provider took, but whose answer never came back (the connection reset)
    class TakesItThenBreaksOff:
        def send(self, **kwargs) -> None:
            outbox.sms.send(**kwargs)
            raise DeliveryUnknown("connection reset by peer")

    order_id = rendered_order(api)
    svc = api.services
    assert send_notification(order_id, Milestone.RECEIVED, "sms", uow=svc.uow(), mailer=outbox.mailer,
                             sms=TakesItThenBreaksOff(), links=outbox.links, now=svc.now) == "failed"
    # when it is tried again with the same idempotency key
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.SMS) == "sent"
    # then the provider absorbed the repeat: one text, and nobody was alerted
    assert len(outbox.texts()) == 1 and rows(api, order_id)[0]["status"] == "sent"
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.alerts)) == 0


def test_a_text_whose_worker_died_mid_send_is_tried_again_once_stale_and_sent_once(outbox, api):
    order_id = rendered_order(api)
    svc = api.services

    class DiesAfterTexting:
        def send(self, **kwargs) -> None:
            outbox.sms.send(**kwargs)
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        send_notification(order_id, Milestone.SHIPPED, "sms", uow=svc.uow(), mailer=outbox.mailer,
                          sms=DiesAfterTexting(), links=outbox.links, now=svc.now)
    later = svc.now() + timedelta(minutes=11)
    # the stale claim is handed back for another try, not surfaced as unknown
    assert outbox.send(order_id, Milestone.SHIPPED, Channel.SMS, now=lambda: later) == "failed"
    assert outbox.send(order_id, Milestone.SHIPPED, Channel.SMS, now=lambda: later) == "sent"
    assert len(outbox.texts()) == 1
    assert [kind for kind, _ in timeline(api, order_id)] == ["notification.sent"]


# ---- opt-outs and the timeline -------------------------------------------------------------------------------


def test_opting_out_of_email_stops_the_email_but_not_the_text_and_it_is_recorded(outbox, api):
    order_id = rendered_order(api)
    opt_out(api, order_id, Channel.EMAIL)
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.EMAIL) == "skipped_opt_out"
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.SMS) == "sent"
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.EMAIL) == "done"
    assert outbox.emails() == [] and len(outbox.texts()) == 1
    assert [(r["channel"], r["status"]) for r in rows(api, order_id)] == [("email", "skipped_opt_out"),
                                                                         ("sms", "sent")]
    assert [(kind, payload.get("reason")) for kind, payload in timeline(api, order_id)] == [
        ("notification.skipped", "skipped_opt_out"), ("notification.sent", None)]


def test_opting_out_of_sms_stops_only_the_text(outbox, api):
    order_id = rendered_order(api)
    opt_out(api, order_id, Channel.SMS)
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.SMS) == "skipped_opt_out"
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.EMAIL) == "sent"
    assert outbox.texts() == [] and len(outbox.emails()) == 1


def test_a_customer_without_a_phone_gets_no_text_and_the_row_says_why(outbox, api):
    body = api.order_body(api.upload()["id"])
    body["customer"]["phone"] = ""
    order_id = api.client.post("/v1/orders", json=body).json()["id"]
    assert outbox.send(order_id, Milestone.RECEIVED, Channel.SMS) == "no_address"
    assert outbox.texts() == [] and rows(api, order_id)[0]["status"] == "no_address"


def test_every_message_is_on_the_timeline_once_with_its_subject_and_preview_and_no_pii(outbox, api):
    order_id = rendered_order(api)
    for milestone in (Milestone.RECEIVED, Milestone.PREVIEW_READY):
        for channel in Channel:
            assert outbox.send(order_id, milestone, channel) == "sent"
            outbox.send(order_id, milestone, channel)  # a redelivery adds nothing
    events = timeline(api, order_id)
    assert [(p["milestone"], p["channel"]) for kind, p in events if kind == "notification.sent"] == [
        ("received", "email"), ("received", "sms"), ("preview_ready", "email"), ("preview_ready", "sms")]
    number = order_number(api, order_id)
    email_event = events[2][1]
    assert number in email_event["subject"] and email_event["preview"] and email_event["message_id"]
    stored = json.dumps(events) + json.dumps(rows(api, order_id), default=str)
    assert "ada@example.com" not in stored and "Ada" not in stored and "7946" not in stored
    assert "sig=" not in stored  # no signed customer or preview links in the clear


# ---- support resend ------------------------------------------------------------------------------------------


def run_queued_notifications(api, outbox) -> list[str]:
    """What the notify worker would do with the messages waiting on the stub broker's `notify` queue."""
    outcomes = []
    for raw in api.queued("notify"):
        kwargs = dramatiq.Message.decode(raw).kwargs
        outcomes.append(outbox.send(kwargs.pop("order_id"), kwargs.pop("milestone"), kwargs.pop("channel"),
                                    **kwargs))
    api.broker.queues["notify"].queue.clear()
    return outcomes


def test_a_support_resend_sends_exactly_one_more_and_is_audited(outbox, api):
    order_id = rendered_order(api)
    assert outbox.send(order_id, Milestone.PREVIEW_READY) == "sent"
    api.broker.queues["notify"].queue.clear()  # the milestone messages intake and render queued on their own
    svc = api.services
    # when an agent resends it (and the worker's message is redelivered)
    key = resend(order_id, Milestone.PREVIEW_READY, Channel.EMAIL, "sam", uow=svc.uow(), now=svc.now())
    queued = api.queued("notify")
    api.broker.queues["notify"].queue.extend(queued)
    assert key == "preview_ready.resend1"
    assert sorted(run_queued_notifications(api, outbox)) == ["done", "sent"]
    # then the customer has exactly one more e-mail, with its own Message-ID, and the agent is on record
    mails = outbox.emails()
    assert len(mails) == 2 and mails[0]["message_id"] != mails[1]["message_id"]
    assert [(r["milestone"], r["status"]) for r in rows(api, order_id)] == [
        ("preview_ready", "sent"), ("preview_ready.resend1", "sent")]
    with svc.engine.connect() as conn:
        audit = conn.execute(select(t.audit_log)).one()
    assert (audit.actor, audit.action, audit.order_id) == ("sam", "notification.resend", order_id)
    assert audit.after == {"milestone": "preview_ready.resend1", "status": "queued"}
    assert [kind for kind, _ in timeline(api, order_id)] == [
        "notification.sent", "notification.resend_requested", "notification.sent"]
    # and a second resend is a second new row
    assert resend(order_id, "preview_ready", "email", "sam", uow=svc.uow(), now=svc.now()) == "preview_ready.resend2"


def test_resend_refuses_a_message_that_was_never_due_and_an_opted_out_channel(outbox, api):
    order_id = rendered_order(api)
    api.broker.queues["notify"].queue.clear()  # the milestone messages intake and render queued on their own
    svc = api.services
    with pytest.raises(NotFound):
        resend(order_id, Milestone.SHIPPED, Channel.EMAIL, "sam", uow=svc.uow(), now=svc.now())
    outbox.send(order_id, Milestone.RECEIVED, Channel.SMS)
    opt_out(api, order_id, Channel.SMS)
    with pytest.raises(NotAllowed):
        resend(order_id, Milestone.RECEIVED, Channel.SMS, "sam", uow=svc.uow(), now=svc.now())
    assert api.queued("notify") == []


def test_a_milestone_queues_one_message_per_channel_after_commit(api):
    order_id = rendered_order(api)
    api.broker.queues["notify"].queue.clear()
    with api.services.uow() as uow:
        notify_milestone(order_id, Milestone.SHIPPED, uow=uow)
        assert api.queued("notify") == []
        uow.commit()
    sent = [dramatiq.Message.decode(raw) for raw in api.queued("notify")]
    assert [(m.actor_name, m.kwargs["channel"]) for m in sent] == [("notify.send_notification", "email"),
                                                                    ("notify.send_notification", "sms")]


# ---- texts and the SMS sim -----------------------------------------------------------------------------------


def test_every_milestone_renders_on_both_channels_and_html_escapes_the_name():
    context = MessageContext(order_number="PR-7", first_name="<b>Bo</b>", status_url="https://x.test/o?a=1&b=2",
                             preview_image_url="https://x.test/p.jpg", tracking_url="https://t.test/1Z",
                             tracking_code="1Z", carrier="UPS")
    for milestone in Milestone:
        mail = render_message(milestone, Channel.EMAIL, context)
        text = render_message(milestone, Channel.SMS, context)
        assert "PR-7" in mail.subject and "PR-7" in mail.text and "PR-7" in mail.html and "PR-7" in text.text
        assert "&lt;b&gt;Bo&lt;/b&gt;" in mail.html and "<b>Bo</b>" not in mail.html
        assert "https://x.test/o?a=1&amp;b=2" in mail.html and "Bo" not in mail.preview + mail.subject
        assert text.html is None and len(text.text) <= 320


def test_the_sms_sim_keeps_texts_and_absorbs_a_repeated_idempotency_key(sms_sim):
    httpx.delete(f"{sms_sim.url}/v1/messages")
    headers = {"Authorization": "Bearer k", "Idempotency-Key": "ntf_same"}
    first = httpx.post(f"{sms_sim.url}/v1/messages", json={"to": "+15550100", "body": "hi"}, headers=headers)
    again = httpx.post(f"{sms_sim.url}/v1/messages", json={"to": "+15550100", "body": "hi"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200) and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert httpx.post(f"{sms_sim.url}/v1/messages", json={"to": "+15550100", "body": "hi"}).status_code == 401
    assert httpx.post(f"{sms_sim.url}/v1/messages", json={"to": "me", "body": "hi"},
                      headers={"Authorization": "Bearer k"}).status_code == 422
    assert [m["body"] for m in httpx.get(f"{sms_sim.url}/v1/messages").json()] == ["hi"]
    assert httpx.get(f"{sms_sim.url}/sim/ledger").json() == {"sent": 1, "replayed": {"ntf_same": 1}}


# ---- PostgreSQL: the claim under real row locks ----------------------------------------------------------------


@pytest.mark.integration
def test_on_postgresql_five_concurrent_deliveries_send_one_email(pg_url, tmp_path, sink, sms_sim):
    api = ApiHarness(pg_url, tmp_path)
    try:
        httpx.delete(f"{sink.http_url}/messages")
        outbox = Outbox(api=api, sink=sink, sms_sim=sms_sim, sms=HttpSms(sms_sim.url, "k"),
                        mailer=SmtpMailer("127.0.0.1", sink.smtp_port, SENDER))
        order_id = rendered_order(api)
        start = threading.Barrier(5)
        outcomes: list[str] = []

        def deliver() -> None:
            start.wait()
            outcomes.append(outbox.send(order_id, Milestone.QA_PASSED))

        threads = [threading.Thread(target=deliver) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert outcomes.count("sent") == 1 and len(outbox.emails()) == 1
        assert len(timeline(api, order_id, "notification.sent")) == 1
    finally:
        api.services.engine.dispose()


def test_intake_and_render_queue_the_received_and_preview_milestones_on_both_channels(api):
    order_id = rendered_order(api)
    queued = [dramatiq.Message.decode(raw).kwargs for raw in api.queued("notify")]
    assert sorted((m["milestone"], m["channel"]) for m in queued if m["order_id"] == order_id) == [
        ("preview_ready", "email"), ("preview_ready", "sms"), ("received", "email"), ("received", "sms")]
