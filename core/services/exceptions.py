"""The exception inbox: what support does about an order that cannot go on by itself.

Every entry is an open alert of one of the `KINDS` (raised by the shipping, tracking and notify stages and by
customers' change requests). Each action checks that the entry is still open and that the order is still in
the state the action is for, writes its outcome on the order's timeline and in the audit log, and resolves the
entry, all in one transaction; calls to the carrier and the payment provider happen before it, never inside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Mapping

from core.commands import Address, BuyLabel, SendNotification
from core.errors import Conflict, NotAllowed, NotFound, PressroomError
from core.events import Noted
from core.model import Order, Shipment
from core.notifications import Channel, Milestone, NotificationStatus, notification_id
from core.ports import Payments
from core.services import notify
from core.services.customer_changes import void_payment
from core.services.shipping import Carrier, FieldError
from core.states import HoldReason, OrderStatus, ShipmentStatus

log = logging.getLogger(__name__)

KINDS = ("address", "carrier", "notification", "change_request")
"""Alert kinds that are exceptions for support to act on (the others are operational monitors)."""

MAX_NOTE = 1000


class Action(StrEnum):
    VERIFY_ADDRESS = "verify_address"
    RESHIP = "reship"
    REFUND = "refund"
    CONTACT = "contact"
    RESOLVE = "resolve"

    @property
    def action_id(self) -> str:
        """The policy's and the audit log's name for it (`core.policy.ACTIONS`)."""
        return f"exception.{self.value}"


_A = Action
SUGGESTED: Mapping[str, tuple[Action, ...]] = MappingProxyType({
    "address": (_A.VERIFY_ADDRESS, _A.CONTACT, _A.REFUND, _A.RESOLVE),
    "carrier": (_A.RESHIP, _A.REFUND, _A.CONTACT, _A.RESOLVE),
    "notification": (_A.CONTACT, _A.RESOLVE),  # contact: resend the message that failed
    "change_request": (_A.CONTACT, _A.VERIFY_ADDRESS, _A.REFUND, _A.RESOLVE),  # a new address, a refund…
})
"""Alert kind → the actions support may take on it, the most likely first."""

_LIVE_PARCEL = (ShipmentStatus.PURCHASED, ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY)
_GONE_PARCEL = (ShipmentStatus.RETURNED, ShipmentStatus.FAILURE, ShipmentStatus.LOST)
_CANCELLABLE = frozenset({OrderStatus.ACCEPTED, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION})
_BEFORE_LABEL = _CANCELLABLE | {OrderStatus.IN_PRODUCTION, OrderStatus.QA, OrderStatus.READY_TO_SHIP}


class AlreadyResolved(PressroomError):
    """Someone resolved the entry already (maybe a moment ago): nothing more to do."""

    code = "already_resolved"


class NoteRequired(PressroomError):
    """Resolving without an action needs a sentence saying why."""

    code = "note_required"


class AddressStillInvalid(PressroomError):
    """The carrier still cannot deliver to the edited address; nothing was changed."""

    code = "address_invalid"

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = (), suggestion: Address | None = None):
        super().__init__(message)
        self.errors = errors
        self.suggestion = suggestion


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What an action did, in a sentence for the person who clicked."""

    alert_id: int
    order_number: str
    action: Action
    summary: str


def suggested_actions(kind: str) -> tuple[Action, ...]:
    """What support may do about an entry of `kind` (only resolving with a note for a kind we don't know)."""
    return SUGGESTED.get(kind, (Action.RESOLVE,))


# ---- the actions ---------------------------------------------------------------------------------------------


