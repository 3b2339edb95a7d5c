"""Order intake: validate, authorise payment, then record order, lines and reservations in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from core.commands import PlaceOrder, RenderAsset
from core.errors import Conflict, IdempotencyConflict, OutOfStock, Problem, ValidationFailed
from core.model import Customer, Order, OrderLine, PrintJob
from core.notifications import Milestone
from core.ports import Ids, Payments
from core.services.notify import notify_milestone
from core.text import ProhibitedWords
from core.validation import validate_order

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedOrder:
    """What the storefront gets back; stored verbatim for Idempotency-Key replays."""

    id: str
    number: str
    status: str
    total_cents: int
    currency: str

    def as_response(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies recursively and cost more than building the response
        return {"id": self.id, "number": self.number, "status": self.status, "total_cents": self.total_cents,
                "currency": self.currency}


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeResult:
    order: PlacedOrder | dict[str, Any]
    created: bool


@lru_cache(maxsize=4)
def _prohibited(words: tuple[str, ...]) -> ProhibitedWords:
    return ProhibitedWords(words)


def place_order(cmd: PlaceOrder, *, uow, payments: Payments, ids: Ids, now: datetime, source: str,
                max_quantity: int, idempotency_key: str | None = None,
                request_hash: str | None = None) -> IntakeResult:
    """Accept a checkout atomically, or refuse it having recorded nothing but a rejection count.

    The payment is authorised before the transaction (no network call inside it) and voided if the
    transaction does not commit, so a failed checkout never leaves a charge or a reservation behind.

    Raises:
        ValidationFailed: one or more fields break the rules (OutOfStock when stock ran out meanwhile).
        IdempotencyConflict: the Idempotency-Key was used before with another body.
        PaymentDeclined: the card was refused.
    """
    skus = sorted({line.sku for line in cmd.lines})
    with uow:  # one statement: the replay check, the customer by e-mail, the stock offers
        replay, known_customer, offers = _replay(uow, cmd, idempotency_key, request_hash, skus=skus)
        if replay is not None:
            return replay
        variants = uow.catalogue.variants(skus)  # catalogue and artworks: per-process copies, no round trip
        problems = validate_order(
            cmd, variants=variants,
            artworks=uow.artworks.infos([line.artwork_id for line in cmd.lines if line.artwork_id]),
            available={sku: max(free for _, free in found) for sku, found in offers.items()},
            prohibited=_prohibited(uow.catalogue.prohibited_words()), max_quantity=max_quantity)
        if not problems:
            total = sum(variants[line.sku].price_cents * line.quantity for line in cmd.lines)
            total += uow.catalogue.shipping_surcharge(cmd.shipping_speed)
            currency = uow.catalogue.currency
    if problems:
        _count_rejections(uow, cmd, problems, now)
        raise ValidationFailed(problems)

    authorization = payments.authorize(amount_cents=total, currency=currency,
                                       idempotency_key=f"{cmd.channel}:{cmd.external_id}")
    try:
        placed = _record(cmd, uow=uow, ids=ids, variants=variants, total=total, currency=currency,
                         authorization=authorization, now=now, source=source, known_customer=known_customer,
                         prefer={sku: [partner for partner, _ in found] for sku, found in offers.items()},
                         idempotency_key=idempotency_key, request_hash=request_hash)
    except OutOfStock as refused:
        payments.void(authorization)
        _count_rejections(uow, cmd, refused.problems, now)
        raise
    except Conflict:
        with uow:  # a concurrent duplicate of this very checkout committed first: answer with it
            replay, _, _ = _replay(uow, cmd, idempotency_key, request_hash)
        if replay is None:
            payments.void(authorization)
            raise
        # not voided: the authorisation's key is the checkout's, so the processor gave the winner the same one
        return replay
    except BaseException:
        payments.void(authorization)
        raise
    log.info("order %s accepted (%s units)", placed.id, sum(line.quantity for line in cmd.lines))
    return IntakeResult(order=placed, created=True)


def _replay(uow, cmd: PlaceOrder, idempotency_key: str | None, request_hash: str | None, *,
            skus: list[str] | None = None) -> tuple[IntakeResult | None, str | None, dict[str, list[tuple[str, int]]]]:
    """The answer given before to this checkout (None if none); with `skus`, also the id of the customer with its
    e-mail (None if new) and the stock offers for those SKUs (`StockRepository.offers`), all in one read."""
    seen, existing, customer_id, offers = uow.orders.checkout_reads(
        idempotency_key or None, str(cmd.channel), cmd.external_id,
        customer_email=cmd.customer.email if skus is not None else None, skus=skus)
    if seen is not None:
        first_hash, response = seen
        if first_hash != request_hash:
            raise IdempotencyConflict("This Idempotency-Key was already used for a different order.")
        return IntakeResult(order=response, created=False), customer_id, offers
    if existing is not None:
        return IntakeResult(order=PlacedOrder(**existing), created=False), customer_id, offers
    return None, customer_id, offers


def _summary(order: Order) -> PlacedOrder:
    return PlacedOrder(id=order.id, number=order.number, status=str(order.status),
                       total_cents=order.total_cents, currency=order.currency)


def _record(cmd: PlaceOrder, *, uow, ids: Ids, variants, total: int, currency: str, authorization: str,
            now: datetime, source: str, idempotency_key: str | None, request_hash: str | None,
            prefer: dict[str, list[str]], known_customer: str | None) -> PlacedOrder:
    """Write the order in one transaction. The stock reservation comes last: the partner_stock row of a popular
    SKU is locked from its UPDATE to the commit, so every other row is written before it is taken.

    `known_customer` is the id the read before payment found for the e-mail (None: a new customer)."""
    order_id = ids.new("ord")
    with uow:
        lines = [OrderLine(id=ids.new("line"), line_no=i + 1, sku=req.sku, quantity=req.quantity,
                           artwork_id=req.artwork_id, texts=req.texts, template_key=variants[req.sku].template.key,
                           template_version=variants[req.sku].template.version,
                           unit_price_cents=variants[req.sku].price_cents,
                           partner_id=(prefer.get(req.sku) or [None])[0])  # where it will most likely be reserved
                 for i, req in enumerate(cmd.lines)]
        customer = uow.customers.get(known_customer) if known_customer is not None else None
        new_customer = customer is None
        if new_customer:  # written with the order (one statement on PostgreSQL)
            customer = Customer(id=ids.new("cus"), name=cmd.customer.name, email=cmd.customer.email.strip(),
                                phone=cmd.customer.phone, address=cmd.shipping_address, created_at=now)
        order = Order(id=order_id, number=ids.order_number(), channel=str(cmd.channel),
                      external_id=cmd.external_id, customer=customer, shipping_address=cmd.shipping_address,
                      shipping_speed=cmd.shipping_speed, lines=lines, total_cents=total, currency=currency,
                      payment_authorization=authorization, placed_at=now, source=source)
        uow.orders.insert_new(order, [PrintJob(id=ids.new("job"), order_id=order_id, line_id=line.id,
                                               unit_index=unit + 1, created_at=now)
                                      for line in lines for unit in range(line.quantity)],
                            new_customer=new_customer)
        uow.flush()
        placed = _summary(order)
        if idempotency_key:
            uow.idempotency.put(idempotency_key, request_hash or "", placed.as_response(), now)
        notify_milestone(order_id, Milestone.RECEIVED, uow=uow)
        uow.defer(RenderAsset(order_id=order_id))
        taken = uow.stock.reserve_lines([(line.id, line.sku, line.quantity) for line in lines], order_id=order_id,
                                        at=now, prefer=prefer)
        shortages = [Problem(field=f"lines[{i}].sku", code="out_of_stock", message="Sorry, this product just sold out.")
                     for i, line in enumerate(lines) if taken[line.id] is None]
        if shortages:
            raise OutOfStock(shortages)
        for line in lines:
            if line.partner_id != taken[line.id]:  # the likely partner ran out meanwhile: another one has it
                line.partner_id = taken[line.id]
        uow.commit()
    return placed


def _count_rejections(uow, cmd: PlaceOrder, problems: list[Problem], now: datetime) -> None:
    """Counted by reason and channel only: the metrics need the why, never the who."""
    with uow:
        uow.rejections.record(channel=str(cmd.channel), codes=[p.code for p in problems], at=now)
        uow.commit()
