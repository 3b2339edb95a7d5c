"""What the monitor measures in the database: orders and jobs past their stage deadline, silent parcels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Iterable, Mapping

from sqlalchemy import and_, case, false, func, or_, select
from sqlalchemy.orm import Session

from core.monitors import SilentParcel, StuckItem
from db import tables as t


class MonitorReader:
    """Read-only: plain values for `core.monitors.evaluate`, oldest first, never aggregates or locks."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def past_deadline(self, *, orders: Mapping[str, datetime], jobs: Mapping[str, datetime],
                      limit: int = 1000) -> list[StuckItem]:
        """Orders and print jobs whose status changed before that status's cutoff (the re-drive time is ignored:
        an order the reconciler keeps re-driving is still stuck)."""
        o, j = t.orders, t.print_jobs
        found = []
        when = or_(false(), *(and_(o.c.status == status, o.c.status_changed_at < cutoff)
                              for status, cutoff in orders.items()))
        query = (select(o.c.id, o.c.number, o.c.status, o.c.status_changed_at).where(when)
                 .order_by(o.c.status_changed_at).limit(limit))
        found += [StuckItem(entity="order", id=row.id, label=row.number, status=str(row.status),
                            since=row.status_changed_at) for row in self.session.execute(query)]
        when = or_(false(), *(and_(j.c.status == status, j.c.status_changed_at < cutoff)
                              for status, cutoff in jobs.items()))
        query = (select(j.c.id, o.c.number, j.c.unit_index, j.c.status, j.c.status_changed_at)
                 .join(o, o.c.id == j.c.order_id).where(when).order_by(j.c.status_changed_at).limit(limit))
        found += [StuckItem(entity="job", id=row.id, label=f"{row.number} #{row.unit_index}", status=str(row.status),
                            since=row.status_changed_at) for row in self.session.execute(query)]
        return found

    def silent_parcels(self, *, statuses: Iterable[str], before: datetime, scan_type: str,
                       limit: int = 1000) -> list[SilentParcel]:
        """Parcels in `statuses` whose last carrier scan (or, without one, last status change) is before `before`."""
        s, e, o = t.shipments, t.order_events, t.orders
        last_scan = (select(func.max(e.c.at)).where(e.c.order_id == s.c.order_id, e.c.type == scan_type)
                     .scalar_subquery())
        heard = func.coalesce(last_scan, s.c.status_changed_at)
        query = (select(s.c.order_id, o.c.number, s.c.tracking_code, heard.label("heard"))
                 .join(o, o.c.id == s.c.order_id)
                 .where(s.c.status.in_(list(statuses)), heard < before).order_by(heard).limit(limit))
        return [SilentParcel(order_id=row.order_id, label=row.number, tracking_code=row.tracking_code or "",
                             last_heard_at=_aware(row.heard)) for row in self.session.execute(query)]


def _aware(at: datetime | str) -> datetime:
    """An aware UTC datetime, whatever the driver hands back for `coalesce(…)`."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def open_alerts(bind, *, kinds: Iterable[str]) -> list[dict]:
    """The control room's alert list: open alerts of `kinds`, critical first, then oldest first."""
    a = t.alerts
    critical_first = case((a.c.severity == "critical", 0), else_=1)
    query = (select(a.c.id, a.c.kind, a.c.key, a.c.severity, a.c.message, a.c.opened_at, a.c.updated_at,
                    a.c.acknowledged_by, a.c.acknowledged_at, a.c.notified_at)
             .where(a.c.cleared_at.is_(None), a.c.kind.in_(list(kinds))).order_by(critical_first, a.c.opened_at))
    with bind.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