def verify_address(alert_id: int, address: Address, *, uow, carrier: Carrier, actor: str, at: datetime,
                   note: str = "") -> Outcome:
    """Verify an edited address strictly, as the shipping stage does, and if the carrier accepts it put it on
    the order: an order held for its address is released and its label queued; one whose label is not bought
    yet (a customer's change request) ships to the new address when it gets there.

    Raises:
        AddressStillInvalid: a required field is blank, or the carrier still cannot deliver there.
        CarrierUnavailable: the carrier could not be asked; try again shortly.
        NotFound, AlreadyResolved: no such entry, or it is resolved.
        NotAllowed: the order's label is bought (or being bought), or the order has ended.
    """
    missing = address.missing()
    if missing:
        errors = tuple(FieldError(field=f, code="required", message=f"{f.replace('_', ' ')} is required")
                       for f in missing)
        raise AddressStillInvalid(f"Fill in the {', '.join(f.replace('_', ' ') for f in missing)} first.",
                                  errors=errors)
    with uow:
        alert, order = _entry(uow, alert_id, Action.VERIFY_ADDRESS)
        _address_editable(order, uow.shipments.for_order(order.id))
    verification = carrier.verify_address(address)  # no transaction open during the carrier call
    if not verification.ok:
        problems = "; ".join(f"{e.field.replace('_', ' ')}: {e.message}" for e in verification.errors)
        raise AddressStillInvalid(f"The carrier still cannot deliver to that address ({problems or 'unverified'}).",
                                  errors=verification.errors, suggestion=verification.suggestion)
    with uow:
        alert, order = _entry(uow, alert_id, Action.VERIFY_ADDRESS, lock=True)
        _address_editable(order, uow.shipments.for_order(order.id, lock=True))
        changed = sorted(f for f, v in address.as_dict().items() if v != order.shipping_address.as_dict().get(f))
        order.shipping_address = address
        fields = ", ".join(f.replace("_", " ") for f in changed) or "nothing changed"
        if order.status == OrderStatus.ON_HOLD and order.hold_reason == HoldReason.NEEDS_ADDRESS:
            order.release(at=at, source=f"user:{actor}")
            uow.defer(BuyLabel(order_id=order.id))
            summary = f"Address verified ({fields}); order {order.number} is released and its label is being bought."
        else:
            summary = f"Address verified ({fields}); order {order.number} will ship there."
        _finish(uow, alert, order, Action.VERIFY_ADDRESS, actor=actor, at=at, note=note, summary=summary,
                details={"fields_changed": changed}, before=None,
                after={"status": str(order.status), "fields_changed": changed})
        uow.commit()
    return Outcome(alert_id=alert_id, order_number=order.number, action=Action.VERIFY_ADDRESS, summary=summary)


def reship(alert_id: int, *, uow, actor: str, at: datetime, note: str = "") -> Outcome:
    """Send the order again: a returned, undeliverable or lost parcel is left behind (a silent one is declared
    lost) and the shipping stage buys a new label on a new shipment; an order whose label could not be bought
    is simply tried again.

    Raises:
        NotFound, AlreadyResolved: no such entry, or it is resolved.
        NotAllowed: the order is not on hold for a carrier exception, or its parcel was delivered.
    """
    with uow:
        alert, order = _entry(uow, alert_id, Action.RESHIP, lock=True)
        if order.status != OrderStatus.ON_HOLD or order.hold_reason != HoldReason.CARRIER_EXCEPTION:
            raise NotAllowed(f"Order {order.number} is {_state(order)}, not held for a carrier problem: "
                             "there is nothing to reship.")
        shipment = uow.shipments.for_order(order.id, lock=True)
        old = None if shipment is None else {"shipment": shipment.id, "tracking_code": shipment.tracking_code,
                                             "shipment_status": str(shipment.status)}
        source = f"user:{actor}"
        if shipment is not None and shipment.status == ShipmentStatus.DELIVERED:
            raise NotAllowed(f"Order {order.number}'s parcel {shipment.tracking_code} was delivered: "
                             "there is nothing to reship.")
        if shipment is not None and shipment.status in _LIVE_PARCEL:
            shipment.advance(ShipmentStatus.LOST, at=at, source=source, reason="declared lost by support to reship")
        if shipment is not None and shipment.status in _GONE_PARCEL:
            order.advance(OrderStatus.READY_TO_SHIP, at=at, source=source, reason="reship")
            order.held_from, order.hold_reason = None, None
            summary = (f"Order {order.number} is being reshipped: parcel {shipment.tracking_code} "
                       f"({shipment.status}) is left behind and a new label is being bought.")
        else:  # no label was ever bought (the carrier refused): try again where it stopped
            order.release(at=at, source=source)
            summary = f"Order {order.number} is released: the shipping stage tries to buy its label again."
        uow.defer(BuyLabel(order_id=order.id))
        _finish(uow, alert, order, Action.RESHIP, actor=actor, at=at, note=note, summary=summary,
                details={"previous": old}, before=old, after={"status": str(order.status)})
        uow.commit()
    return Outcome(alert_id=alert_id, order_number=order.number, action=Action.RESHIP, summary=summary)


