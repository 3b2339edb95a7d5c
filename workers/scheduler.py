"""The scheduler process: the reconciler and the queue sampler on a fixed beat (`python -m workers.scheduler`)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import datetime, timedelta

from adapters.broker import oldest_message_at, queue_stats
from adapters.partners import PartnerRefused, PartnerUnavailable
from core.services.notify import surface_stale_notifications
from core.services.qa import apply_due_verdicts
from core.services.reconcile import reconcile
from core.services.shipping import find_silent_parcels
from core.states import JobStatus
from workers.bootstrap import Container, container
from workers.cpu import measured
from workers.monitor import monitor

log = logging.getLogger(__name__)
SAMPLE_RETENTION = timedelta(days=2)


def sample_queues(c: Container) -> None:
    """Record each stage queue's depth and oldest-message age for the control room."""
    now = c.now()
    rows = [{"at": now, "queue": s.queue, "depth": s.depth, "delayed": s.delayed, "dead": s.dead,
             "oldest_age_s": s.oldest_age_s} for s in queue_stats(c.redis)]
    with c.uow() as uow:
        uow.queue_samples.record(rows)
        uow.queue_samples.prune(now - SAMPLE_RETENTION)
        uow.commit()


def sync_inventory(c: Container) -> None:
    """Pull each active partner's blank stock, so intake's availability check sees what partners have."""
    with c.uow() as uow:
        partners = list(uow.partners.capacity())
    for partner_id in partners:
        try:
            stock = c.partners.stock(c.partner_endpoint(partner_id))
        except (PartnerUnavailable, PartnerRefused) as error:
            log.warning("inventory sync: partner %s: %s", partner_id, error.message)
            continue
        with c.uow() as uow:
            uow.stock.sync(partner_id, stock, at=c.now())
            uow.commit()


def redrive(c: Container) -> int:
    """The reconciler, told how far behind each queue is, so it re-sends only messages that were lost."""
    oldest: dict[str, datetime | None] = {}

    def oldest_message(queue: str) -> datetime | None:
        if queue not in oldest:
            oldest[queue] = oldest_message_at(c.redis, queue)
        return oldest[queue]

    return reconcile(c.uow(), now=c.now(), deadlines_s=c.settings.stage_deadlines_s,
                     inspect_after_s=c.settings.job_deadlines_s[JobStatus.PRINTED], oldest_message=oldest_message)


def tick(c: Container, beat: int = 0) -> None:
    """One beat; each job runs even if another failed, and failures are logged with their traceback."""
    every = max(1, round(c.settings.inventory_sync_every_s / c.settings.reconcile_every_s))
    jobs = [("reconcile", lambda: redrive(c)), ("sample_queues", lambda: sample_queues(c)),
            ("batcher", c.run_batcher),
            ("silent_parcels", lambda: find_silent_parcels(c.uow(), now=c.now(), days=c.settings.no_scan_days)),
            ("stale_notifications", lambda: surface_stale_notifications(uow=c.uow(), now=c.now())),
            ("due_verdicts", lambda: apply_due_verdicts(uow=c.uow(), now=c.now(), new_id=c.ids.new,
                                                        rules=c.qa_rules()))]
    if beat % every == 0:
        jobs.append(("sync_inventory", lambda: sync_inventory(c)))
    if beat % max(1, round(c.settings.monitor_every_s / c.settings.reconcile_every_s)) == 0:
        jobs.append(("monitor", lambda: monitor(c)))  # last: it sees this beat's re-drives and holds
    cpu = c.redis if os.environ.get("PRESSROOM_STAGE_CPU") == "1" else None  # for the pipeline bench
    for name, job in jobs:
        try:
            with measured(cpu, f"scheduler.{name}"):
                job()
        except Exception:
            log.exception("scheduler job %s failed; it runs again next beat", name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    c = container()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("scheduler running every %.1fs", c.settings.reconcile_every_s)
    beat = 0
    while not stop.is_set():
        tick(c, beat)
        beat += 1
        stop.wait(c.settings.reconcile_every_s)


if __name__ == "__main__":
    main()
