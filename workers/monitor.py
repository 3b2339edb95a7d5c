"""The scheduler's monitor job: measure the broker, run the monitor service, then e-mail new alerts to ops."""

from __future__ import annotations

import functools
import logging

from adapters.broker import dead_lettered_since, queue_stats
from adapters.email import SmtpMailer
from core.monitors import QueueMeasure, default_thresholds
from core.services.monitor import MonitorRun, notify_new_alerts, run_monitor
from workers.bootstrap import Container

log = logging.getLogger(__name__)


def measure_queues(c: Container, error_window_s: float) -> list[QueueMeasure]:
    """Every stage queue's depth and oldest-message age now, and its dead letters within the error window."""
    dead = dead_lettered_since(c.redis, (c.now().timestamp() - error_window_s) * 1000)
    return [QueueMeasure(queue=s.queue, depth=s.depth, oldest_age_s=s.oldest_age_s, dead_lettered=dead[s.queue])
            for s in queue_stats(c.redis)]


@functools.cache
def _mailer(host: str, port: int, sender: str, username: str, password: str, starttls: bool) -> SmtpMailer:
    return SmtpMailer(host, port, sender, username=username, password=password, starttls=starttls)


def mailer(c: Container) -> SmtpMailer:
    s = c.settings
    return _mailer(s.smtp_host, s.smtp_port, s.smtp_sender, s.smtp_username, s.smtp_password, s.smtp_starttls)


def monitor(c: Container) -> MonitorRun:
    """One monitor pass: alerts raised, updated and cleared in one commit; e-mails only after it."""
    run = run_monitor(c.uow(), queues=lambda window_s: measure_queues(c, window_s), now=c.now(),
                      defaults=default_thresholds(c.settings))
    notify_new_alerts(c.uow(), mailer=mailer(c), to=c.settings.ops_email, now=c.now(),
                      dashboard_url=c.settings.dashboard_url)
    return run
