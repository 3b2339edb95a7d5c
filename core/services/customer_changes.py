"""Changes to an order before the production gate: cancel, new custom text, new address; after it, a request.

Customers reach these through their signed self-service link (api/selfservice.py); support reaches
`cancel_order` from the exception inbox. Every function takes the unit of work and ports as arguments, keeps
network calls (payment void, address verification) outside its transactions, and writes the timeline.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable, Mapping

from core.catalogue import TemplateSpec
from core.commands import Address, RenderAsset, RouteOrder
from core.errors import NotAllowed, NotFound, Problem, ValidationFailed
from core.events import Noted
from core.model import Order, PrintJob
from core.notifications import Milestone
from core.ports import Payments
from core.production import Destination, destination_zone
from core.render import text_fits
from core.services.notify import notify_milestone
from core.services.shipping import Carrier
from core.states import BatchStatus, HoldReason, JobStatus, OrderStatus
from core.text import ProhibitedWords, check_custom_text
from core.validation import FIELD_NAMES

log = logging.getLogger(__name__)
CUSTOMER = "customer"
"""The timeline source of everything the customer does through the self-service link."""

OPEN_BATCH = frozenset({BatchStatus.OPEN, BatchStatus.HELD})
"""Batches whose jobs may still be taken out: a released batch is on its way to the partner."""
_NOT_SENT = frozenset({JobStatus.PENDING, JobStatus.BATCHED, JobStatus.CANCELLED, JobStatus.FAILED})
"""Job statuses that mean the partner does not have the job."""


def cancel_order(order_id: str, *, by: str, reason: str, uow, payments: Payments, now: datetime) -> str:
    """Cancel an order before the production gate: its jobs cancelled, its stock released, its payment voided,
    and the customer told (the `cancelled` milestone, once).

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
            notify_milestone(order_id, Milestone.CANCELLED, uow=uow)
            authorization, number = order.payment_authorization, order.number
            uow.commit()
            outcome = "cancelled"
            log.info("order %s cancelled by %s (%d units released)", order_id, by, units)
    void_payment(order_id, number, authorization, by=by, uow=uow, payments=payments, now=now,
                 failed="was cancelled (cancel it again to retry)")
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
        if job.status in _NOT_SENT:
            if job.status == JobStatus.BATCHED and job.batch_id:
                batch = uow.batches.get(job.batch_id, lock=True)  # the batcher's release waits for us
                if batch is not None and batch.status not in OPEN_BATCH:
                    raise NotAllowed(sending)
            continue
        raise NotAllowed(sending)


def void_payment(order_id: str, number: str, authorization: str, *, by: str, uow, payments: Payments,
                 now: datetime, failed: str) -> bool:
    """Void the authorisation after the commit; a failure is put in front of a person, never swallowed.

    Args:
        failed: what the alert says happened to the order, e.g. "was cancelled" (the rest is the same).
    Returns:
        True when the provider voided it (recorded on the timeline), False when a `payment` alert was raised.
    """
    try:
        payments.void(authorization)
    except Exception as error:  # noqa: BLE001 - any provider failure: a person must void it by hand
        log.exception("order %s: voiding the payment (%s) failed", order_id, authorization)
        with uow:
            uow.alerts.raise_(kind="payment", key=f"void:{order_id}", order_id=order_id, severity="critical",
                              at=now, message=f"Order {number} {failed} but its payment could not be voided "
                                              f"({type(error).__name__}). Void authorisation {authorization} "
                                              "with the payment provider.")
            uow.commit()
        return False
    with uow:
        uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="payment.voided",
                               key=f"payment:{order_id}:voided", details={"authorization": authorization}))
        uow.alerts.clear(kind="payment", key=f"void:{order_id}", at=now)
        uow.commit()
    return True


# ---- what may still change -----------------------------------------------------------------------------------


def why_not_editable(order: Order, jobs: Iterable[PrintJob] = ()) -> str | None:
    """The sentence that tells the customer why they can no longer change the order themselves, or None.

    Changes stop at the production gate, and also while the design is being prepared (the render in flight
    would print the old text), while the order is on hold (support is working on it) and once a batch holding
    one of its items has been released to the partner.
    """
    number = order.number
    if order.status == OrderStatus.CANCELLED:
        return f"Order {number} was cancelled, so there is nothing left to change."
    if order.past_gate:
        return (f"Order {number} is already in production, so it can no longer be changed or cancelled here. "
                "Send us a change request and our support team will see what they can do.")
    if order.status in (OrderStatus.FAILED, OrderStatus.DELIVERED):
        return f"Order {number} has ended, so it can no longer be changed here."
    if order.status == OrderStatus.ON_HOLD:
        return _held(order)
    if any(job.status not in _NOT_SENT for job in jobs):
        return f"Order {number} is being handed to the print partner right now and can no longer be changed."
    return None


