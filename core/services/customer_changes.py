"""Changes to an order before the production gate: cancel, new custom text, new address; after it, a request.

Customers reach these through their signed self-service link (api/selfservice.py); support reaches
`cancel_order` from the exception inbox. Every function takes the unit of work and ports as arguments, keeps
network calls (payment void, address verification) outside its transactions, and writes the timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime

from core.errors import NotAllowed, NotFound
from core.events import Noted
from core.model import Order, PrintJob
from core.ports import Payments
from core.states import BatchStatus, JobStatus, OrderStatus

log = logging.getLogger(__name__)
CUSTOMER = "customer"
"""The timeline source of everything the customer does through the self-service link."""

OPEN_BATCH = frozenset({BatchStatus.OPEN, BatchStatus.HELD})
"""Batches whose jobs may still be taken out: a released batch is on its way to the partner."""


def cancel_order(order_id: str, *, by: str, reason: str, uow, payments: Payments, now: datetime) -> str:
    """Cancel an order before the production gate: its jobs cancelled, its stock released, its payment voided.

    Idempotent: cancelling a cancelled order changes nothing (the void is asked again, which the payment
    provider absorbs, so a void that failed the first time is retried). Locks are taken in the order the
    production stages take them (order, then batch, then job rows at the flush), and a job already handed to
    the partner refuses the cancel, so a cancel racing the production gate ends either cancelled before the
    gate or refused, never both.

    Args:
        by: the timeline source: "customer", or "user:<name>" for a staff member.
        reason: why, in a few words, for the timeline.

    Returns:
        "cancelled", or "already_cancelled" when it was cancelled before.

    Raises:
        NotFound: no such order.
        NotAllowed: production has started (or the order is being handed to the print partner right now),
            or the order has ended otherwise (failed).
    """
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None:
            raise NotFound("We can't find that order.")
        if order.status == OrderStatus.CANCELLED:
            authorization, number = order.payment_authorization, order.number
            outcome = "already_cancelled"
        else:
            _check_cancellable(order)
            jobs = uow.jobs.for_order(order_id)
            _check_not_at_partner(order, jobs, uow=uow)
            for job in jobs:
                if job.can_advance(JobStatus.CANCELLED):
                    batch_id, job.batch_id = job.batch_id, None
                    job.advance(JobStatus.CANCELLED, at=now, source=by, reason="order cancelled",
                                details={"batch": batch_id} if batch_id else None)
            order.cancel(at=now, source=by, reason=reason[:200] or "cancelled")
            units = uow.stock.release(order_id=order_id, at=now)
            uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="stock.released",
                                   key=f"stock:{order_id}:released", details={"units": units}))
            authorization, number = order.payment_authorization, order.number
            uow.commit()
            outcome = "cancelled"
            log.info("order %s cancelled by %s (%d units released)", order_id, by, units)
    _void(order_id, number, authorization, by=by, uow=uow, payments=payments, now=now)
    return outcome


def _check_cancellable(order: Order) -> None:
    if order.past_gate:
        raise NotAllowed(f"Order {order.number} is already in production and can no longer be cancelled.")
    if not order.can_advance(OrderStatus.CANCELLED):
        raise NotAllowed(f"Order {order.number} has ended ({order.status}) and can no longer be cancelled.")


def _check_not_at_partner(order: Order, jobs: list[PrintJob], *, uow) -> None:
    """Refuse when any job has gone, or is going, to the partner: the gate is passing as we speak."""
    sending = f"Order {order.number} is being handed to the print partner right now and can no longer be " \
              "cancelled."
    for job in jobs:
        if job.status in (JobStatus.PENDING, JobStatus.BATCHED, JobStatus.CANCELLED, JobStatus.FAILED):
            if job.status == JobStatus.BATCHED and job.batch_id:
                batch = uow.batches.get(job.batch_id, lock=True)  # the batcher's release waits for us
                if batch is not None and batch.status not in OPEN_BATCH:
                    raise NotAllowed(sending)
            continue
        raise NotAllowed(sending)


def _void(order_id: str, number: str, authorization: str, *, by: str, uow, payments: Payments,
          now: datetime) -> None:
    """Void the authorisation after the commit; a failure is put in front of support, never swallowed."""
    try:
        payments.void(authorization)
    except Exception as error:  # noqa: BLE001 - any provider failure: support must void it by hand
        log.exception("order %s: voiding the payment failed", order_id)
        with uow:
            uow.alerts.raise_(kind="payment", key=f"void:{order_id}", order_id=order_id, severity="critical",
                              at=now, message=f"Order {number} was cancelled but its payment could not be voided "
                                              f"({type(error).__name__}). Void authorisation {authorization} "
                                              "with the payment provider, or cancel the order again to retry.")
            uow.commit()
        return
    with uow:
        uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="payment.voided",
                               key=f"payment:{order_id}:voided", details={"authorization": authorization}))
        uow.alerts.clear(kind="payment", key=f"void:{order_id}", at=now)
        uow.commit()
