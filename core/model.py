"""Aggregates: the only objects that change state, and only through `advance()` and its callers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Mapping

from core.commands import Address
from core.errors import IllegalTransition, NotAllowed
from core.events import DomainEvent, OrderReceived, StatusChanged
from core.states import (
    BATCH_ALLOWED,
    INSPECTION_ALLOWED,
    JOB_ALLOWED,
    ORDER_ALLOWED,
    PAST_GATE,
    SHIPMENT_ALLOWED,
    BatchStatus,
    Entity,
    HoldReason,
    InspectionStatus,
    JobStatus,
    OrderStatus,
    ShipmentStatus,
    ShippingSpeed,
)


class Aggregate:
    """A status, a version and a list of events not yet written to the timeline.

    Persistence maps these classes imperatively (db/orm.py), so they stay plain Python; `version` doubles
    as the optimistic lock and as the dedupe key of each status change.
    """

    entity: ClassVar[Entity]
    allowed: ClassVar[Mapping[Any, frozenset]]

    id: str
    status: StrEnum
    version: int
    status_changed_at: datetime

    @property
    def events(self) -> list[DomainEvent]:
        """Events recorded since load; the unit of work drains them into the timeline on commit."""
        try:
            return self._events
        except AttributeError:
            self._events: list[DomainEvent] = []
            return self._events

    @property
    def timeline_order_id(self) -> str | None:
        return getattr(self, "order_id", None)

    def can_advance(self, to: StrEnum) -> bool:
        return to in self.allowed[self.status]

    def advance(self, to: StrEnum, *, at: datetime, source: str, reason: str | None = None,
                details: dict[str, Any] | None = None) -> StatusChanged:
        """Move to `to` if the table allows it, and record exactly one event.

        Raises:
            IllegalTransition: the table has no arrow from the current status to `to`.
        """
        if to not in self.allowed[self.status]:
            raise IllegalTransition(f"{self.entity} {self.id}: {self.status} -> {to}")
        event = StatusChanged(order_id=self.timeline_order_id, at=at, source=source, entity=self.entity,
                              entity_id=self.id, from_status=str(self.status), to_status=str(to),
                              version=self.version + 1, reason=reason, details=details or {})
        self.status = to
        self.version += 1
        self.status_changed_at = at
        self.events.append(event)
        return event


class Customer:
    """A buyer; name, e-mail, phone and address are PII (encrypted at rest, searched by blind index)."""

    def __init__(self, *, id: str, name: str, email: str, phone: str, address: Address | None,
                 created_at: datetime) -> None:
        self.id = id
        self.name = name
        self.email = email
        self.phone = phone
        self.address = address
        self.created_at = created_at
        self.email_opt_out = False
        self.sms_opt_out = False


class OrderLine:
    """One SKU × quantity with its design inputs, pinned to the template version it was accepted with."""

    def __init__(self, *, id: str, line_no: int, sku: str, quantity: int, artwork_id: str | None,
                 texts: dict[str, str], template_key: str, template_version: int, unit_price_cents: int,
                 partner_id: str | None = None) -> None:
        self.id = id
        self.line_no = line_no
        self.sku = sku
        self.quantity = quantity
        self.artwork_id = artwork_id
        self.texts = dict(texts)
        self.template_key = template_key
        self.template_version = template_version
        self.unit_price_cents = unit_price_cents
        self.partner_id = partner_id
        self.asset_id: str | None = None


class Order(Aggregate):
    """A customer's order from acceptance to delivery."""

    entity = Entity.ORDER
    allowed = ORDER_ALLOWED

    def __init__(self, *, id: str, number: str, channel: str, external_id: str, customer: Customer,
                 shipping_address: Address, shipping_speed: ShippingSpeed, lines: list[OrderLine],
                 total_cents: int, currency: str, payment_authorization: str, placed_at: datetime,
                 source: str) -> None:
        self.id = id
        self.number = number
        self.channel = channel
        self.external_id = external_id
        self.customer = customer
        self.shipping_address = shipping_address
        self.shipping_speed = shipping_speed
        self.lines = lines
        self.total_cents = total_cents
        self.currency = currency
        self.payment_authorization = payment_authorization
        self.placed_at = placed_at
        self.status = OrderStatus.ACCEPTED
        self.status_changed_at = placed_at
        self.version = 1
        self.held_from: OrderStatus | None = None
        self.hold_reason: HoldReason | None = None
        self.priority = 0.0
        self.redriven_at: datetime | None = None
        self.events.append(OrderReceived(
            order_id=id, at=placed_at, source=source, number=number, channel=str(channel),
            external_id=external_id, total_cents=total_cents, currency=currency,
            units=sum(line.quantity for line in lines)))

    @property
    def order_id(self) -> str:
        return self.id

    @property
    def past_gate(self) -> bool:
        """True once production has started: no customer edits or cancels after this."""
        current = self.held_from if self.status == OrderStatus.ON_HOLD else self.status
        return current in PAST_GATE

    def hold(self, reason: HoldReason, *, at: datetime, source: str, note: str = "") -> StatusChanged:
        """Stop the order where it is; `release()` resumes it there."""
        held_from = self.status
        event = self.advance(OrderStatus.ON_HOLD, at=at, source=source, reason=str(reason),
                             details={"note": note} if note else None)
        self.held_from = held_from
        self.hold_reason = reason
        return event

    def release(self, *, at: datetime, source: str) -> StatusChanged:
        if self.status != OrderStatus.ON_HOLD or self.held_from is None:
            raise IllegalTransition(f"order {self.id}: {self.status} is not on hold")
        event = self.advance(self.held_from, at=at, source=source, reason="released")
        self.held_from = None
        self.hold_reason = None
        return event

    def cancel(self, *, at: datetime, source: str, reason: str) -> StatusChanged:
        """Cancel before the production gate.

        Raises:
            NotAllowed: production has started.
        """
        if self.past_gate:
            raise NotAllowed(f"Order {self.number} is already in production and can no longer be cancelled.")
        return self.advance(OrderStatus.CANCELLED, at=at, source=source, reason=reason)


