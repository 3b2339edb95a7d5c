"""Shipping and tracking stages: verify, buy a label exactly once, store it; follow the parcel to the door."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol

from core.commands import Address
from core.errors import PressroomError
from core.events import Noted
from core.model import Order, Shipment
from core.notifications import Milestone
from core.ports import ObjectStore
from core.services.notify import notify_milestone
from core.states import HoldReason, OrderStatus, ShipmentStatus, ShippingSpeed

log = logging.getLogger(__name__)
SOURCE = "worker:shipping"
CARRIER_SOURCE = "carrier:easypost"
SCAN_KIND = "carrier.scan"
"""Timeline type of one carrier scan; the silent-parcel monitor reads the last one per order."""


# ---- the carrier port ----------------------------------------------------------------------------------------


class CarrierUnavailable(PressroomError):
    """The carrier is down, throttling or unreachable, and nothing is known to have changed: try again later."""

    code = "carrier_unavailable"

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownOutcome(PressroomError):
    """A buy may or may not have happened (timeout, dropped connection): retrieve the shipment, never re-create."""

    code = "carrier_unknown_outcome"


class CarrierRefused(PressroomError):
    """A definite refusal (bad parcel, no such rate…): retrying the same request will not help."""

    code = "carrier_refused"


class ShipmentNotPurchased(PressroomError):
    """A scan arrived for a shipment whose purchase is not recorded yet (the webhook beat the buy's answer)."""

    code = "shipment_not_purchased"


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldError:
    """One reason the carrier cannot deliver to an address, on our field names (`line1`, `postal_code`…)."""

    field: str
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    ok: bool
    errors: tuple[FieldError, ...] = ()
    suggestion: Address | None = None  # the address with the carrier's suggested fixes, when it offers any


@dataclass(frozen=True, slots=True, kw_only=True)
class Parcel:
    weight_oz: float
    length_in: float = 12.0
    width_in: float = 9.0
    height_in: float = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    id: str
    carrier: str
    service: str
    rate_cents: int
    delivery_days: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase:
    tracking_code: str
    label_url: str
    carrier: str
    service: str
    rate_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierShipment:
    id: str
    rates: tuple[Rate, ...] = ()
    purchase: Purchase | None = None  # set once postage is bought
    to: Address | None = None  # the destination as the carrier holds it


class Carrier(Protocol):
    """A shipping API (EasyPost). Adapter: `adapters.carrier.EasyPostCarrier`.

    Every call may raise CarrierUnavailable; `buy` raises UnknownOutcome when it cannot tell whether it bought.
    """

    def verify_address(self, address: Address) -> Verification:
        """Strict verification: `ok` only for an address the carrier can deliver to."""

    def create_shipment(self, to: Address, from_: Address, parcel: Parcel, reference: str) -> CarrierShipment:
        """A new, unbought shipment with its rates. Raises CarrierRefused for an impossible parcel or route."""

    def buy(self, shipment_id: str, rate_id: str) -> Purchase:
        """Buy postage; a shipment already bought answers with its existing purchase."""

    def retrieve(self, shipment_id: str) -> CarrierShipment:
        """The shipment as the carrier has it now (`purchase` set when bought)."""

    def find_by_reference(self, reference: str) -> CarrierShipment | None:
        """The shipment created with this `reference` (our order id), or None. References need not be unique at
        the carrier: with several, the carrier picks one (EasyPost does not say which)."""

    def fetch_label(self, url: str) -> bytes:
        """The label file behind a purchase's URL."""


# ---- rules ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ShippingRules:
    """Parcel weights per product type and the carriers we buy from (empty: any the account rates)."""

    item_ounces: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({
        "tshirt": 6.0, "hoodie": 18.0, "mug": 16.0, "phone_case": 3.0, "poster": 8.0, "cap": 4.0}))
    default_item_ounces: float = 8.0
    packaging_ounces: float = 3.0
    carriers: frozenset[str] = frozenset()


def choose_rate(rates: tuple[Rate, ...] | list[Rate], speed: ShippingSpeed,
                carriers: frozenset[str] = frozenset()) -> Rate | None:
    """Express: the fewest days in transit, then the cheapest; standard: the cheapest, then the fastest."""
    usable = [r for r in rates if not carriers or r.carrier in carriers]
    if not usable:
        return None

    def days(rate: Rate) -> int:
        return rate.delivery_days if rate.delivery_days is not None else 99

    if speed == ShippingSpeed.EXPRESS:
        return min(usable, key=lambda r: (days(r), r.rate_cents, r.carrier, r.service))
    return min(usable, key=lambda r: (r.rate_cents, days(r), r.carrier, r.service))


