"""The scheduler process: the reconciler and the queue sampler on a fixed beat (`python -m workers.scheduler`)."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from adapters.broker import queue_stats
from core.services.reconcile import reconcile
from workers.bootstrap import Container, container

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


def tick(c: Container) -> None:
    """One beat; each job runs even if another failed, and failures are logged with their traceback."""
    for job in (lambda: reconcile(c.uow(), now=c.now(), deadlines_s=c.settings.stage_deadlines_s),
                lambda: sample_queues(c)):
        try:
            job()
        except Exception:
            log.exception("scheduler job failed; it runs again next beat")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    c = container()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("scheduler running every %.1fs", c.settings.reconcile_every_s)
    while not stop.is_set():
        tick(c)
        stop.wait(c.settings.reconcile_every_s)


if __name__ == "__main__":
    main()