STARTED: frozenset[JobStatus] = frozenset({JobStatus.PRINTING, JobStatus.PRINTED})
"""Job statuses that mean the partner has started printing it (the first one reached is the start)."""


class PrintJob(Aggregate):
    """One physical unit to print; a reprint is a new job pointing at the failed one."""

    entity = Entity.JOB
    allowed = JOB_ALLOWED

    def __init__(self, *, id: str, order_id: str, line_id: str, unit_index: int, created_at: datetime,
                 attempt: int = 1, reprint_of: str | None = None, reason_code: str | None = None,
                 priority: float = 0.0) -> None:
        self.id = id
        self.order_id = order_id
        self.line_id = line_id
        self.unit_index = unit_index
        self.attempt = attempt
        self.reprint_of = reprint_of
        self.reason_code = reason_code
        self.priority = priority
        self.partner_id: str | None = None
        self.batch_id: str | None = None
        self.partner_job_id: str | None = None
        self.product_type: str | None = None
        self.print_method: str | None = None
        self.region: str | None = None
        self.photo_url: str | None = None
        self.created_at = created_at
        self.status = JobStatus.PENDING
        self.status_changed_at = created_at
        self.version = 1
        self.submitted_at: datetime | None = None
        self.started_at: datetime | None = None

    def advance(self, to: JobStatus, *, at: datetime, source: str, reason: str | None = None,
                details: dict[str, Any] | None = None) -> StatusChanged:
        """As `Aggregate.advance`, and stamp when the job reached its partner and first started printing.

        The stamps are written with the status and its timeline event, so the partner panel and the on-time
        metrics read them from the job instead of pairing timeline events.
        """
        event = super().advance(to, at=at, source=source, reason=reason, details=details)
        if to == JobStatus.SUBMITTED:
            self.submitted_at = at
        elif to in STARTED and self.started_at is None:
            self.started_at = at  # a partner may skip "printing": the first of printing/printed is the start
        return event


class Batch(Aggregate):
    """Jobs grouped for one partner × product type × print method × destination region."""

    entity = Entity.BATCH
    allowed = BATCH_ALLOWED

    def __init__(self, *, id: str, partner_id: str, product_type: str, print_method: str, region: str,
                 created_at: datetime, target_size: int) -> None:
        self.id = id
        self.partner_id = partner_id
        self.product_type = product_type
        self.print_method = print_method
        self.region = region
        self.target_size = target_size
        self.redriven_at: datetime | None = None
        self.created_at = created_at
        self.status = BatchStatus.OPEN
        self.status_changed_at = created_at
        self.version = 1

    @property
    def timeline_order_id(self) -> None:
        return None


class Inspection(Aggregate):
    """The QA verdict on one printed job."""

    entity = Entity.INSPECTION
    allowed = INSPECTION_ALLOWED

    def __init__(self, *, id: str, job_id: str, order_id: str, created_at: datetime) -> None:
        self.id = id
        self.job_id = job_id
        self.order_id = order_id
        self.created_at = created_at
        self.status = InspectionStatus.PENDING
        self.status_changed_at = created_at
        self.version = 1
        self.scores: dict[str, float] = {}
        self.reasons: list[str] = []
        self.photo_key: str | None = None
        self.heatmap_key: str | None = None
        self.aligned_key: str | None = None
        self.worst_region: list[int] | None = None
        self.review_reason: str | None = None
        self.assigned_to: str | None = None
        self.second_assignee: str | None = None
        self.decided_by: str | None = None
        self.decided_at: datetime | None = None
        self.pending_verdict: str | None = None  # "approve" | "reject", waiting out the undo window
        self.pending_reason: str | None = None


class Shipment(Aggregate):
    """The parcel of an order, from label to door."""

    entity = Entity.SHIPMENT
    allowed = SHIPMENT_ALLOWED

    def __init__(self, *, id: str, order_id: str, created_at: datetime) -> None:
        self.id = id
        self.order_id = order_id
        self.created_at = created_at
        self.status = ShipmentStatus.PENDING
        self.status_changed_at = created_at
        self.version = 1
        self.carrier_shipment_id: str | None = None
        self.tracking_code: str | None = None


AGGREGATES: tuple[type[Aggregate], ...] = (Order, PrintJob, Batch, Inspection, Shipment)