def parcel_for(product_types: list[str], rules: ShippingRules) -> Parcel:
    """One parcel for the whole order: the items' weights plus packaging."""
    ounces = sum(rules.item_ounces.get(kind, rules.default_item_ounces) for kind in product_types)
    return Parcel(weight_oz=round(ounces + rules.packaging_ounces, 1))


# ---- buying the label ------------------------------------------------------------------------------------------

_GONE = (ShipmentStatus.RETURNED, ShipmentStatus.FAILURE, ShipmentStatus.LOST)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    number: str
    address: Address
    speed: ShippingSpeed
    parcel: Parcel
    carrier_shipment_id: str | None
    create_sent: bool  # a create may have reached the carrier (its answer never recorded): ask before another


def buy_label(order_id: str, *, uow, carrier: Carrier, store: ObjectStore, now: Callable[[], datetime],
              new_id: Callable[[str], str], ship_from: Address, rules: ShippingRules = ShippingRules()) -> str:
    """Verify the address, create the carrier shipment, buy the label once, store it.

    Safe to run twice and after a crash anywhere: the shipment is marked pending before the carrier is asked to
    create one, so a later run that finds it pending with no carrier id asks the carrier for the order's shipment
    by reference before creating another (a create whose answer was lost leaves no second shipment); the
    carrier's shipment id is committed before the buy, so a later run retrieves that shipment (bought or not);
    a buy whose answer was lost is settled by retrieving, never by buying a new shipment. No transaction is
    open during a carrier call.

    Returns:
        "missing", "skipped", "needs_address", "held" (the carrier refused) or "label_created".

    Raises:
        CarrierUnavailable: the carrier could not be reached or the buy is unsettled; the actor retries.
    """
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            return "missing"
        shipment = _current(uow.shipments.for_order(order_id))
        if not _wants_label(order, shipment):
            return "skipped"
        plan = _Plan(number=order.number, address=order.shipping_address, speed=order.shipping_speed,
                     parcel=parcel_for(_product_types(order, uow), rules),
                     carrier_shipment_id=shipment.carrier_shipment_id if shipment else None,
                     create_sent=_create_sent(shipment))
    try:
        if plan.carrier_shipment_id is None:
            created = _created_before(order_id, plan, carrier=carrier, uow=uow) if plan.create_sent else None
            if created is None:
                verification = carrier.verify_address(plan.address)
                if not verification.ok:
                    return _needs_address(order_id, verification, uow=uow, at=now(), new_id=new_id)
                if not _record_create_sent(order_id, uow=uow, at=now(), new_id=new_id):
                    return "skipped"
                created = carrier.create_shipment(plan.address, ship_from, plan.parcel, order_id)
            stored_id = _record_created(order_id, created, uow=uow, at=now(), new_id=new_id)
            if stored_id is None:
                return "skipped"
            remote = created if stored_id == created.id else carrier.retrieve(stored_id)
        else:
            remote = carrier.retrieve(plan.carrier_shipment_id)
        purchase = remote.purchase or _buy(order_id, remote, plan, carrier=carrier, rules=rules)
    except CarrierRefused as refused:
        return _hold_for_carrier(order_id, uow=uow, at=now(), why=refused.message)
    if not _record_purchase(order_id, remote.id, purchase, uow=uow, at=now()):
        return "skipped"
    _store_label(order_id, remote.id, purchase, carrier=carrier, store=store, uow=uow, at=now)
    log.info("order %s: %s %s label stored (shipment %s)", order_id, purchase.carrier, purchase.service, remote.id)
    return "label_created"


def _current(shipment: Shipment | None) -> Shipment | None:
    """The order's live shipment; one that came back or was lost does not count (a reship starts afresh)."""
    return None if shipment is None or shipment.status in _GONE else shipment


def _create_sent(shipment: Shipment | None) -> bool:
    """Pending with no carrier id: marked just before a create was sent whose answer was never recorded."""
    return shipment is not None and shipment.status == ShipmentStatus.PENDING and not shipment.carrier_shipment_id


def _wants_label(order: Order, shipment: Shipment | None) -> bool:
    if order.status == OrderStatus.READY_TO_SHIP:
        return True
    return order.status == OrderStatus.LABEL_CREATED and shipment is not None and shipment.label_key is None


