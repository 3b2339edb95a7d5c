"""The reconciler: re-send the stage message of anything that has sat too long, so no lost message loses work."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Mapping

from core.commands import (
    ApplyCarrierEvent,
    ApplyPartnerEvent,
    BuyLabel,
    InspectJob,
    RenderAsset,
    RouteOrder,
    SendNotification,
    StageCommand,
    SubmitBatch,
)
from core.events import EventType, Noted
from core.services import notify
from core.states import OrderStatus

NOTIFY_AFTER_S = 300.0
"""A queued or failed customer message untouched this long has lost its queue message (the notify actor's
retries back off to at most 600 s, but each attempt stamps the row): it is queued again."""

log = logging.getLogger(__name__)

REDRIVE: Mapping[OrderStatus, Callable[[str], StageCommand]] = {
    OrderStatus.ACCEPTED: lambda order_id: RenderAsset(order_id=order_id),
    OrderStatus.RENDERING: lambda order_id: RenderAsset(order_id=order_id),
    OrderStatus.READY_FOR_PRODUCTION: lambda order_id: RouteOrder(order_id=order_id),
    OrderStatus.READY_TO_SHIP: lambda order_id: BuyLabel(order_id=order_id),
    OrderStatus.LABEL_CREATED: lambda order_id: BuyLabel(order_id=order_id),  # a no-op unless the label is missing
}
"""Which message moves an order on from each status; statuses that wait on the outside world are absent."""


INBOX_REDRIVE: Mapping[str, Callable[[int], StageCommand]] = {
    "partner": lambda inbox_id: ApplyPartnerEvent(inbox_id=inbox_id),
    "carrier": lambda inbox_id: ApplyCarrierEvent(inbox_id=inbox_id),
}
"""Which message applies a stored webhook, by the inbox row's source kind ("partner:acme" → "partner")."""


def reconcile(uow, *, now: datetime, deadlines_s: Mapping[OrderStatus, float], limit: int = 500,
              batch_after_s: float = 120.0, inbox_after_s: float = 60.0,
              notify_after_s: float = NOTIFY_AFTER_S, inspect_after_s: float = 600.0) -> int:
    """Re-drive orders past their stage deadline; returns how many messages were sent (after commit).

    Idempotent by construction: the actors guard on state, so a re-drive of an order whose message was
    only slow makes the second run a no-op.
    """
    cutoffs = {status: now - timedelta(seconds=deadlines_s[status]) for status in REDRIVE}
    with uow:
        stuck = uow.orders.stuck(cutoffs, limit=limit)
        for order in stuck:
            command = REDRIVE[order.status](order.id)
            order.redriven_at = now
            uow.timeline.add(Noted(order_id=order.id, at=now, source="worker:reconciler",
                                   kind=EventType.STAGE_REDRIVEN, key=f"redrive:{order.id}:{now.isoformat()}",
                                   details={"status": str(order.status), "message": type(command).__name__}))
            uow.defer(command)
        uow.commit()
    if stuck:
        log.warning("re-drove %d orders past their stage deadline", len(stuck))
    return (len(stuck) + _redrive_batches(uow, now=now, after_s=batch_after_s, limit=limit)
            + _redrive_inbox(uow, now=now, after_s=inbox_after_s, limit=limit)
            + _redrive_inspections(uow, now=now, after_s=inspect_after_s, limit=limit)
            + _redrive_notifications(uow, now=now, after_s=notify_after_s, limit=limit))


def _redrive_batches(uow, *, now: datetime, after_s: float, limit: int) -> int:
    """A released batch whose SubmitBatch was lost (or dead-lettered in a long outage) is sent again."""
    with uow:
        batches = uow.batches.stuck_released(before=now - timedelta(seconds=after_s), limit=limit)
        for batch in batches:
            batch.redriven_at = now
            uow.defer(SubmitBatch(batch_id=batch.id))
        uow.commit()
    if batches:
        log.warning("re-sent %d released batches to their partners", len(batches))
    return len(batches)


def _redrive_inspections(uow, *, now: datetime, after_s: float, limit: int) -> int:
    """A printed job that QA never inspected (its InspectJob lost with a flushed or restarted Redis) is sent to
    QA again; the order waits in `qa` on its jobs, so no order-level re-drive would reach it. The QA stage
    inspects a job once, so a message that was only slow and now runs twice changes nothing."""
    with uow:
        jobs = uow.jobs.uninspected(before=now - timedelta(seconds=after_s), limit=limit)
        for job in jobs:
            job.redriven_at = now
            uow.timeline.add(Noted(order_id=job.order_id, at=now, source="worker:reconciler",
                                   kind=EventType.STAGE_REDRIVEN, key=f"redrive:{job.id}:{now.isoformat()}",
                                   details={"job": job.id, "status": str(job.status), "message": "InspectJob"}))
            uow.defer(InspectJob(job_id=job.id))
        uow.commit()
    if jobs:
        log.warning("re-sent %d printed jobs to QA", len(jobs))
    return len(jobs)


def _redrive_inbox(uow, *, now: datetime, after_s: float, limit: int) -> int:
    """A webhook we acknowledged but never applied (its message lost) is applied again: the sender won't
    resend what we already answered 2xx."""
    with uow:
        rows = uow.inbox.stuck(before=now - timedelta(seconds=after_s), kinds=tuple(INBOX_REDRIVE), limit=limit)
        for inbox_id, source in rows:
            uow.inbox.touch(inbox_id, at=now)
            uow.defer(INBOX_REDRIVE[source.split(":", 1)[0]](inbox_id))
        uow.commit()
    if rows:
        log.warning("re-queued %d stored webhooks that were never applied", len(rows))
    return len(rows)


def _redrive_notifications(uow, *, now: datetime, after_s: float, limit: int) -> int:
    """A customer message reserved (or failed) but never sent, its queue message gone with a flushed or
    restarted Redis, is queued again. The notify stage's claim still lets exactly one attempt send it, so a
    message that was only slow and now runs twice goes out once."""
    with uow:
        rows = uow.notifications.lost(idle_before=now - timedelta(seconds=after_s),
                                      max_attempts=notify.MAX_ATTEMPTS, limit=limit)
        for row in rows:
            milestone, _, resend = str(row["milestone"]).partition(".resend")
            uow.notifications.mark_redriven(row["id"], at=now)
            uow.defer(SendNotification(order_id=row["order_id"], milestone=milestone, channel=row["channel"],
                                       resend=int(resend or 0)))
        uow.commit()
    if rows:
        log.warning("re-queued %d customer messages that were never sent", len(rows))
    return len(rows)
