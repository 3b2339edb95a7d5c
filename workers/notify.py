"""Actors on the `notify` queue: one customer message per (order, milestone, channel)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import dramatiq

from core.commands import SendNotification, actor_name
from core.notifications import notification_links
from core.services import notify
from workers.bootstrap import container

if TYPE_CHECKING:  # the providers' clients (httpx) load with the first message sent, not at boot
    from adapters.email import SmtpMailer
    from adapters.sms import HttpSms

# A `sending` row is either finished or stale (surfaced as unknown) by then.
LOOK_AGAIN_MS = int(notify.STALE_AFTER.total_seconds() * 1000) + 60_000


@functools.cache
def mailer() -> SmtpMailer:
    from adapters.email import SmtpMailer

    s = container().settings
    return SmtpMailer(s.smtp_host, s.smtp_port, s.smtp_sender, username=s.smtp_username, password=s.smtp_password,
                      starttls=s.smtp_starttls)


@functools.cache
def sms() -> HttpSms:
    from adapters.sms import HttpSms

    s = container().settings
    return HttpSms(s.sms_url, s.sms_api_key)


@dramatiq.actor(actor_name=actor_name(SendNotification), queue_name=SendNotification.QUEUE,
                max_retries=notify.MAX_ATTEMPTS + 5, min_backoff=5_000, max_backoff=600_000, time_limit=2 * 60_000)
def send_notification(order_id: str, milestone: str, channel: str, resend: int = 0) -> None:
    c = container()
    outcome = notify.send_notification(order_id, milestone, channel, resend=resend, uow=c.uow(), mailer=mailer(),
                                       sms=sms(), links=notification_links(c.settings, now=c.now()), now=c.now)
    if outcome == "in_flight":  # another worker holds it: look again once it has finished or gone stale
        raise dramatiq.Retry("another attempt is sending it", delay=LOOK_AGAIN_MS)
    if outcome == "failed":  # nothing went out: try again on the backoff curve
        raise dramatiq.Retry("the provider refused or was unreachable")
