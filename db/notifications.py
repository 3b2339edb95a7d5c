"""The notification ledger: one row per (order, milestone key, channel), claimed before anything is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core.notifications import CLAIMABLE, NotificationStatus
from db import tables as t
from db.repositories import insert_ignoring_duplicates


class NotificationRepository:
    """Rows of `notifications`, changed only by inserts that absorb duplicates and compare-and-set updates,
    so two workers holding the same message can never both win.

    `sent_at` is when a worker last started handing the message over (and, once `sent`, when it did): a
    `sending` row whose `sent_at` is old belongs to a worker that died mid-send.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, order_id: str, milestone: str, channel: str) -> dict[str, Any] | None:
        n = t.notifications
        row = self.session.execute(select(n).where(n.c.order_id == order_id, n.c.milestone == milestone,
                                                   n.c.channel == channel)).first()
        return None if row is None else dict(row._mapping)

    def insert(self, *, id: str, order_id: str, milestone: str, channel: str, status: NotificationStatus,
               at: datetime, subject: str | None = None, preview: str | None = None) -> bool:
        """Add the row unless (order, milestone, channel) already has one; True when this call added it.

        A `sending` row counts as the first attempt and is stamped with the hand-over time.
        """
        sending = status == NotificationStatus.SENDING
        row = {"id": id, "order_id": order_id, "milestone": milestone, "channel": channel, "status": str(status),
               "attempts": 1 if sending else 0, "subject": subject, "preview": preview, "created_at": at,
               "sent_at": at if sending else None}
        return insert_ignoring_duplicates(self.session, t.notifications, [row], "order_id", "milestone",
                                          "channel") == 1

    def insert_queued(self, rows: list[dict[str, Any]], *, at: datetime) -> None:
        """Reserve several `queued` rows in one statement (a milestone's channels); existing ones are kept.

        Each row gives id, order_id, milestone and channel.
        """
        queued = [{**row, "status": str(NotificationStatus.QUEUED), "attempts": 0, "subject": None, "preview": None,
                   "created_at": at, "sent_at": None} for row in rows]
        insert_ignoring_duplicates(self.session, t.notifications, queued, "order_id", "milestone", "channel")

    def claim(self, notification_id: str, *, at: datetime, subject: str, preview: str,
              max_attempts: int) -> int | None:
        """Move a queued or failed row to `sending` (one more attempt); returns that attempt's number, or None
        when there is no such row, another worker has it, it already went out, or its attempts are used up."""
        n = t.notifications
        return self.session.execute(
            update(n).where(n.c.id == notification_id, n.c.status.in_([str(s) for s in CLAIMABLE]),
                            n.c.attempts < max_attempts)
            .values(status=str(NotificationStatus.SENDING), attempts=n.c.attempts + 1, sent_at=at,
                    subject=subject, preview=preview, error=None)
            .returning(n.c.attempts)).scalar_one_or_none()

    def settle(self, notification_id: str, *, status: NotificationStatus, at: datetime, error: str | None = None,
               from_statuses: Iterable[NotificationStatus] = (NotificationStatus.SENDING,),
               sending_before: datetime | None = None) -> bool:
        """Move the row from one of `from_statuses` to `status`; False when it is in none of them (another
        worker settled it) or, with `sending_before`, when its hand-over started later than that."""
        n = t.notifications
        query = update(n).where(n.c.id == notification_id, n.c.status.in_([str(s) for s in from_statuses]))
        if sending_before is not None:
            query = query.where(n.c.sent_at < sending_before)
        values: dict[str, Any] = {"status": str(status), "error": error}
        if status == NotificationStatus.SENT:
            values["sent_at"] = at
        return self.session.execute(query.values(**values)).rowcount == 1

    def stale(self, *, sending_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """`sending` rows whose hand-over started before `sending_before`: their worker died mid-send."""
        n = t.notifications
        rows = self.session.execute(select(n).where(n.c.status == str(NotificationStatus.SENDING),
                                                    n.c.sent_at < sending_before)
                                    .order_by(n.c.sent_at).limit(limit))
        return [dict(r._mapping) for r in rows]

    def lost(self, *, idle_before: datetime, max_attempts: int, limit: int = 100) -> list[dict[str, Any]]:
        """Queued or failed rows nothing has touched since `idle_before` (reserved, attempted or re-queued):
        their queue message was lost, or its retries were. Oldest first."""
        n = t.notifications
        quiet = [n.c.created_at < idle_before, or_(n.c.sent_at.is_(None), n.c.sent_at < idle_before),
                 or_(n.c.redriven_at.is_(None), n.c.redriven_at < idle_before)]
        rows = self.session.execute(select(n).where(n.c.status.in_([str(s) for s in CLAIMABLE]),
                                                    n.c.attempts < max_attempts, *quiet)
                                    .order_by(n.c.created_at).limit(limit))
        return [dict(r._mapping) for r in rows]

    def mark_redriven(self, notification_id: str, *, at: datetime) -> None:
        n = t.notifications
        self.session.execute(update(n).where(n.c.id == notification_id).values(redriven_at=at))

    def resends(self, order_id: str, milestone: str, channel: str) -> int:
        """How many support resends (order, milestone, channel) already has."""
        n = t.notifications
        return self.session.scalar(select(func.count()).select_from(n).where(
            n.c.order_id == order_id, n.c.channel == channel, n.c.milestone.like(f"{milestone}.resend%"))) or 0

    def tracking(self, order_id: str) -> tuple[str, str | None] | None:
        """(tracking code, carrier) of the order's newest shipment that has one."""
        s = t.shipments
        row = self.session.execute(select(s.c.tracking_code, s.c.carrier)
                                   .where(s.c.order_id == order_id, s.c.tracking_code.is_not(None))
                                   .order_by(s.c.created_at.desc()).limit(1)).first()
        return None if row is None else (row.tracking_code, row.carrier)
