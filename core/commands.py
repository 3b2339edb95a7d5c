"""Commands: what someone asks the system to do. Stage commands travel as Dramatiq messages (ids only)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from core.states import Channel, ShippingSpeed


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A postal address; PII, stored encrypted and never put in a message."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""
    region: str = ""

    REQUIRED = ("name", "line1", "city", "postal_code", "country")

    def missing(self) -> list[str]:
        """The required fields that are blank."""
        return [f for f in self.REQUIRED if not str(getattr(self, f) or "").strip()]

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerDetails:
    name: str
    email: str
    phone: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRequest:
    sku: str
    quantity: int
    artwork_id: str | None = None
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder:
    """A storefront checkout, as received; validated before anything is recorded."""

    channel: Channel
    external_id: str
    customer: CustomerDetails
    shipping_address: Address
    shipping_speed: ShippingSpeed
    lines: tuple[LineRequest, ...]


# ---- stage commands: sent after commit, one queue per stage ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StageCommand:
    """Base of commands carried by the broker: ids only, never images, frames or PII."""

    QUEUE = ""

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderAsset(StageCommand):
    QUEUE = "render"
    order_id: str


def handler_name(command: type[StageCommand]) -> str:
    """`RenderAsset` → `render_asset`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", command.__name__).lower()


def actor_name(command: type[StageCommand]) -> str:
    """The Dramatiq actor that handles a command: `"<stage>.<verb>"`, e.g. `render.render_asset`."""
    return f"{command.QUEUE}.{handler_name(command)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteOrder(StageCommand):
    QUEUE = "production"
    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitBatch(StageCommand):
    QUEUE = "production"
    batch_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyPartnerEvent(StageCommand):
    QUEUE = "webhooks"
    inbox_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectJob(StageCommand):
    QUEUE = "qa"
    job_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendNotification(StageCommand):
    """Tell the customer about a milestone on one channel (`core.notifications.Milestone`, `Channel`);
    `resend` > 0 is a support resend, reserved by `core.services.notify.resend`."""

    QUEUE = "notify"
    order_id: str
    milestone: str
    channel: str
    resend: int = 0


STAGE_COMMANDS: tuple[type[StageCommand], ...] = (RenderAsset, RouteOrder, SubmitBatch, ApplyPartnerEvent,
                                                  InspectJob, SendNotification)
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(c.QUEUE for c in STAGE_COMMANDS))


@dataclass(frozen=True, slots=True, kw_only=True)
class BuyLabel(StageCommand):
    QUEUE = "shipping"
    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyCarrierEvent(StageCommand):
    QUEUE = "tracking"
    inbox_id: int


STAGE_COMMANDS = (*STAGE_COMMANDS, BuyLabel, ApplyCarrierEvent)
QUEUES = tuple(dict.fromkeys(c.QUEUE for c in STAGE_COMMANDS))