def refund(alert_id: int, *, uow, payments: Payments, actor: str, at: datetime, note: str = "") -> Outcome:
    """Give the customer their money back and close the order: the order ends `failed` with the refund on its
    timeline and the entry resolved, then (after the commit) the payment is voided through the payments port.
    A void that fails raises a critical `payment` alert for someone to void it by hand; nothing is lost.

    Raises:
        NotFound, AlreadyResolved: no such entry, or it is resolved (nothing is voided then).
        NotAllowed: the order is not on hold (it is moving, delivered or already closed).
    """
    with uow:
        alert, order = _entry(uow, alert_id, Action.REFUND, lock=True)
        if order.status != OrderStatus.ON_HOLD:
            raise NotAllowed(f"Order {order.number} is {_state(order)}: only an order on hold can be refunded and "
                             "closed here.")
        amount = {"amount_cents": order.total_cents, "currency": order.currency}
        held_from, authorization, order_id, number = (order.held_from, order.payment_authorization, order.id,
                                                      order.number)
        order.advance(OrderStatus.FAILED, at=at, source=f"user:{actor}", reason="refunded",
                      details=amount | ({"note": note} if note else {}))
        order.held_from, order.hold_reason = None, None
        summary = f"Order {number} is refunded ({order.total_cents / 100:.2f} {order.currency}) and closed."
        _finish(uow, alert, order, Action.REFUND, actor=actor, at=at, note=note, summary=summary,
                details=amount | {"authorization": authorization},
                before={"status": str(OrderStatus.ON_HOLD), "held_from": str(held_from)},
                after={"status": str(OrderStatus.FAILED)} | amount)
        uow.commit()
    if not void_payment(order_id, number, authorization, by=f"user:{actor}", uow=uow, payments=payments, now=at,
                        failed=f"was refunded by {actor}"):
        return Outcome(alert_id=alert_id, order_number=number, action=Action.REFUND,
                       summary=summary + " The payment provider did not answer: ops are alerted to void it by hand.")
    log.info("order %s refunded by %s (alert %s)", order_id, actor, alert_id)
    return Outcome(alert_id=alert_id, order_number=number, action=Action.REFUND, summary=summary)