def _held(order: Order) -> str:
    return (f"Order {order.number} is paused while our team looks into it. Send us a change request and they will "
            "make the change for you, or cancel the order.")


def _check_editable(order: Order, jobs: list[PrintJob], *, uow, what: str) -> None:
    """Raise NotAllowed with the customer's sentence unless `what` ("text", "address") may change now."""
    reason = why_not_editable(order, jobs)
    if reason is None and what == "text" and order.status == OrderStatus.RENDERING:
        reason = (f"We are preparing the design of order {order.number} right now; please try again in a "
                  "minute.")
    if reason is None:
        for job in jobs:
            if job.status == JobStatus.BATCHED and job.batch_id:
                batch = uow.batches.get(job.batch_id, lock=True)  # the batcher's release waits for us
                if batch is not None and batch.status not in OPEN_BATCH:
                    reason = (f"Order {order.number} is being handed to the print partner right now and can no "
                              "longer be changed.")
                    break
    if reason is not None:
        raise NotAllowed(reason)


def _take_back(jobs: list[PrintJob], *, at: datetime, by: str, why: str) -> int:
    """Jobs out of their batch and unrouted: routing runs again once the order is ready (after a re-render)."""
    taken = 0
    for job in jobs:
        if job.status == JobStatus.BATCHED:
            batch_id, job.batch_id = job.batch_id, None
            job.advance(JobStatus.PENDING, at=at, source=by, reason=why, details={"batch": batch_id})
        if job.status == JobStatus.PENDING and job.partner_id is not None:
            job.partner_id = None
            taken += 1
    return taken


# ---- custom text ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _prohibited(words: tuple[str, ...]) -> ProhibitedWords:
    return ProhibitedWords(words)


def text_problems(template: TemplateSpec, texts: Mapping[str, str], prohibited: ProhibitedWords) -> list[Problem]:
    """Intake's rules for custom text (core.validation): known slot, length, characters, prohibited words,
    and that it fits the print at the smallest size; fields are `texts.<slot>`."""
    problems: list[Problem] = []
    for slot_name, text in texts.items():
        slot = template.slot(slot_name)
        field = f"texts.{slot_name}"
        if slot is None:
            known = ", ".join(s.name for s in template.text_slots) or "none"
            problems.append(Problem(field=field, code="unknown_text_slot",
                                    message=f"This product has no text called {slot_name!r} (it has: {known})."))
            continue
        found = [Problem(field=field, code=str(p.code), message=p.message)
                 for p in check_custom_text(text, slot=slot_name, max_chars=slot.max_chars, allowed=slot.charset,
                                            prohibited=prohibited)]
        if not found and not text_fits(template.spec, slot_name, text):
            found.append(Problem(field=field, code="text_does_not_fit",
                                 message=f"The text for {slot_name!r} doesn't fit on this product even at the "
                                         "smallest size; please shorten it."))
        problems += found
    return problems


def change_texts(order_id: str, line_no: int, texts: Mapping[str, str], *, uow, now: datetime,
                 by: str = CUSTOMER) -> str:
    """Give one item new custom text before the gate; the design is rendered again from the pinned template.

    The text is checked by the same rules as at checkout. An order whose design was ready goes back to
    rendering, its jobs leave their batch and are routed again once the new design is ready.

    Returns:
        "changed", or "unchanged" when the text is what the item already has.

    Raises:
        NotFound: no such order or item.
        NotAllowed: the order can no longer change (the sentence says why).
        ValidationFailed: the text breaks a rule; nothing was changed.
    """
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None:
            raise NotFound("We can't find that order.")
        jobs = uow.jobs.for_order(order_id)
        _check_editable(order, jobs, uow=uow, what="text")
        line = next((line for line in order.lines if line.line_no == line_no), None)
        if line is None:
            raise NotFound(f"Order {order.number} has no item {line_no}.")
        spec = uow.templates.spec(line.template_key, line.template_version)
        if not spec:
            raise NotAllowed(f"The text of item {line_no} can't be changed here; send us a change request.")
        template = TemplateSpec.from_spec(line.template_key, line.template_version, spec)
        cleaned = {slot: " ".join(str(text).split()) for slot, text in texts.items()}
        problems = text_problems(template, cleaned, _prohibited(uow.catalogue.prohibited_words()))
        if problems:
            raise ValidationFailed(problems)
        before = dict(line.texts)
        after = before | cleaned
        if after == before:
            return "unchanged"
        line.texts = after
        if order.status == OrderStatus.READY_FOR_PRODUCTION:
            _take_back(jobs, at=now, by=by, why="the customer changed the text")  # the whole order re-routes
            order.advance(OrderStatus.RENDERING, at=now, source=by, reason="the customer changed the text")
            uow.defer(RenderAsset(order_id=order_id))
        uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="customer.text_changed",
                               key=f"text:{order_id}:{line.id}:{_digest(after)}:{now.isoformat()}",
                               details={"line_no": line_no, "before": before, "after": after}))
        uow.commit()
    log.info("order %s: text of item %d changed by %s", order_id, line_no, by)
    return "changed"


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(sorted(value.items())).encode()).hexdigest()[:12]