def _product_types(order: Order, uow) -> list[str]:
    kinds = []
    for line in order.lines:
        kind = (uow.variants.describe(line.sku) or {}).get("product_type") or ""
        kinds += [kind] * line.quantity
    return kinds


def _buy(order_id: str, remote: CarrierShipment, plan: _Plan, *, carrier: Carrier, rules: ShippingRules) -> Purchase:
    rate = choose_rate(remote.rates, plan.speed, rules.carriers)
    if rate is None:
        raise CarrierRefused(f"no {plan.speed} rate from {', '.join(sorted(rules.carriers)) or 'any carrier'} "
                             f"for shipment {remote.id}")
    try:
        return carrier.buy(remote.id, rate.id)
    except UnknownOutcome as unknown:
        log.warning("order %s: buy of %s had an unknown outcome (%s); retrieving it", order_id, remote.id, unknown)
        found = carrier.retrieve(remote.id)
        if found.purchase is not None:
            return found.purchase
        raise CarrierUnavailable(f"order {order_id}: shipment {remote.id} is not bought after an unknown outcome; "
                                 "the retry buys that same shipment") from unknown


def _record_create_sent(order_id: str, *, uow, at: datetime, new_id: Callable[[str], str]) -> bool:
    """Commit the live shipment as pending before the carrier is asked to create one, so a retry after a lost
    answer knows to ask first; False when the order no longer wants a label."""
    with uow:
        order = uow.orders.get(order_id, lock=True)
        shipment = _current(uow.shipments.for_order(order_id, lock=True))
        if order is None or not _wants_label(order, shipment):
            return False
        if shipment is None:
            uow.shipments.add(Shipment(id=new_id("shp"), order_id=order_id, created_at=at))
        elif shipment.status == ShipmentStatus.NEEDS_ADDRESS:
            shipment.advance(ShipmentStatus.PENDING, at=at, source=SOURCE, reason="address verified")
        uow.commit()
    return True


def _created_before(order_id: str, plan: _Plan, *, carrier: Carrier, uow) -> CarrierShipment | None:
    """The shipment an earlier create made at the carrier (its answer lost), found by our reference; None when
    there is none to take: then a new one is created.

    A shipment found is not taken when it goes to another address than the order's now (the address was
    corrected since: it stays unbought) or is already on one of our shipment records (an earlier parcel of the
    order, which the carrier may answer for the shared reference).
    """
    found = carrier.find_by_reference(order_id)
    if found is None:
        log.info("order %s: no shipment at the carrier from the earlier create; creating one", order_id)
        return None
    if found.to is None or not _same_destination(found.to, plan.address):
        log.warning("order %s: shipment %s found by reference goes to another address; it stays unbought",
                    order_id, found.id)
        return None
    with uow:
        known = uow.shipments.by_carrier_id(found.id)
    if known is not None and _current(known) is None:
        log.info("order %s: shipment %s found by reference is an earlier parcel's; creating one", order_id, found.id)
        return None
    log.info("order %s: the earlier create made shipment %s; taking it instead of creating another",
             order_id, found.id)
    return found


def _same_destination(a: Address, b: Address) -> bool:
    """The same address field by field, ignoring case and spacing (the carrier keeps what it was sent)."""
    def folded(address: Address) -> tuple[str, ...]:
        return tuple(" ".join(str(getattr(address, f) or "").split()).casefold()
                     for f in ("name", "line1", "line2", "city", "region", "postal_code", "country"))
    return folded(a) == folded(b)


def _record_created(order_id: str, created: CarrierShipment, *, uow, at: datetime,
                    new_id: Callable[[str], str]) -> str | None:
    """Commit the carrier's shipment id before anything is bought; returns the id to buy (a concurrent run may
    have stored its own first), or None when the order no longer wants a label."""
    with uow:
        order = uow.orders.get(order_id, lock=True)
        shipment = _current(uow.shipments.for_order(order_id, lock=True))
        if order is None or not _wants_label(order, shipment):
            return None
        if shipment is not None and shipment.carrier_shipment_id:
            log.info("order %s: shipment %s already stored; %s stays unbought", order_id,
                     shipment.carrier_shipment_id, created.id)
            return shipment.carrier_shipment_id
        if shipment is None:
            shipment = Shipment(id=new_id("shp"), order_id=order_id, created_at=at)
            uow.shipments.add(shipment)
        if shipment.status == ShipmentStatus.NEEDS_ADDRESS:
            shipment.advance(ShipmentStatus.PENDING, at=at, source=SOURCE, reason="address verified")
        shipment.carrier_shipment_id = created.id
        shipment.advance(ShipmentStatus.CREATED, at=at, source=SOURCE,
                         details={"carrier_shipment": created.id, "rates": len(created.rates)})
        uow.commit()
    return created.id