def contact_customer(alert_id: int, *, uow, actor: str, at: datetime, note: str = "") -> Outcome:
    """Tell the customer: the exception message on every channel they can be reached on (a resend where it
    was sent or reserved before), or, for a failed notification, that same message once more. The entry is
    resolved first, under its lock; the resends are queued after that commit (each audited by notify.resend).

    Raises:
        NotFound, AlreadyResolved: no such entry, or it is resolved.
        NotAllowed: the customer cannot be reached on any channel (opted out, no address).
    """
    with uow:
        alert, order = _entry(uow, alert_id, Action.CONTACT, lock=True)
        if alert["kind"] == "notification":
            milestone, channel = _failed_message(alert)
            channels = (Channel(channel),)
        else:
            milestone, channels = str(Milestone.EXCEPTION), tuple(Channel)
        reachable = [ch for ch in channels if _reachable(order, ch)]
        if not reachable:
            raise NotAllowed(f"Order {order.number}'s customer cannot be reached by "
                             f"{' or '.join(str(ch) for ch in channels)} (opted out, or no address): resolve "
                             "with a note instead.")
        again = [ch for ch in reachable if uow.notifications.get(order.id, milestone, str(ch)) is not None]
        for channel in reachable:
            if channel not in again:  # never due on that channel before: its first message
                uow.notifications.insert(id=notification_id(order.id, milestone, channel), order_id=order.id,
                                         milestone=milestone, channel=channel, status=NotificationStatus.QUEUED,
                                         at=at)
                uow.defer(SendNotification(order_id=order.id, milestone=milestone, channel=str(channel)))
        order_id, number = order.id, order.number
        by = ", ".join(str(ch) for ch in reachable)
        summary = f"The {milestone.replace('_', ' ')} message is on its way to the customer by {by}."
        _finish(uow, alert, order, Action.CONTACT, actor=actor, at=at, note=note, summary=summary,
                details={"milestone": milestone, "channels": [str(ch) for ch in reachable],
                         "unreachable": [str(ch) for ch in channels if ch not in reachable]},
                before=None, after={"channels": [str(ch) for ch in reachable]})
        uow.commit()
    for channel in again:
        try:
            notify.resend(order_id, milestone, channel, actor, uow=uow, now=at)
        except (NotAllowed, NotFound, Conflict) as why:  # opted out or resent by someone in between: logged
            log.warning("order %s: the %s %s was not resent: %s", order_id, milestone, channel, why.code)
    return Outcome(alert_id=alert_id, order_number=number, action=Action.CONTACT, summary=summary)


def resolve(alert_id: int, note: str, *, uow, actor: str, at: datetime) -> Outcome:
    """Close the entry with a sentence saying what was done or why nothing needs doing (the order stays as it
    is: a held order stays held).

    Raises:
        NoteRequired: the note is blank or too long.
        NotFound, AlreadyResolved: no such entry, or it is resolved.
    """
    note = (note or "").strip()
    if not note:
        raise NoteRequired("Write a note saying what was done or why nothing needs doing.")
    if len(note) > MAX_NOTE:
        raise NoteRequired(f"Keep the note under {MAX_NOTE} characters (it has {len(note)}).")
    with uow:
        alert, order = _entry(uow, alert_id, Action.RESOLVE, lock=True)
        summary = f"Resolved: {note}"
        _finish(uow, alert, order, Action.RESOLVE, actor=actor, at=at, note=note, summary=summary, details={},
                before={"status": str(order.status)}, after={"status": str(order.status)})
        uow.commit()
    return Outcome(alert_id=alert_id, order_number=order.number, action=Action.RESOLVE, summary=summary)


# ---- staff cancelling an order ------------------------------------------------------------------------------


def before_the_gate(status: str, held_from: str | None = None) -> bool:
    """Whether an order in `status` (held from `held_from`) can still be cancelled: production not started."""
    current = held_from if status == OrderStatus.ON_HOLD and held_from else status
    return current in _CANCELLABLE


def record_staff_cancel(order_id: str, outcome: str, reason: str, *, uow, actor: str, at: datetime) -> None:
    """The audit row for a cancel a staff member made (`customer_changes.cancel_order` did the cancelling)."""
    with uow:
        uow.audit.record(actor, "order.cancel", "order", order_id, order_id, None,
                         {"outcome": outcome, "reason": reason[:200]}, at)
        uow.commit()


# ---- helpers -------------------------------------------------------------------------------------------------


