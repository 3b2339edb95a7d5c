"""The reconciler: re-send the stage message of anything that has sat too long, so no lost message loses work."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Mapping

from core.commands import RenderAsset, RouteOrder, StageCommand
from core.events import EventType, Noted
from core.states import OrderStatus

log = logging.getLogger(__name__)

REDRIVE: Mapping[OrderStatus, Callable[[str], StageCommand]] = {
    OrderStatus.ACCEPTED: lambda order_id: RenderAsset(order_id=order_id),
    OrderStatus.RENDERING: lambda order_id: RenderAsset(order_id=order_id),
    OrderStatus.READY_FOR_PRODUCTION: lambda order_id: RouteOrder(order_id=order_id),
}
"""Which message moves an order on from each status; statuses that wait on the outside world are absent."""


def reconcile(uow, *, now: datetime, deadlines_s: Mapping[OrderStatus, float], limit: int = 500) -> int:
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
    return len(stuck)