def _record_purchase(order_id: str, carrier_shipment_id: str, purchase: Purchase, *, uow, at: datetime) -> bool:
    with uow:
        order = uow.orders.get(order_id, lock=True)
        shipment = uow.shipments.by_carrier_id(carrier_shipment_id, lock=True)
        if order is None or shipment is None:
            return False
        details = {"carrier": purchase.carrier, "service": purchase.service, "rate_cents": purchase.rate_cents,
                   "tracking_code": purchase.tracking_code}
        if shipment.status == ShipmentStatus.CREATED:
            shipment.tracking_code, shipment.carrier, shipment.service, shipment.rate_cents = (
                purchase.tracking_code, purchase.carrier, purchase.service, purchase.rate_cents)
            shipment.advance(ShipmentStatus.PURCHASED, at=at, source=SOURCE, details=details)
        if order.status == OrderStatus.READY_TO_SHIP:
            order.advance(OrderStatus.LABEL_CREATED, at=at, source=SOURCE,
                          reason=f"{purchase.carrier} {purchase.service} label bought", details=details)
        uow.commit()
    return True


def _store_label(order_id: str, carrier_shipment_id: str, purchase: Purchase, *, carrier: Carrier,
                 store: ObjectStore, uow, at: Callable[[], datetime]) -> None:
    label = carrier.fetch_label(purchase.label_url)
    key = f"labels/{order_id}.png"
    store.put(key, label, content_type="image/png" if label.startswith(b"\x89PNG") else "application/pdf")
    with uow:
        shipment = uow.shipments.by_carrier_id(carrier_shipment_id, lock=True)
        if shipment is not None and shipment.label_key is None:
            shipment.label_key = key
            uow.timeline.add(Noted(order_id=order_id, at=at(), source=SOURCE, kind="shipment.label_stored",
                                   key=f"label-stored:{shipment.id}",
                                   details={"label_key": key, "bytes": len(label),
                                            "tracking_code": purchase.tracking_code}))
            uow.commit()


def _needs_address(order_id: str, verification: Verification, *, uow, at: datetime,
                   new_id: Callable[[str], str]) -> str:
    """Hold the order with no label; support is alerted and the customer asked, once per order."""
    problems = [{"field": e.field, "code": e.code, "message": e.message} for e in verification.errors]
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None or order.status != OrderStatus.READY_TO_SHIP:
            return "skipped"
        shipment = _current(uow.shipments.for_order(order_id, lock=True))
        if shipment is None:
            shipment = Shipment(id=new_id("shp"), order_id=order_id, created_at=at)
            uow.shipments.add(shipment)
        if shipment.can_advance(ShipmentStatus.NEEDS_ADDRESS):
            shipment.advance(ShipmentStatus.NEEDS_ADDRESS, at=at, source=SOURCE, details={"errors": problems})
        fields = ", ".join(sorted({p["field"] for p in problems})) or "address"
        order.hold(HoldReason.NEEDS_ADDRESS, at=at, source=SOURCE,
                   note=f"the carrier cannot verify the shipping address ({fields})")
        notify_milestone(order_id, Milestone.EXCEPTION, uow=uow)  # the customer is asked once (one per channel)
        uow.alerts.raise_(kind="address", key=order_id, order_id=order_id, severity="warning", at=at,
                          message=f"Order {order.number}: the carrier cannot verify the shipping address "
                                  f"({fields}). Correct it or wait for the customer's answer, then release.")
        uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="shipping.address_unverified",
                               key=f"address-unverified:{order_id}:v{order.version}",
                               details={"errors": problems, "suggestion_offered": verification.suggestion is not None}))
        uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="customer.asked_for_address",
                               key=f"customer-asked-for-address:{order_id}",
                               details={"fields": sorted({p["field"] for p in problems})}))
        uow.commit()
    log.info("order %s: address unverifiable (%s); on hold", order_id, fields)
    return "needs_address"


