"""Customer notifications, pure: milestones, channels, the texts (Jinja2 package data) and the ports to send."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Callable, Protocol
from urllib.parse import quote

from core.errors import PressroomError
from core.settings import Settings
from core.signing import signed_asset_path, signed_customer_path

if TYPE_CHECKING:
    from jinja2 import Environment


class Milestone(StrEnum):
    """The moments a customer hears from us (DESIGN §2, notify.send)."""

    RECEIVED = "received"
    PREVIEW_READY = "preview_ready"
    PRODUCTION_STARTED = "production_started"
    QA_PASSED = "qa_passed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"


class Channel(StrEnum):
    """How a message travels (not to be confused with `core.states.Channel`, where an order came from)."""

    EMAIL = "email"
    SMS = "sms"


class NotificationStatus(StrEnum):
    """A `notifications` row's state: one row per (order, milestone key, channel)."""

    QUEUED = "queued"  # a support resend, reserved and waiting for the worker
    SENDING = "sending"  # claimed: a worker is handing it over (or died while doing so)
    SENT = "sent"
    FAILED = "failed"  # refused or unreachable before the provider took it: safe to try again
    UNKNOWN = "unknown"  # may or may not have been delivered: surfaced to support, never resent automatically
    SKIPPED_OPT_OUT = "skipped_opt_out"
    NO_ADDRESS = "no_address"  # no e-mail address / phone number to send to


REPEAT_ABSORBED = frozenset({Channel.SMS})
"""Channels whose provider absorbs a repeat of the same idempotency key (the SMS API's Idempotency-Key; SMTP has
no such thing, a Message-ID does not stop a second delivery): a hand-over whose outcome is unknown is simply
tried again, and the customer still gets one message."""

CLAIMABLE = frozenset({NotificationStatus.QUEUED, NotificationStatus.FAILED})
"""Statuses a worker may (conditionally) move to `sending`; a missing row is claimed by inserting it."""


class NotDelivered(PressroomError):
    """The provider refused the message or could not be reached before it took it: nothing went out."""

    code = "not_delivered"


class DeliveryUnknown(PressroomError):
    """The hand-over broke off after the provider may have accepted the message (a timeout mid-DATA)."""

    code = "delivery_unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageContext:
    """What a message may say. Only the first name is personal; the links are built outside core."""

    order_number: str
    first_name: str
    status_url: str
    preview_image_url: str | None = None
    tracking_url: str | None = None
    tracking_code: str | None = None
    carrier: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A rendered message. `preview` is the inbox preview line: no name and no links, so the timeline and
    the `notifications` row can keep it in the clear."""

    subject: str
    text: str
    html: str | None
    preview: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Where a message points; built at the composition root (signing secrets and base URLs live there).

    Attributes:
        status: order id → the customer's self-service page.
        preview: asset id → the design preview image.
        tracking: (tracking code, carrier) → the parcel's public tracking page.
    """

    status: Callable[[str], str]
    preview: Callable[[str], str]
    tracking: Callable[[str, str | None], str]


PREVIEW_LINK_LIFETIME = timedelta(days=30)  # customers open old e-mails: the design preview stays visible


def notification_links(settings: Settings, *, now: datetime,
                       status: Callable[[str], str] | None = None) -> Links:
    """The links of the embedded default and production alike, from settings.

    Args:
        status: the customer self-service link for an order; without it, the order's page signed with
            `customer_link_secret` and valid for `customer_link_days` (`customer_link`).
    """
    expires = int((now + PREVIEW_LINK_LIFETIME).timestamp())
    return Links(
        status=status or (lambda order_id: customer_link(settings, order_id, now=now)),
        preview=lambda asset_id: settings.api_url.rstrip("/") + signed_asset_path(
            settings.asset_url_secret, asset_id, "preview", expires=expires),
        tracking=lambda code, carrier: settings.tracking_url.format(code=quote(code), carrier=quote(carrier or "")),
    )


