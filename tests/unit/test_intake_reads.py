"""What checkout reads without a round trip (the catalogue copy) and where it reserves when stock moved meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

import db
from adapters.ids import TimeOrderedIds
from adapters.payments import SimPayments
from db import tables as t
from db.repositories import clear_catalogue_cache
from tests.conftest import MUG as SKU
from tests.conftest import mug_checkout

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def new_uow(engine) -> db.SqlUnitOfWork:
    return db.SqlUnitOfWork(db.make_session_factory(engine))


def price(engine) -> int:
    with new_uow(engine) as uow:
        return uow.catalogue.variants([SKU])[SKU].price_cents


def test_a_price_changed_with_plain_sql_is_read_once_the_catalogue_copy_is_cleared(engine):
    # given a process that has read the catalogue
    before = price(engine)
    # when the price changes behind the repositories' back
    with engine.begin() as conn:
        conn.execute(update(t.variants).where(t.variants.c.sku == SKU).values(price_cents=before + 100))
    # then this process keeps its copy until it is cleared (or CATALOGUE_TTL_S passes)
    assert price(engine) == before
    clear_catalogue_cache()
    assert price(engine) == before + 100


def test_a_prohibited_word_added_by_staff_is_refused_by_the_next_checkout_in_the_same_process(engine):
    with new_uow(engine) as uow:
        assert "zorblax" not in uow.catalogue.prohibited_words()
    with new_uow(engine) as uow:
        uow.prohibited_words.add("zorblax", by="maya", at=AT)
        uow.commit()
    with new_uow(engine) as uow:
        assert "zorblax" in uow.catalogue.prohibited_words()


class StockMovesDuringPayment(SimPayments):
    """The card is authorised between checkout's read and its write: meanwhile another checkout (here, this
    hook) takes the last units at the partner the read found best."""

    def __init__(self, engine, partner_id: str) -> None:
        super().__init__()
        self.engine, self.partner_id = engine, partner_id

    def authorize(self, **kwargs) -> str:
        with self.engine.begin() as conn:
            conn.execute(update(t.partner_stock).where(t.partner_stock.c.sku == SKU,
                                                       t.partner_stock.c.partner_id == self.partner_id)
                         .values(reserved=t.partner_stock.c.on_hand))
        return super().authorize(**kwargs)


def test_when_the_best_partner_sells_out_during_payment_the_order_is_reserved_and_routed_at_another(engine):
    from core.services.intake import place_order

    # given the partner with the most free mugs, and an artwork
    with engine.begin() as conn:
        ps = t.partner_stock
        best, second = [row.partner_id for row in conn.execute(
            select(ps.c.partner_id).where(ps.c.sku == SKU).order_by((ps.c.on_hand - ps.c.reserved).desc(),
                                                                    ps.c.partner_id).limit(2))]
        conn.execute(t.artworks.insert().values(id="art_mug", sha256="0" * 64, width=3000, height=1200,
                                                source_format="PNG", bytes=1, storage_key="artwork/art_mug.png",
                                                created_at=AT))
    command = mug_checkout("art_mug")
    # when it sells out between checkout's read and its write
    result = place_order(command, uow=new_uow(engine), payments=StockMovesDuringPayment(engine, best),
                         ids=TimeOrderedIds(), now=AT, source="test", max_quantity=10)
    # then the order is accepted, reserved at the next partner, and its line is routed there
    assert result.created
    with engine.connect() as conn:
        assert conn.scalar(select(t.order_lines.c.partner_id)
                           .where(t.order_lines.c.order_id == result.order.id)) == second
        assert conn.scalar(select(t.stock_reservations.c.partner_id)
                           .where(t.stock_reservations.c.order_id == result.order.id)) == second


def test_each_checkout_read_answers_for_its_own_key_order_customer_and_skus(engine):
    # The statement is built once per shape and reused with bound parameters: no value may stick from a call before.
    from core.services.intake import place_order

    with engine.begin() as conn:
        conn.execute(t.artworks.insert().values(id="art_reads", sha256="1" * 64, width=3000, height=1200,
                                                source_format="PNG", bytes=1, storage_key="artwork/art_reads.png",
                                                created_at=AT))
        other_sku = conn.scalar(select(t.partner_stock.c.sku).where(t.partner_stock.c.sku != SKU).limit(1))
        offers_of = {sku: sorted(conn.execute(select(t.partner_stock.c.partner_id).join(
            t.partners, t.partners.c.id == t.partner_stock.c.partner_id).where(
            t.partner_stock.c.sku == sku, t.partners.c.active)).scalars()) for sku in (SKU, other_sku)}
    command = mug_checkout("art_reads", external_id="SF-READS-1", name="Ada Lovelace", email="ada@example.com")
    placed = place_order(command, uow=new_uow(engine), payments=SimPayments(), ids=TimeOrderedIds(), now=AT,
                         source="test", max_quantity=10, idempotency_key="key-reads-1", request_hash="h1")
    assert placed.created

    def reads(key, external_id, email=None, skus=None):
        with new_uow(engine) as uow:
            return uow.orders.checkout_reads(key, "storefront", external_id, customer_email=email, skus=skus)

    seen, order, customer_id, offers = reads("key-reads-1", "SF-READS-1", "ada@example.com", [SKU])
    assert seen is not None and seen[0] == "h1" and order["id"] == placed.order.id
    assert customer_id is not None
    assert sorted(partner for partner, _ in offers[SKU]) == offers_of[SKU]
    # then another checkout: another key, order, e-mail and SKU: nothing of the first comes back
    seen, order, customer_id, offers = reads("key-reads-2", "SF-READS-2", "grace@example.com", [other_sku])
    assert (seen, order, customer_id) == (None, None, None)
    assert set(offers) == {other_sku} and sorted(p for p, _ in offers[other_sku]) == offers_of[other_sku]
    # and the write transaction's re-check (no e-mail, no SKUs; no key: found by the channel's order id)
    seen, order, customer_id, offers = reads(None, "SF-READS-1")
    assert seen is None and order["id"] == placed.order.id and (customer_id, offers) == (None, {})