def _entry(uow, alert_id: int, action: Action, *, lock: bool = False) -> tuple[dict[str, Any], Order]:
    """The open inbox entry and its order, or the reason the action cannot be taken on it."""
    alert = uow.alerts.get(int(alert_id))
    if alert is None or alert["kind"] not in KINDS:
        raise NotFound(f"There is no exception #{alert_id} in the inbox.")
    if alert["cleared_at"] is not None:
        by = f" by {alert['resolved_by']}" if alert.get("resolved_by") else ""
        how = f" ({str(alert['resolution']).replace('_', ' ')})" if alert.get("resolution") else ""
        raise AlreadyResolved(f"Exception #{alert_id} was already resolved{by}{how}.")
    if action not in suggested_actions(alert["kind"]):
        raise NotAllowed(f"“{action.value.replace('_', ' ')}” does not apply to {alert['kind'].replace('_', ' ')} "
                         "exceptions.")
    order = uow.orders.get(alert["order_id"], lock=lock) if alert["order_id"] else None
    if order is None:
        raise NotFound(f"Exception #{alert_id} names no order that still exists.")
    return alert, order


def _state(order: Order) -> str:
    why = f" ({order.hold_reason})" if order.status == OrderStatus.ON_HOLD and order.hold_reason else ""
    return f"{order.status}{why}".replace("_", " ")


def _address_editable(order: Order, shipment: Shipment | None) -> None:
    """Held for its address, or not at the carrier yet: no label bought or being bought for the old one."""
    if order.status == OrderStatus.ON_HOLD and order.hold_reason == HoldReason.NEEDS_ADDRESS:
        return
    current = order.held_from if order.status == OrderStatus.ON_HOLD else order.status
    at_carrier = shipment is not None and shipment.carrier_shipment_id and shipment.status not in _GONE_PARCEL
    if current not in _BEFORE_LABEL or at_carrier:
        raise NotAllowed(f"Order {order.number} is {_state(order)}: its label is bought (or being bought), so "
                         "the address can no longer change here. Contact the customer or the carrier instead.")


def _reachable(order: Order, channel: Channel) -> bool:
    customer = order.customer
    if channel == Channel.EMAIL:
        return bool(customer.email) and not customer.email_opt_out
    return bool(customer.phone) and not customer.sms_opt_out


def _failed_message(alert: dict[str, Any]) -> tuple[str, str]:
    """(milestone, channel) of a notification alert, keyed `<order>:<milestone key>:<channel>`."""
    _, key, channel = alert["key"].split(":", 2) if alert["key"].count(":") == 2 else ("", "", "")
    milestone = key.split(".", 1)[0]
    if milestone not in {str(m) for m in Milestone} or channel not in {str(c) for c in Channel}:
        raise NotFound(f"Exception #{alert['id']} does not say which message failed; resolve it with a note.")
    return milestone, channel


def _finish(uow, alert: dict[str, Any], order: Order, action: Action, *, actor: str, at: datetime, note: str,
            summary: str, details: dict[str, Any], before: dict[str, Any] | None,
            after: dict[str, Any] | None) -> None:
    """The outcome on the order's timeline and in the audit log, and the entry out of the inbox."""
    if not uow.alerts.resolve(alert["id"], user=actor, resolution=action.value, at=at):
        raise AlreadyResolved(f"Exception #{alert['id']} was resolved by someone else a moment ago.")
    uow.timeline.add(Noted(order_id=order.id, at=at, source=f"user:{actor}", kind=f"exception.{action.value}",
                           key=f"exception:{alert['id']}:resolved",
                           details={"exception": alert["id"], "kind": alert["kind"], "action": action.value,
                                    "message": summary} | ({"note": note} if note else {}) | details))
    uow.audit.record(actor, action.action_id, "alert", str(alert["id"]), order.id, before,
                     (after or {}) | ({"note": note} if note else {}), at)
    log.info("exception %s (%s) on order %s: %s by %s", alert["id"], alert["kind"], order.id, action.value, actor)
