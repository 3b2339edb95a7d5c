"""A unit of work's notifications and Idempotency-Key, on PostgreSQL and SQLite: seen by its own reads before
commit, never written when it is rolled back, a milestone queued twice kept once per channel, a key stored twice
refused with nothing of the second unit of work kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

import db
from adapters.ids import TimeOrderedIds
from adapters.payments import SimPayments
from core.errors import Conflict
from core.notifications import Milestone
from core.services.intake import place_order
from core.services.notify import notify_milestone
from db import tables as t
from tests.conftest import mug_checkout

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def new_uow(engine) -> db.SqlUnitOfWork:
    return db.SqlUnitOfWork(db.make_session_factory(engine))


def an_order(engine) -> str:
    artwork = f"art_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(t.artworks.insert().values(id=artwork, sha256="2" * 64, width=3000, height=1200,
                                                source_format="PNG", bytes=1, storage_key=f"artwork/{artwork}.png",
                                                created_at=AT))
    command = mug_checkout(artwork, name="Ada Lovelace", email="ada@example.com")
    placed = place_order(command, uow=new_uow(engine), payments=SimPayments(), ids=TimeOrderedIds(), now=AT,
                         source="test", max_quantity=10)
    return placed.order.id


def count(engine, table, **where) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table).where(
            *(table.c[name] == value for name, value in where.items())))


def test_a_milestone_reached_in_a_unit_of_work_is_seen_by_its_reads_and_written_with_its_commit(engine):
    order_id = an_order(engine)
    with new_uow(engine) as uow:
        uow.orders.get(order_id)
        notify_milestone(order_id, Milestone.SHIPPED, uow=uow)
        # a read in the same unit of work sees the queued row
        assert uow.notifications.get(order_id, str(Milestone.SHIPPED), "email")["status"] == "queued"
        uow.commit()
    assert count(engine, t.notifications, order_id=order_id, milestone=str(Milestone.SHIPPED)) == 2


def test_a_unit_of_work_rolled_back_writes_none_of_its_rows(engine):
    order_id = an_order(engine)
    with new_uow(engine) as uow:
        uow.orders.get(order_id)
        notify_milestone(order_id, Milestone.SHIPPED, uow=uow)
        uow.idempotency.put("key-rolled-back", "h", {"id": order_id}, AT)
        uow.rollback()
        uow.commit()  # nothing left to write
    with new_uow(engine) as uow:
        uow.orders.get(order_id)
        notify_milestone(order_id, Milestone.DELIVERED, uow=uow)  # and leaving without commit
    assert count(engine, t.notifications, order_id=order_id, milestone=str(Milestone.SHIPPED)) == 0
    assert count(engine, t.notifications, order_id=order_id, milestone=str(Milestone.DELIVERED)) == 0
    assert count(engine, t.idempotency_keys, key="key-rolled-back") == 0


def test_a_milestone_queued_twice_is_one_row_per_channel_and_a_key_stored_twice_is_refused(engine):
    order_id = an_order(engine)
    for _ in range(2):
        with new_uow(engine) as uow:
            uow.orders.get(order_id)
            notify_milestone(order_id, Milestone.SHIPPED, uow=uow)
            notify_milestone(order_id, Milestone.SHIPPED, uow=uow)  # twice in one unit of work, too
            uow.commit()
    assert count(engine, t.notifications, order_id=order_id, milestone=str(Milestone.SHIPPED)) == 2
    with new_uow(engine) as uow:
        uow.idempotency.put("key-twice", "h1", {"id": order_id}, AT)
        uow.commit()
    with pytest.raises(Conflict), new_uow(engine) as uow:
        uow.orders.get(order_id)
        notify_milestone(order_id, Milestone.DELIVERED, uow=uow)
        uow.idempotency.put("key-twice", "h2", {"id": "another"}, AT)
        uow.commit()
    # the refused unit of work kept nothing: the first key's answer, no delivered notifications
    with new_uow(engine) as uow:
        assert uow.idempotency.get("key-twice") == ("h1", {"id": order_id})
    assert count(engine, t.notifications, order_id=order_id, milestone=str(Milestone.DELIVERED)) == 0