# ---- shipping address ----------------------------------------------------------------------------------------


class AddressNotVerified(ValidationFailed):
    """The carrier cannot deliver to the address as written; `suggestion` is its corrected version, if any."""

    code = "address_not_verified"

    def __init__(self, problems: list[Problem], suggestion: Address | None) -> None:
        super().__init__(problems)
        self.message = ("We couldn't verify this address with the carrier. Please check the highlighted fields"
                        + (" or use the suggested correction." if suggestion else "."))
        self.suggestion = suggestion


def change_address(order_id: str, address: Address, *, uow, carrier: Carrier, now: datetime,
                   by: str = CUSTOMER) -> str:
    """Ship an order to a new address before the gate, once the carrier has verified it.

    The carrier is asked outside any transaction; the order is then locked and checked again, so a gate
    passed meanwhile still refuses. A new destination zone sends the order back to routing (nearest partner).

    Returns:
        "changed", or "unchanged" when it is the address the order already has.

    Raises:
        NotFound: no such order.
        NotAllowed: the order can no longer change.
        ValidationFailed: a required field is blank (nothing was sent to the carrier).
        AddressNotVerified: the carrier cannot deliver there; field errors and maybe a suggestion.
        CarrierUnavailable: the carrier could not be asked; nothing was changed.
    """
    missing = [Problem(field=f"address.{f}", code="address_incomplete",
                       message=f"Please add the {FIELD_NAMES[f]} to the address.") for f in address.missing()]
    if missing:
        raise ValidationFailed(missing)
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            raise NotFound("We can't find that order.")
        _check_editable(order, uow.jobs.for_order(order_id), uow=uow, what="address")
        if order.shipping_address == address:
            return "unchanged"
    verification = carrier.verify_address(address)
    if not verification.ok:
        problems = [Problem(field=f"address.{e.field}", code=e.code,
                            message=_address_sentence(e.field, e.message)) for e in verification.errors]
        raise AddressNotVerified(problems, verification.suggestion)
    with uow:
        order = uow.orders.get(order_id, lock=True)
        jobs = uow.jobs.for_order(order_id)
        _check_editable(order, jobs, uow=uow, what="address")
        before = order.shipping_address
        order.shipping_address = address
        rerouted = False
        if order.status == OrderStatus.READY_FOR_PRODUCTION and _zone(before) != _zone(address):
            rerouted = _take_back(jobs, at=now, by=by, why="the customer changed the delivery address") > 0
            if rerouted:
                uow.defer(RouteOrder(order_id=order_id))
        changed = sorted(f for f in Address.__dataclass_fields__ if getattr(before, f) != getattr(address, f))
        uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="customer.address_changed",
                               key=f"address:{order_id}:{now.isoformat()}",  # no PII: which fields, not values
                               details={"fields": changed, "country": address.country, "rerouted": rerouted}))
        uow.commit()
    log.info("order %s: delivery address changed by %s (re-routed: %s)", order_id, by, rerouted)
    return "changed"


def _zone(address: Address) -> str:
    return destination_zone(Destination.from_address(address))


def _address_sentence(field: str, carrier_message: str) -> str:
    if field == "address":
        return "The carrier can't find this address. Please check the street and number."
    name = FIELD_NAMES.get(field, {"region": "state or region", "line2": "second address line"}.get(field, field))
    said = carrier_message.strip().rstrip(".")
    return f"Please check the {name}" + (f": {said}." if said else ".")


# ---- change requests (the exception inbox) -------------------------------------------------------------------

MAX_REQUEST_CHARS = 2000


