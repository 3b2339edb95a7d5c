"""Domain events: what happened, past tense; each becomes one row of the order timeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.states import Entity


class EventType(StrEnum):
    """Timeline types that are not status changes (those are "<entity>.<status>", see StatusChanged)."""

    ORDER_RECEIVED = "order.received"
    STAGE_REDRIVEN = "stage.redriven"
    NOTE_ADDED = "note.added"
    STAFF_ACTION = "staff.action"
    ASSET_RENDERED = "asset.rendered"


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Base: every event belongs to an order's timeline (or to none, for batch-wide facts)."""

    order_id: str | None
    at: datetime
    source: str

    @property
    def type(self) -> str:
        raise NotImplementedError

    @property
    def dedupe_key(self) -> str:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged(DomainEvent):
    """An aggregate moved along its transition table; the version makes redeliveries collide, not repeat."""

    entity: Entity
    entity_id: str
    from_status: str
    to_status: str
    version: int
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return f"{self.entity}.{self.to_status}"

    @property
    def dedupe_key(self) -> str:
        return f"{self.entity}:{self.entity_id}:v{self.version}"

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"entity_id": self.entity_id, "from": self.from_status, "to": self.to_status}
        if self.reason:
            body["reason"] = self.reason
        return body | self.details


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReceived(DomainEvent):
    """Intake accepted an order; the first line of every timeline."""

    number: str
    channel: str
    external_id: str
    total_cents: int
    currency: str
    units: int

    @property
    def type(self) -> str:
        return EventType.ORDER_RECEIVED

    @property
    def dedupe_key(self) -> str:
        return f"order:{self.order_id}:received"

    def payload(self) -> dict[str, Any]:
        return {"number": self.number, "channel": self.channel, "external_id": self.external_id,
                "total_cents": self.total_cents, "currency": self.currency, "units": self.units}


@dataclass(frozen=True, slots=True, kw_only=True)
class Noted(DomainEvent):
    """Anything else worth a timeline line: a re-drive, a staff note, a partner or carrier message."""

    kind: str
    key: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.kind

    @property
    def dedupe_key(self) -> str:
        return self.key

    def payload(self) -> dict[str, Any]:
        return dict(self.details)
