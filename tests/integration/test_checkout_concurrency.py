"""Concurrent checkouts on PostgreSQL: row locks make the last units go to exactly as many orders."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update

import db
from adapters.ids import TimeOrderedIds
from adapters.payments import SimPayments
from core.commands import PlaceOrder
from core.errors import ValidationFailed
from core.services.intake import place_order
from db import tables as t
from tests.conftest import MUG as SKU
from tests.conftest import mug_checkout, settings_for


def checkout(artwork_id: str) -> PlaceOrder:
    return mug_checkout(artwork_id, email=f"g{uuid.uuid4().hex[:6]}@example.com")


def test_fifty_concurrent_checkouts_for_the_last_ten_units_give_ten_orders_and_forty_clean_refusals(pg_url):
    # given exactly 10 units of a mug left, at a single partner
    db.configure(settings_for(pg_url))
    engine = db.make_engine(pg_url, pool_size=25)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(update(t.partner_stock).where(t.partner_stock.c.sku == SKU).values(on_hand=0))
        conn.execute(update(t.partner_stock).where(t.partner_stock.c.sku == SKU,
                                                   t.partner_stock.c.partner_id == "acme-columbus")
                     .values(on_hand=10, reserved=0))
        conn.execute(insert(t.artworks).values(id="art_mug", sha256="0" * 64, width=3000, height=1200,
                                               source_format="PNG", bytes=1, storage_key="artwork/art_mug.png",
                                               created_at=now))
    factory = db.make_session_factory(engine)
    payments, ids = SimPayments(), TimeOrderedIds()
    outcomes: Counter = Counter()
    gate = threading.Barrier(50)

    def buyer() -> None:
        gate.wait()
        try:
            place_order(checkout("art_mug"), uow=db.SqlUnitOfWork(factory), payments=payments, ids=ids,
                        now=datetime.now(UTC), source="test", max_quantity=100)
            outcomes["accepted"] += 1
        except ValidationFailed as refused:
            outcomes["+".join(sorted({p.code for p in refused.problems}))] += 1

    # when fifty customers check out at the same moment
    threads = [threading.Thread(target=buyer) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then exactly ten orders exist, the other forty were told "out of stock", nothing is oversold
    assert outcomes == Counter({"accepted": 10, "out_of_stock": 40})
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.orders)) == 10
        ps = t.partner_stock
        stock = conn.execute(select(ps.c.on_hand, ps.c.reserved)
                             .where(ps.c.sku == SKU, ps.c.partner_id == "acme-columbus")).one()
        assert (stock.on_hand, stock.reserved) == (10, 10)
        assert conn.scalar(select(func.sum(t.stock_reservations.c.quantity))) == 10
    # and every authorisation that did not become an order was voided
    assert len(payments.authorized) - len(payments.voided) == 10
    engine.dispose()


def test_a_checkout_retried_while_the_first_try_is_still_running_gets_the_same_order_not_a_server_error(pg_url):
    # A storefront whose request timed out sends it again with the same Idempotency-Key while the first is
    # still being written: both pass the replay check before either commits. The one that loses the race on
    # the order's unique key answers with the winner's order (a soak saw 500s here).
    db.configure(settings_for(pg_url))
    engine = db.make_engine(pg_url, pool_size=10)
    with engine.begin() as conn:
        conn.execute(insert(t.artworks).values(id="art_retry", sha256="1" * 64, width=3000, height=1200,
                                               source_format="PNG", bytes=1, storage_key="artwork/art_retry.png",
                                               created_at=datetime.now(UTC)))
    factory = db.make_session_factory(engine)
    payments, ids = SimPayments(), TimeOrderedIds()
    retried = checkout("art_retry")
    answers, errors = [], []
    gate = threading.Barrier(8)

    def storefront() -> None:
        gate.wait()
        try:
            answers.append(place_order(retried, uow=db.SqlUnitOfWork(factory), payments=payments, ids=ids,
                                       now=datetime.now(UTC), source="test", max_quantity=100,
                                       idempotency_key="retry-key-1", request_hash="same-body"))
        except Exception as error:  # noqa: BLE001 - the assertion lists them
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=storefront) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    # every try answered with the same order: the winner's, the others replaying its stored answer
    assert len({answer.order.id if answer.created else answer.order["id"] for answer in answers}) == 1
    assert sum(answer.created for answer in answers) == 1
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.orders)
                           .where(t.orders.c.external_id == retried.external_id)) == 1
    assert len(payments.authorized) - len(payments.voided) == 1  # the losers' authorisations voided
    engine.dispose()
