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
    SubmitBatch,
)
from core.events import EventType, Noted
from core.services import notify
from core.states import OrderStatus

NOTIFY_AFTER_S = 300.0
"""A queued or failed customer message untouched this long has lost its queue message (the notify actor's
retries back off to at most 600 s, but each attempt stamps the row): it is queued again."""

SENT_WITHIN_S = 15.0
"""How long after an item's stamp (status change, receipt, last re-drive) its message may reach the queue: it is
sent after the commit, and a loaded machine stretches that gap."""

log = logging.getLogger(__name__)

REDRIVE: Mapping[OrderStatus, type[RenderAsset | RouteOrder | BuyLabel]] = {
    OrderStatus.ACCEPTED: RenderAsset,
    OrderStatus.RENDERING: RenderAsset,
    OrderStatus.READY_FOR_PRODUCTION: RouteOrder,
    OrderStatus.READY_TO_SHIP: BuyLabel,
    OrderStatus.LABEL_CREATED: BuyLabel,  # a no-op unless the label is missing
}
"""Which message moves an order on from each status; statuses that wait on the outside world are absent."""


INBOX_REDRIVE: Mapping[str, type[ApplyPartnerEvent | ApplyCarrierEvent]] = {
    "partner": ApplyPartnerEvent,
    "carrier": ApplyCarrierEvent,
}
"""Which message applies a stored webhook, by the inbox row's source kind ("partner:acme" → "partner")."""

OldestMessage = Callable[[str], datetime | None]
"""When the oldest message still on a queue (waiting, or taken by a live worker) was sent; None if it holds none."""


def reconcile(uow, *, now: datetime, deadlines_s: Mapping[OrderStatus, float], limit: int = 500,
              batch_after_s: float = 120.0, inbox_after_s: float = 60.0,
              notify_after_s: float = NOTIFY_AFTER_S, inspect_after_s: float = 600.0,
              oldest_message: OldestMessage = lambda queue: None) -> int:
    """Re-drive work whose message was lost; returns how many messages were sent (after commit).

    Lost, not merely late: an item is re-driven once it is past its deadline *and* older than the oldest
    message still on the queue its message went to (`oldest_message`). The queue is first in, first out, so a
    queue still holding a message sent before the item was stamped may still hold the item's own: the stage is
    behind, and a re-drive would only add a second message behind the first (the last pipeline bench re-sent
    280+ webhooks and renders that way). An empty queue, or one flushed with Redis, re-drives at the deadline.

    Idempotent by construction: the actors guard on state, so a re-drive of an order whose message was
    only slow makes the second run a no-op.
    """
    def lost_before(queue: str, after_s: float) -> datetime:
        cutoff = now - timedelta(seconds=after_s)
        oldest = oldest_message(queue)
        return cutoff if oldest is None else min(cutoff, oldest - timedelta(seconds=SENT_WITHIN_S))

    cutoffs = {status: lost_before(command.QUEUE, deadlines_s[status]) for status, command in REDRIVE.items()}
    with uow:
        stuck = uow.orders.stuck(cutoffs, limit=limit)
        for order in stuck:
            command = REDRIVE[order.status](order_id=order.id)
            order.redriven_at = now
            uow.timeline.add(Noted(order_id=order.id, at=now, source="worker:reconciler",
                                   kind=EventType.STAGE_REDRIVEN, key=f"redrive:{order.id}:{now.isoformat()}",
                                   details={"status": str(order.status), "message": type(command).__name__}))
            uow.defer(command)
        uow.commit()
    if stuck:
        log.warning("re-drove %d orders past their stage deadline", len(stuck))
    inbox_cutoffs = {kind: lost_before(command.QUEUE, inbox_after_s) for kind, command in INBOX_REDRIVE.items()}
    return (len(stuck) + _redrive_batches(uow, now=now, before=lost_before(SubmitBatch.QUEUE, batch_after_s),
                                          limit=limit)
            + _redrive_inbox(uow, now=now, before=inbox_cutoffs, limit=limit)
            + _redrive_inspections(uow, now=now, before=lost_before(InspectJob.QUEUE, inspect_after_s), limit=limit)
            + _redrive_notifications(uow, now=now, before=lost_before(SendNotification.QUEUE, notify_after_s),
                                     limit=limit))


def _redrive_batches(uow, *, now: datetime, before: datetime, limit: int) -> int:
    """A released batch whose SubmitBatch was lost (or dead-lettered in a long outage) is sent again."""
    with uow:
        batches = uow.batches.stuck_released(before=before, limit=limit)
        for batch in batches:
            batch.redriven_at = now
            uow.defer(SubmitBatch(batch_id=batch.id))
        uow.commit()
    if batches:
        log.warning("re-sent %d released batches to their partners", len(batches))
    return len(batches)


def _redrive_inspections(uow, *, now: datetime, before: datetime, limit: int) -> int:
    """A printed job that QA never inspected (its InspectJob lost with a flushed or restarted Redis) is sent to
    QA again; the order waits in `qa` on its jobs, so no order-level re-drive would reach it. The QA stage
    inspects a job once, so a message that was only slow and now runs twice changes nothing."""
    with uow:
        jobs = uow.jobs.uninspected(before=before, limit=limit)
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


def _redrive_inbox(uow, *, now: datetime, before: Mapping[str, datetime], limit: int) -> int:
    """A webhook we acknowledged but never applied (its message lost) is applied again: the sender won't
    resend what we already answered 2xx. `before`: the cutoff per source kind (their queues differ)."""
    with uow:
        rows = [row for kind, cutoff in before.items()
                for row in uow.inbox.stuck(before=cutoff, kinds=(kind,), limit=limit)]
        for inbox_id, source in rows:
            uow.inbox.touch(inbox_id, at=now)
            uow.defer(INBOX_REDRIVE[source.split(":", 1)[0]](inbox_id=inbox_id))
        uow.commit()
    if rows:
        log.warning("re-queued %d stored webhooks that were never applied", len(rows))
    return len(rows)


def _redrive_notifications(uow, *, now: datetime, before: datetime, limit: int) -> int:
    """A customer message reserved (or failed) but never sent, its queue message gone with a flushed or
    restarted Redis, is queued again. The notify stage's claim still lets exactly one attempt send it, so a
    message that was only slow and now runs twice goes out once."""
    with uow:
        rows = uow.notifications.lost(idle_before=before,
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
