"""Property tests for every aggregate's state machine: the table is the only way to move."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.commands import Address
from core.errors import IllegalTransition, NotAllowed
from core.model import Batch, Customer, Inspection, Order, PrintJob, Shipment
from core.states import TABLES, Entity, HoldReason, OrderStatus, ShippingSpeed, is_terminal

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def new_aggregate(entity: Entity):
    if entity is Entity.ORDER:
        customer = Customer(id="cus_1", name="Ada", email="ada@example.com", phone="", address=None, created_at=NOW)
        address = Address(name="Ada", line1="1 Road", city="London", postal_code="N1", country="GB")
        return Order(id="ord_1", number="PR-1", channel="api", external_id="x", customer=customer,
                     shipping_address=address, shipping_speed=ShippingSpeed.STANDARD, lines=[], total_cents=1,
                     currency="USD", payment_authorization="auth", placed_at=NOW, source="test")
    return {
        Entity.JOB: lambda: PrintJob(id="job_1", order_id="ord_1", line_id="line_1", unit_index=1, created_at=NOW),
        Entity.BATCH: lambda: Batch(id="bat_1", partner_id="p", product_type="tshirt", print_method="dtg",
                                    region="eu", created_at=NOW, target_size=10),
        Entity.INSPECTION: lambda: Inspection(id="ins_1", job_id="job_1", order_id="ord_1", created_at=NOW),
        Entity.SHIPMENT: lambda: Shipment(id="shp_1", order_id="ord_1", created_at=NOW),
    }[entity]()


def status_enum(entity: Entity):
    return type(next(iter(TABLES[entity])))


walks = st.sampled_from(list(Entity)).flatmap(
    lambda entity: st.tuples(st.just(entity), st.lists(st.sampled_from(list(status_enum(entity))), max_size=40)))


@settings(max_examples=300, deadline=None)
@given(walks)
def test_no_sequence_of_calls_reaches_a_transition_outside_the_table(walk):
    # given an aggregate and any sequence of requested statuses
    entity, targets = walk
    aggregate = new_aggregate(entity)
    table = TABLES[entity]
    for target in targets:
        before, events_before, version_before = aggregate.status, len(aggregate.events), aggregate.version
        # when we ask it to move
        if target in table[before]:
            event = aggregate.advance(target, at=NOW, source="test")
            # then a legal move changes status and leaves exactly one event naming the move
            assert aggregate.status == target
            assert len(aggregate.events) == events_before + 1
            assert aggregate.events[-1] is event
            assert (event.from_status, event.to_status) == (str(before), str(target))
            assert aggregate.version == version_before + 1
        else:
            # and an illegal one raises, leaving status, version and events untouched
            with pytest.raises(IllegalTransition) as refused:
                aggregate.advance(target, at=NOW, source="test")
            assert aggregate.id in str(refused.value)
            assert (aggregate.status, len(aggregate.events), aggregate.version) == (
                before, events_before, version_before)


@settings(max_examples=200, deadline=None)
@given(walks)
def test_terminal_states_stay_terminal(walk):
    entity, targets = walk
    aggregate = new_aggregate(entity)
    table = TABLES[entity]
    reached_terminal = None
    for target in targets:
        if aggregate.can_advance(target):
            aggregate.advance(target, at=NOW, source="test")
        if reached_terminal is None and is_terminal(table, aggregate.status):
            reached_terminal = aggregate.status
    if reached_terminal is not None:
        assert aggregate.status == reached_terminal


@settings(max_examples=200, deadline=None)
@given(walks)
def test_every_event_has_a_distinct_dedupe_key(walk):
    entity, targets = walk
    aggregate = new_aggregate(entity)
    for target in targets:
        if aggregate.can_advance(target):
            aggregate.advance(target, at=NOW, source="test")
    keys = [e.dedupe_key for e in aggregate.events]
    assert len(keys) == len(set(keys))


def test_every_status_has_a_row_in_its_table():
    for entity, table in TABLES.items():
        assert set(table) == set(status_enum(entity)), entity


def test_a_new_order_starts_accepted_with_order_received_on_its_timeline():
    order = new_aggregate(Entity.ORDER)
    assert order.status == OrderStatus.ACCEPTED
    assert [e.type for e in order.events] == ["order.received"]


def test_a_held_order_resumes_where_it_was():
    order = new_aggregate(Entity.ORDER)
    order.advance(OrderStatus.RENDERING, at=NOW, source="test")
    order.hold(HoldReason.ARTWORK_MISSING, at=NOW, source="worker:render", note="artwork gone")
    assert order.status == OrderStatus.ON_HOLD and order.hold_reason == HoldReason.ARTWORK_MISSING
    order.release(at=NOW, source="user:olive")
    assert order.status == OrderStatus.RENDERING and order.hold_reason is None


def test_an_order_cannot_be_cancelled_after_the_production_gate_even_while_on_hold():
    order = new_aggregate(Entity.ORDER)
    for status in (OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION):
        order.advance(status, at=NOW, source="test")
    order.hold(HoldReason.STAFF, at=NOW, source="user:olive")
    with pytest.raises(NotAllowed):
        order.cancel(at=NOW, source="customer", reason="changed my mind")
    assert order.status == OrderStatus.ON_HOLD


def test_an_order_can_be_cancelled_before_the_gate():
    order = new_aggregate(Entity.ORDER)
    order.advance(OrderStatus.RENDERING, at=NOW, source="test")
    order.cancel(at=NOW, source="customer", reason="changed my mind")
    assert order.status == OrderStatus.CANCELLED


def test_events_of_an_aggregate_loaded_in_a_helper_survive_until_commit(seeded_sqlite):
    """Regression: the session's identity map is weak, so events on an unreferenced, flushed order were lost."""
    import gc

    from sqlalchemy import select, update

    import db
    from core.events import Noted
    from db import tables as t
    from tests.conftest import settings_for

    db.configure(settings_for(seeded_sqlite))
    engine = db.make_engine(seeded_sqlite)
    uow = db.SqlUnitOfWork(db.make_session_factory(engine))
    order = new_aggregate(Entity.ORDER)
    with uow:
        uow.customers.add(order.customer)
        uow.orders.add(order)
        uow.commit()

    def advance_in_a_helper() -> None:
        loaded = uow.orders.get(order.id, lock=True)
        loaded.advance(OrderStatus.RENDERING, at=NOW, source="test")

    with uow:
        advance_in_a_helper()
        uow.session.execute(update(t.orders).where(t.orders.c.id == "nobody").values(priority=1))  # autoflush
        gc.collect()
        uow.timeline.add(Noted(order_id=order.id, at=NOW, source="test", kind="note.added", key="n1"))
        uow.commit()
    with engine.connect() as conn:
        types = list(conn.scalars(select(t.order_events.c.type).order_by(t.order_events.c.id)))
    assert sorted(types) == ["note.added", "order.received", "order.rendering"]


def test_a_job_is_stamped_when_it_reaches_its_partner_and_when_it_first_starts_printing():
    # given a job batched and submitted an hour after creation
    from datetime import timedelta

    from core.states import JobStatus

    job = PrintJob(id="job_1", order_id="ord_1", line_id="line_1", unit_index=1, created_at=NOW)
    job.advance(JobStatus.BATCHED, at=NOW, source="worker:production")
    assert (job.submitted_at, job.started_at) == (None, None)
    job.advance(JobStatus.SUBMITTED, at=NOW + timedelta(hours=1), source="worker:production")
    # when the partner reports printing, then printed
    job.advance(JobStatus.PRINTING, at=NOW + timedelta(hours=2), source="partner:acme")
    job.advance(JobStatus.PRINTED, at=NOW + timedelta(hours=3), source="partner:acme")
    # then the stamps keep the submission and the first start, each the time of its timeline event
    assert (job.submitted_at, job.started_at) == (NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert [e.at for e in job.events if e.to_status in ("submitted", "printing")] == [job.submitted_at, job.started_at]