def request_change(order_id: str, message: str, *, request_id: str, uow, now: datetime,
                   by: str = CUSTOMER) -> str:
    """Put a customer's change request in support's exception inbox and on the timeline.

    `request_id` comes with the form, so a form sent twice (a double click, a reload) is one request.

    Returns:
        "requested", or "already_requested" for a repeat of the same form.

    Raises:
        NotFound: no such order.
        NotAllowed: the order was cancelled.
        ValidationFailed: the request is empty or too long.
    """
    text = message.strip()
    if not text:
        raise ValidationFailed([Problem(field="message", code="required",
                                        message="Please tell us what you would like to change.")])
    if len(text) > MAX_REQUEST_CHARS:
        raise ValidationFailed([Problem(field="message", code="too_long",
                                        message=f"Please keep the request to {MAX_REQUEST_CHARS} characters "
                                                f"(it has {len(text)}).")])
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            raise NotFound("We can't find that order.")
        if order.status == OrderStatus.CANCELLED:
            raise NotAllowed(f"Order {order.number} was cancelled, so there is nothing left to change.")
        opened = uow.alerts.raise_(
            kind="change_request", key=f"{order_id}:{request_id}", order_id=order_id, severity="warning", at=now,
            message=f"Order {order.number}: the customer asks for a change: {_excerpt(text)}",
            details={"request": text, "request_id": request_id, "number": order.number,
                     "status": str(order.status), "past_gate": order.past_gate, "source": by,
                     "suggested_actions": ["contact", "verify_address", "refund"]})
        uow.timeline.add(Noted(order_id=order_id, at=now, source=by, kind="customer.change_requested",
                               key=f"change-request:{order_id}:{request_id}",
                               details={"request_id": request_id, "request": text}))
        uow.commit()
    return "requested" if opened else "already_requested"


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# ---- what the customer's page shows --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineLine:
    at: datetime
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView:
    line_no: int
    sku: str
    quantity: int
    texts: Mapping[str, str]
    slots: tuple[tuple[str, int], ...]  # (text slot, most characters) of the pinned template
    preview_asset_id: str | None = None  # the rendered design, when it has a preview image


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPage:
    """Everything the customer's page shows; nothing about staff, partners or other customers."""

    order_id: str
    number: str
    status: str
    headline: str
    placed_at: datetime
    editable: bool
    not_editable_because: str | None
    expected_gate: datetime | None  # when production is expected to start, while it has not
    gate_passed_at: datetime | None
    cancelled: bool
    cancellable: bool  # also while on hold before the gate, when nothing else may change
    items: tuple[ItemView, ...]
    address: Address
    timeline: tuple[TimelineLine, ...]


HEADLINES: Mapping[str, str] = {
    OrderStatus.ACCEPTED: "We have your order and are preparing your design.",
    OrderStatus.RENDERING: "We are preparing your design for print.",
    OrderStatus.READY_FOR_PRODUCTION: "Your design is ready and waiting for production.",
    OrderStatus.IN_PRODUCTION: "Your order is being printed.",
    OrderStatus.QA: "Your items are printed and in our quality check.",
    OrderStatus.READY_TO_SHIP: "Your items passed our quality check and are being packed.",
    OrderStatus.LABEL_CREATED: "Your parcel is packed and waiting for the carrier.",
    OrderStatus.SHIPPED: "Your parcel is on its way.",
    OrderStatus.DELIVERED: "Your parcel was delivered.",
    OrderStatus.ON_HOLD: "Your order is paused while our team looks into something.",
    OrderStatus.CANCELLED: "This order was cancelled.",
    OrderStatus.FAILED: "Something went wrong with this order; our support team will contact you.",
}

_STATUS_LINES: Mapping[str, str] = {
    "order.rendering": "We started preparing your design for print.",
    "order.ready_for_production": "Your design is ready for print.",
    "order.in_production": "Your order went into production.",
    "order.qa": "Your items are printed and in our quality check.",
    "order.ready_to_ship": "Your items passed our quality check.",
    "order.label_created": "Your parcel is packed and has its shipping label.",
    "order.shipped": "Your parcel is on its way.",
    "order.delivered": "Your parcel was delivered.",
    "order.cancelled": "Your order was cancelled.",
    "order.failed": "Something went wrong with your order; our support team will contact you.",
}
_HOLD_LINES: Mapping[str, str] = {
    HoldReason.NEEDS_ADDRESS: "The carrier could not verify the delivery address; we will contact you.",
    HoldReason.CARRIER_EXCEPTION: "The carrier reported a problem with your parcel; our team is on it.",
}
_SCAN_WORDS: Mapping[str, str] = {
    "pre_transit": "The carrier has your parcel's details.",
    "in_transit": "Your parcel is in transit",
    "out_for_delivery": "Your parcel is out for delivery",
    "delivered": "The carrier delivered your parcel",
    "return_to_sender": "The carrier is returning your parcel to us",
    "failure": "The carrier could not deliver your parcel",
}