def customer_link(settings: Settings, order_id: str, *, now: datetime) -> str:
    """The signed self-service link of an order, as every customer message carries it: the order's status
    timeline, and its changes until the production gate (api/selfservice.py checks the signature)."""
    expires = int((now + timedelta(days=settings.customer_link_days)).timestamp())
    return settings.self_service_url.rstrip("/") + signed_customer_path(settings.customer_link_secret, order_id,
                                                                         expires=expires)


class Mailer(Protocol):
    """Sends one e-mail. `idempotency_key` becomes the Message-ID, the same on every attempt.

    Raises:
        NotDelivered: refused, or the server was unreachable, before it took the message.
        DeliveryUnknown: the connection broke after the message may have been accepted.
    """

    def send(self, *, to: str, message: Message, idempotency_key: str) -> None: ...


class SmsSender(Protocol):
    """Sends one text message; `idempotency_key` lets the provider absorb a repeat. Raises as `Mailer`."""

    def send(self, *, to: str, message: Message, idempotency_key: str) -> None: ...


def milestone_key(milestone: Milestone | str, resend: int = 0) -> str:
    """The stored milestone of a row: `shipped` for the first message, `shipped.resend2` for the 2nd resend."""
    return str(milestone) if resend == 0 else f"{milestone}.resend{resend}"


def notification_id(order_id: str, key: str, channel: Channel | str) -> str:
    """The row id, also the Message-ID and SMS idempotency key: the same for every attempt of one message."""
    digest = hashlib.sha256(f"{order_id}|{key}|{channel}".encode()).hexdigest()
    return f"ntf_{digest[:32]}"


def first_name(full_name: str | None) -> str:
    """How a message greets the customer ("there" when we have no name)."""
    parts = (full_name or "").split()
    return parts[0] if parts else "there"


@cache
def _environment() -> Environment:
    import jinja2  # on first use, not at a worker's boot

    return jinja2.Environment(loader=jinja2.PackageLoader("core", "notification_templates"),
                              autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                                  default_for_string=False),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def _block(template, name: str, context: dict) -> str:
    return "".join(template.blocks[name](template.new_context(context))).strip()


def render_message(milestone: Milestone | str, channel: Channel | str, context: MessageContext) -> Message:
    """Render a milestone's message for a channel from `core/notification_templates/<channel>/<milestone>.*`.

    Each `.txt` template has the blocks `subject` (e-mail only), `preview` and `body`; an e-mail also has an
    `.html` template extending `email/_layout.html`, which gets the text template's subject and preview.

    Raises:
        jinja2.TemplateNotFound: no template for that milestone and channel.
        jinja2.UndefinedError: a template uses a value the context does not have.
    """
    milestone, channel = Milestone(milestone), Channel(channel)
    env = _environment()
    values = {f: getattr(context, f) for f in MessageContext.__dataclass_fields__}
    text_template = env.get_template(f"{channel}/{milestone}.txt")
    subject = _block(text_template, "subject", values) if "subject" in text_template.blocks else ""
    preview = " ".join(_block(text_template, "preview", values).split())
    text = _block(text_template, "body", values) + "\n"
    html = None
    if channel == Channel.EMAIL:
        html = env.get_template(f"email/{milestone}.html").render(values | {"subject": subject, "preview": preview})
    return Message(subject=subject, text=text, html=html, preview=preview)


@cache
def context_fields(milestone: Milestone | str, channel: Channel | str) -> frozenset[str]:
    """The `MessageContext` values a milestone's templates for a channel refer to, their layout included: the
    notify stage looks up only those (a text has no preview image, only `shipped` shows tracking).

    Every value when a template names another one it includes at run time (its templates can't be listed).
    """
    from jinja2 import meta

    milestone, channel = Milestone(milestone), Channel(channel)
    env = _environment()
    names = [f"{channel}/{milestone}.txt"] + ([f"email/{milestone}.html"] if channel == Channel.EMAIL else [])
    seen: set[str] = set()
    used: set[str] = set()
    while names:
        name = names.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = env.parse(env.loader.get_source(env, name)[0])
        used |= meta.find_undeclared_variables(tree)
        for referenced in meta.find_referenced_templates(tree):
            if referenced is None:
                return frozenset(MessageContext.__dataclass_fields__)
            names.append(referenced)
    return frozenset(used & set(MessageContext.__dataclass_fields__))