def _hold_for_carrier(order_id: str, *, uow, at: datetime, why: str) -> str:
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None or not order.can_advance(OrderStatus.ON_HOLD):
            return "skipped"
        order.hold(HoldReason.CARRIER_EXCEPTION, at=at, source=SOURCE, note=why)
        uow.alerts.raise_(kind="carrier", key=order_id, order_id=order_id, severity="critical", at=at,
                          message=f"Order {order.number}: no label could be bought ({why}).")
        uow.commit()
    log.warning("order %s: carrier refused (%s); on hold", order_id, why)
    return "held"


# ---- tracking --------------------------------------------------------------------------------------------------

_S = ShipmentStatus
TRACKER_TO_SHIPMENT: Mapping[str, ShipmentStatus | None] = MappingProxyType({
    "unknown": None,
    "pre_transit": None,  # the label exists; the parcel has not moved (shipment stays purchased)
    "in_transit": _S.IN_TRANSIT,
    "out_for_delivery": _S.OUT_FOR_DELIVERY,
    "available_for_pickup": _S.OUT_FOR_DELIVERY,
    "delivered": _S.DELIVERED,
    "return_to_sender": _S.RETURNED,
    "failure": _S.FAILURE,
    "error": None,
    "cancelled": None,
})
"""EasyPost tracker statuses → shipment statuses; None: recorded on the timeline, nothing moves."""

_ORDER_FOLLOWS: Mapping[ShipmentStatus, OrderStatus] = MappingProxyType({
    _S.IN_TRANSIT: OrderStatus.SHIPPED, _S.OUT_FOR_DELIVERY: OrderStatus.SHIPPED, _S.DELIVERED: OrderStatus.DELIVERED})
_EXCEPTIONS = (_S.RETURNED, _S.FAILURE)


def apply_carrier_event(inbox_id: int, *, uow, now: datetime) -> str:
    """Apply one verified EasyPost event from the inbox: each scan goes on the timeline; the shipment and the
    order move forward only (a late or repeated scan is recorded and changes nothing).

    Returns:
        "duplicate", "ignored" (not a tracker event), "unknown" (not our parcel), "applied" or "recorded".

    Raises:
        ShipmentNotPurchased: the parcel moved before its purchase was recorded; the actor retries shortly.
    """
    with uow:
        row = uow.inbox.get(inbox_id, lock=True)
        if row is None or row["status"] != "received":
            return "duplicate"
        event = json.loads(row["body"])
        if event.get("description") != "tracker.updated" or not isinstance(event.get("result"), dict):
            uow.inbox.mark(inbox_id, status="ignored", at=now)
            uow.commit()
            return "ignored"
        tracker = event["result"]
        found = _shipment_of(tracker, uow)
        if found is None:
            uow.inbox.mark(inbox_id, status="rejected", error="unknown tracking code", at=now)
            uow.commit()
            return "unknown"
        order = uow.orders.get(found.order_id, lock=True)  # order before shipment, as the buy locks them
        shipment = uow.shipments.get(found.id, lock=True)
        reported = str(tracker.get("status") or "unknown")
        target = TRACKER_TO_SHIPMENT.get(reported)
        if target is not None and shipment.status in (_S.PENDING, _S.CREATED, _S.NEEDS_ADDRESS):
            raise ShipmentNotPurchased(f"shipment {shipment.id}: scanned {reported} before its purchase was recorded")
        details = _scan_details(event, tracker) | {"shipment": shipment.id}
        applied = target is not None and shipment.can_advance(target)
        if applied:
            shipment.advance(target, at=now, source=CARRIER_SOURCE, reason=details.get("message"),
                             details={"event": event.get("id"), "status_detail": details.get("status_detail")})
            if order is not None:
                _order_follows(order, shipment, uow=uow, at=now, details=details)
        elif target is not None:
            details["why"] = f"late or repeated: the shipment is already {shipment.status}"
        uow.timeline.add(Noted(order_id=shipment.order_id, at=now, source=CARRIER_SOURCE, kind=SCAN_KIND,
                               key=f"carrier-event:easypost:{event.get('id')}",
                               details=details | {"applied": applied, "shipment_status": str(shipment.status)}))
        uow.inbox.mark(inbox_id, status="processed", at=now)
        uow.commit()
    return "applied" if applied else "recorded"


def _shipment_of(tracker: Mapping[str, Any], uow) -> Shipment | None:
    """By tracking code, or by the carrier's shipment id (stored before the buy, so an early scan finds it)."""
    code, carrier_id = tracker.get("tracking_code"), tracker.get("shipment_id")
    found = uow.shipments.by_tracking_code(str(code)) if code else None
    if found is None and carrier_id:
        found = uow.shipments.by_carrier_id(str(carrier_id))
    return found