def customer_line(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """One timeline row as the customer may read it, or None for rows that are not theirs to see.

    A whitelist: staff notes and actions, partners, batches, QA verdicts and internal re-drives never show;
    what does show is worded for the customer, without names of staff or partners.
    """
    if event_type == "order.received":
        return "We received your order."
    if event_type == "order.on_hold":
        return _HOLD_LINES.get(str(payload.get("reason")),
                               "Your order is paused while our team looks into something.")
    if event_type in _STATUS_LINES:
        if payload.get("reason") == "released" and event_type != "order.cancelled":
            return "Your order is moving again."
        return _STATUS_LINES[event_type]
    if event_type == "payment.voided":
        return "The payment hold on your card was released."
    if event_type == "customer.text_changed":
        return f"You changed the text of item {payload.get('line_no')}; we are preparing the new design."
    if event_type == "customer.address_changed":
        return "You changed the delivery address."
    if event_type == "customer.change_requested":
        return "You sent us a change request; our support team will reply by e-mail."
    if event_type == "carrier.scan" and payload.get("applied"):
        words = _SCAN_WORDS.get(str(payload.get("status")))
        if words is None:
            return None
        where = payload.get("location")
        return words if words.endswith(".") else f"{words}{f' ({where})' if where else ''}."
    return None


def customer_timeline(rows: Iterable[Mapping[str, Any]]) -> tuple[TimelineLine, ...]:
    """The order's timeline rows (any order) → the customer's lines, oldest first."""
    lines = []
    for row in sorted(rows, key=lambda r: r["at"]):
        text = customer_line(str(row["type"]), row.get("payload") or {})
        if text is not None:
            lines.append(TimelineLine(at=row["at"], text=text))
    return tuple(lines)


def order_page(order_id: str, *, uow, events: Iterable[Mapping[str, Any]], batch_wait: timedelta) -> OrderPage:
    """The customer's view of their order.

    Args:
        events: the order's timeline rows (at, type, payload), read by the caller.
        batch_wait: the longest a job waits for its batch (the production rules), to estimate the gate.

    Raises:
        NotFound: no such order.
    """
    rows = list(events)
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            raise NotFound("We can't find that order.")
        jobs = uow.jobs.for_order(order_id)
        reason = why_not_editable(order, jobs)
        batches = [uow.batches.get(job.batch_id) for job in jobs if job.batch_id and job.status == JobStatus.BATCHED]
        released = any(batch is not None and batch.status not in OPEN_BATCH for batch in batches)
        at_partner = any(job.status not in _NOT_SENT for job in jobs)
        cancellable = (order.can_advance(OrderStatus.CANCELLED) and not order.past_gate and not released
                       and not at_partner)
        expected = None
        if reason is None:
            due = [batch.created_at + batch_wait for batch in batches if batch and batch.status == BatchStatus.OPEN]
            expected = min(due) if due else None
        items = []
        for line in order.lines:
            spec = uow.templates.spec(line.template_key, line.template_version) or {}
            slots = tuple((slot.name, slot.max_chars) for slot in
                          TemplateSpec.from_spec(line.template_key, line.template_version, spec).text_slots) \
                if spec else ()
            asset = uow.assets.get(line.asset_id) if line.asset_id else None
            items.append(ItemView(line_no=line.line_no, sku=line.sku, quantity=line.quantity,
                                  texts=dict(line.texts), slots=slots,
                                  preview_asset_id=asset["id"] if asset and asset.get("preview_key") else None))
        gate = next((r["at"] for r in sorted(rows, key=lambda r: r["at"]) if r["type"] == "order.in_production"),
                    None)
        return OrderPage(order_id=order.id, number=order.number, status=str(order.status),
                         headline=HEADLINES.get(order.status, ""), placed_at=order.placed_at,
                         editable=reason is None, not_editable_because=reason, expected_gate=expected,
                         gate_passed_at=gate, cancelled=order.status == OrderStatus.CANCELLED,
                         cancellable=cancellable, items=tuple(items),
                         address=order.shipping_address, timeline=customer_timeline(rows))