def _scan_details(event: Mapping[str, Any], tracker: Mapping[str, Any]) -> dict[str, Any]:
    """What support reads about a scan: status, the carrier's words, where (city level) and when."""
    scans = tracker.get("tracking_details") or []
    last = scans[-1] if scans and isinstance(scans[-1], dict) else {}
    where = last.get("tracking_location") or {}
    place = " ".join(str(where.get(k)) for k in ("city", "state", "country") if where.get(k))
    return {"event": event.get("id"), "tracking_code": tracker.get("tracking_code"),
            "status": tracker.get("status"), "status_detail": tracker.get("status_detail"),
            "message": last.get("message"), "location": place or None, "scanned_at": last.get("datetime"),
            "carrier": tracker.get("carrier"), "public_url": tracker.get("public_url")}


def _order_follows(order: Order, shipment: Shipment, *, uow, at: datetime, details: Mapping[str, Any]) -> None:
    if shipment.status in _EXCEPTIONS:
        if order.can_advance(OrderStatus.ON_HOLD):
            order.hold(HoldReason.CARRIER_EXCEPTION, at=at, source=CARRIER_SOURCE,
                       note=f"parcel {shipment.tracking_code}: {shipment.status}")
        notify_milestone(order.id, Milestone.EXCEPTION, uow=uow)
        what = "was returned to sender" if shipment.status == _S.RETURNED else "could not be delivered"
        uow.alerts.raise_(kind="carrier", key=order.id, order_id=order.id, severity="critical", at=at,
                          message=f"Order {order.number}: parcel {shipment.tracking_code} {what} "
                                  f"({details.get('status_detail') or shipment.status}). Reship, refund or "
                                  "contact the customer.")
        return
    wanted = _ORDER_FOLLOWS.get(shipment.status)
    if wanted is None:
        return
    if order.status == OrderStatus.ON_HOLD and order.hold_reason == HoldReason.CARRIER_EXCEPTION:
        order.release(at=at, source=CARRIER_SOURCE)  # held as silent; it has been scanned again
    reason = details.get("message") or str(shipment.status)
    if order.status == OrderStatus.LABEL_CREATED:
        order.advance(OrderStatus.SHIPPED, at=at, source=CARRIER_SOURCE, reason=reason,
                      details={"tracking_code": shipment.tracking_code, "public_url": details.get("public_url")})
        notify_milestone(order.id, Milestone.SHIPPED, uow=uow)
    if wanted == OrderStatus.DELIVERED and order.status == OrderStatus.SHIPPED:
        order.advance(OrderStatus.DELIVERED, at=at, source=CARRIER_SOURCE, reason=reason,
                      details={"tracking_code": shipment.tracking_code})
        notify_milestone(order.id, Milestone.DELIVERED, uow=uow)


def find_silent_parcels(uow, now: datetime, days: float) -> list[str]:
    """Put on hold, with an alert, every order whose bought parcel has had no scan for `days` (lost parcels).

    Run by the scheduler; safe to repeat (an order already on hold is left alone). Returns the order ids held.
    """
    cutoff = now - timedelta(days=days)
    held = []
    with uow:
        for shipment in uow.shipments.silent(statuses=(_S.PURCHASED, _S.IN_TRANSIT, _S.OUT_FOR_DELIVERY),
                                             before=cutoff, scan_type=SCAN_KIND):
            order = uow.orders.get(shipment.order_id, lock=True)
            if order is None or not order.can_advance(OrderStatus.ON_HOLD):
                continue
            note = f"parcel {shipment.tracking_code}: no carrier scan for {days:g} days"
            order.hold(HoldReason.CARRIER_EXCEPTION, at=now, source="worker:tracking", note=note)
            uow.alerts.raise_(kind="carrier", key=order.id, order_id=order.id, severity="warning", at=now,
                              message=f"Order {order.number}: {note}; it may be lost. Open a carrier trace, "
                                      "reship or refund.")
            uow.timeline.add(Noted(order_id=order.id, at=now, source="worker:tracking", kind="shipment.silent",
                                   key=f"silent:{shipment.id}:v{order.version}",
                                   details={"tracking_code": shipment.tracking_code, "days": days,
                                            "shipment_status": str(shipment.status)}))
            held.append(order.id)
        uow.commit()
    if held:
        log.warning("%d parcels silent for %g days; orders on hold", len(held), days)
    return held
