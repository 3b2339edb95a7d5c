"""Customer changes on SQLite through the real unit of work: cancel (jobs, stock, payment), text, address and
change requests, with every refusal; and the whitelist of what a customer reads on the timeline."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.commands import Address
from core.errors import NotAllowed, NotFound, ValidationFailed
from core.services.customer_changes import (
    AddressNotVerified,
    cancel_order,
    change_address,
    change_texts,
    customer_line,
    order_page,
    request_change,
)
from core.services.production import ProductionRules, batch_ready_jobs, route_order
from core.services.shipping import FieldError, Verification
from core.states import HoldReason, JobStatus, OrderStatus
from db import tables as t
from tests.unit.test_render_stage import order_row, place, render


def cancel(api, order_id: str, *, by: str = "customer", payments=None) -> str:
    svc = api.services
    return cancel_order(order_id, by=by, reason="changed my mind", uow=svc.uow(), payments=payments or api.payments,
                        now=svc.now())


def advance(api, order_id: str, *statuses: OrderStatus) -> None:
    """Walk an order along its transition table, as the stages would."""
    with api.services.uow() as uow:
        order = uow.orders.get(order_id)
        for status in statuses:
            order.advance(status, at=api.services.now(), source="worker:test")
        uow.commit()


def hold(api, order_id: str) -> None:
    with api.services.uow() as uow:
        uow.orders.get(order_id).hold(HoldReason.STAFF, at=api.services.now(), source="user:alice")
        uow.commit()


def stock(api) -> dict[tuple[str, str], int]:
    with api.services.engine.connect() as conn:
        return {(r.partner_id, r.sku): r.reserved for r in conn.execute(select(t.partner_stock))}


def reservations(api, order_id: str) -> list[str]:
    r = t.stock_reservations
    with api.services.engine.connect() as conn:
        return list(conn.scalars(select(r.c.state).where(r.c.order_id == order_id)))


def jobs(api, order_id: str) -> list:
    j = t.print_jobs
    with api.services.engine.connect() as conn:
        return conn.execute(select(j.c.status, j.c.batch_id, j.c.partner_id).where(j.c.order_id == order_id)).all()


def events(api, order_id: str) -> list[tuple[str, str, dict]]:
    e = t.order_events
    with api.services.engine.connect() as conn:
        return [(r.type, r.source, r.payload) for r in conn.execute(
            select(e.c.type, e.c.source, e.c.payload).where(e.c.order_id == order_id).order_by(e.c.id))]


def reserved_messages(api, order_id: str, milestone: str) -> list[tuple[str, str]]:
    """The (channel, status) of the order's notification rows for a milestone."""
    n = t.notifications
    with api.services.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(n.c.channel, n.c.status).where(
            n.c.order_id == order_id, n.c.milestone == milestone)))


def authorization(api, order_id: str) -> str:
    return order_row(api, order_id).payment_authorization


def routed(api, order_id: str) -> None:
    svc = api.services
    assert render(api, order_id) == "rendered"
    assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=ProductionRules()) == "routed"


def batched(api, *, release: bool) -> list[str]:
    svc, rules = api.services, ProductionRules()
    at = svc.now() + (rules.batching.max_wait + timedelta(seconds=1) if release else timedelta(0))
    batch_ready_jobs(svc.uow(), now=svc.now(), rules=rules, new_id=svc.ids.new)
    return batch_ready_jobs(svc.uow(), now=at, rules=rules, new_id=svc.ids.new)


class FlakyPayments:
    """The payments port with a provider that fails the first `failures` voids."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.voided: list[str] = []

    def authorize(self, *, amount_cents: int, currency: str, idempotency_key: str) -> str:
        raise AssertionError("not used")

    def void(self, authorization_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("payment provider unreachable")
        self.voided.append(authorization_id)


# ---- cancel ------------------------------------------------------------------------------------------------


def test_cancelling_before_the_gate_cancels_the_jobs_releases_the_stock_and_voids_the_payment(api):
    # given an accepted order holding one blank
    before = stock(api)
    order_id = place(api)
    assert stock(api) != before

    # when the customer cancels it
    assert cancel(api, order_id) == "cancelled"

    # then the order and its job are cancelled, the blank is free again and the payment voided
    assert order_row(api, order_id).status == OrderStatus.CANCELLED
    assert [j.status for j in jobs(api, order_id)] == ["cancelled"]
    assert stock(api) == before and reservations(api, order_id) == ["released"]
    assert api.payments.voided == {authorization(api, order_id)}
    # and the timeline says so, from the customer
    lines = {kind: (source, payload) for kind, source, payload in events(api, order_id)}
    assert lines["order.cancelled"][0] == "customer" and lines["order.cancelled"][1]["reason"] == "changed my mind"
    assert lines["stock.released"] == ("customer", {"units": 1})
    assert lines["payment.voided"][0] == "customer"
    # and the customer is told, by e-mail and text, in the cancel's own transaction
    assert reserved_messages(api, order_id, "cancelled") == [("email", "queued"), ("sms", "queued")]


def test_a_second_cancel_says_already_cancelled_and_releases_nothing_twice(api):
    # given a cancelled order
    before = stock(api)
    order_id = place(api)
    assert cancel(api, order_id) == "cancelled"
    lines = len(events(api, order_id))

    # when it is cancelled again (a double click, a staff member after the customer)
    assert cancel(api, order_id, by="user:alice") == "already_cancelled"

    # then the stock is returned once, the timeline does not grow and the customer is told once
    assert stock(api) == before
    assert len(events(api, order_id)) == lines
    assert reserved_messages(api, order_id, "cancelled") == [("email", "queued"), ("sms", "queued")]


def test_cancelling_after_the_gate_is_refused_and_changes_nothing(api):
    # given an order past the production gate
    order_id = place(api)
    advance(api, order_id, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION)
    held = stock(api)

    # when someone tries to cancel it, then it is refused with a sentence naming the order
    with pytest.raises(NotAllowed, match="already in production and can no longer be cancelled"):
        cancel(api, order_id)

    # and nothing moved: status, stock, payment
    assert order_row(api, order_id).status == OrderStatus.IN_PRODUCTION
    assert stock(api) == held and reservations(api, order_id) == ["held"]
    assert api.payments.voided == set()


def test_an_order_on_hold_can_be_cancelled_only_if_it_was_held_before_the_gate(api):
    # given one order held before the gate and one held after it
    early, late = place(api), place(api)
    hold(api, early)
    advance(api, late, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION)
    hold(api, late)

    # then the early one cancels and the late one is refused
    assert cancel(api, early) == "cancelled"
    with pytest.raises(NotAllowed):
        cancel(api, late)
    assert order_row(api, late).status == OrderStatus.ON_HOLD


def test_an_order_that_failed_cannot_be_cancelled(api):
    order_id = place(api)
    advance(api, order_id, OrderStatus.FAILED)
    with pytest.raises(NotAllowed, match="has ended"):
        cancel(api, order_id)


def test_cancelling_an_unknown_order_is_not_found(api):
    with pytest.raises(NotFound):
        cancel(api, "ord_nope")


def test_jobs_waiting_in_an_open_batch_are_taken_out_of_it(api):
    # given a rendered, routed order whose job waits in an open batch
    order_id = place(api)
    routed(api, order_id)
    assert batched(api, release=False) == []
    [job] = jobs(api, order_id)
    assert job.status == "batched" and job.batch_id

    # when it is cancelled
    assert cancel(api, order_id) == "cancelled"

    # then the job left the batch, so the batch will not send it to the partner
    [job] = jobs(api, order_id)
    assert job.status == "cancelled" and job.batch_id is None


def test_an_order_whose_batch_is_on_its_way_to_the_partner_cannot_be_cancelled(api):
    # given an order whose job is in a released batch (the production gate is passing)
    order_id = place(api)
    routed(api, order_id)
    assert len(batched(api, release=True)) == 1

    # when the customer cancels, then it is refused and the order goes on
    with pytest.raises(NotAllowed, match="being handed to the print partner"):
        cancel(api, order_id)
    assert order_row(api, order_id).status == OrderStatus.READY_FOR_PRODUCTION
    assert [j.status for j in jobs(api, order_id)] == ["batched"]
    assert api.payments.voided == set()


def test_a_void_that_fails_is_put_in_front_of_support_and_retried_by_cancelling_again(api):
    # given a payment provider that is down for the first void
    order_id = place(api)
    payments = FlakyPayments(failures=1)

    # when the order is cancelled, then it is cancelled and support sees the void to do
    assert cancel(api, order_id, payments=payments) == "cancelled"
    assert order_row(api, order_id).status == OrderStatus.CANCELLED
    with api.services.uow() as uow:
        [alert] = uow.alerts.open(kinds=["payment"])
    assert alert["order_id"] == order_id and authorization(api, order_id) in alert["message"]
    assert "payment.voided" not in [kind for kind, _, _ in events(api, order_id)]

    # when it is cancelled again, the void goes through and the alert clears
    assert cancel(api, order_id, payments=payments) == "already_cancelled"
    assert payments.voided == [authorization(api, order_id)]
    assert "payment.voided" in [kind for kind, _, _ in events(api, order_id)]
    with api.services.uow() as uow:
        assert uow.alerts.open(kinds=["payment"]) == []


def test_a_job_at_the_partner_refuses_the_cancel_even_when_the_order_is_on_hold_before_the_gate(api):
    # given an order held before the gate whose job nevertheless reached the partner (submitted while held)
    order_id = place(api)
    routed(api, order_id)
    batched(api, release=True)
    hold(api, order_id)
    with api.services.uow() as uow:
        [job] = uow.jobs.for_order(order_id)
        job.advance(JobStatus.SUBMITTED, at=api.services.now(), source="worker:production")
        uow.commit()
    # then the cancel is refused, and the page offers none
    with pytest.raises(NotAllowed, match="being handed to the print partner"):
        cancel(api, order_id)
    assert not page(api, order_id).cancellable


# ---- text, address and change requests, below the HTTP layer -------------------------------------------------


class VerifyingCarrier:
    """The carrier port's address check, answering as told and counting the questions."""

    def __init__(self, verification: Verification) -> None:
        self.verification = verification
        self.asked: list[Address] = []

    def verify_address(self, address: Address) -> Verification:
        self.asked.append(address)
        return self.verification


NEW_YORK = Address(name="Ada Lovelace", line1="350 5th Ave", city="New York", region="NY", postal_code="10118",
                   country="US")
LONDON_AGAIN = Address(name="Ada Lovelace", line1="221B Baker St", city="London", region="LND",
                       postal_code="NW1 6XE", country="GB")


def page(api, order_id: str):
    with api.services.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(t.order_events.c.at, t.order_events.c.type, t.order_events.c.payload)
            .where(t.order_events.c.order_id == order_id))]
    return order_page(order_id, uow=api.services.uow(), events=rows, batch_wait=timedelta(minutes=30))


def test_new_text_on_an_order_not_yet_rendered_is_simply_used_by_the_render_to_come(api):
    order_id = place(api)
    queued = len(api.queued("render"))
    svc = api.services
    assert change_texts(order_id, 1, {"name": "Grace"}, uow=svc.uow(), now=svc.now()) == "changed"
    assert order_row(api, order_id).status == OrderStatus.ACCEPTED
    assert len(api.queued("render")) == queued  # the intake's message is still on its way
    assert render(api, order_id) == "rendered"
    with svc.engine.connect() as conn:
        assert conn.scalar(select(t.order_lines.c.texts).where(t.order_lines.c.order_id == order_id)) == \
            {"name": "Grace"}


def test_the_same_text_again_changes_nothing(api):
    order_id = place(api)
    render(api, order_id)
    svc = api.services
    assert change_texts(order_id, 1, {"name": "  Ada "}, uow=svc.uow(), now=svc.now()) == "unchanged"
    assert order_row(api, order_id).status == OrderStatus.READY_FOR_PRODUCTION


def test_text_for_an_item_or_a_slot_the_order_does_not_have_is_refused(api):
    order_id = place(api)
    svc = api.services
    with pytest.raises(NotFound, match="has no item 2"):
        change_texts(order_id, 2, {"name": "Grace"}, uow=svc.uow(), now=svc.now())
    with pytest.raises(ValidationFailed) as refused:
        change_texts(order_id, 1, {"headline": "Grace"}, uow=svc.uow(), now=svc.now())
    assert [(p.field, p.code) for p in refused.value.problems] == [("texts.headline", "unknown_text_slot")]


def test_an_address_in_the_same_region_keeps_the_routing(api):
    # given a London order routed and batched
    order_id = place(api)
    routed(api, order_id)
    batched(api, release=False)
    carrier = VerifyingCarrier(Verification(ok=True))
    svc = api.services
    # when the customer moves it across London
    assert change_address(order_id, LONDON_AGAIN, uow=svc.uow(), carrier=carrier, now=svc.now()) == "changed"
    # then the carrier was asked once and the job keeps its partner and batch
    assert carrier.asked == [LONDON_AGAIN]
    [job] = jobs(api, order_id)
    assert job.status == "batched" and job.partner_id
    assert change_address(order_id, LONDON_AGAIN, uow=svc.uow(), carrier=carrier, now=svc.now()) == "unchanged"
    assert len(carrier.asked) == 1


def test_an_unverified_address_carries_the_field_errors_and_suggestion_and_changes_nothing(api):
    order_id = place(api)
    fixed = NEW_YORK
    carrier = VerifyingCarrier(Verification(ok=False, suggestion=fixed, errors=(
        FieldError(field="postal_code", code="E.ZIP.INVALID", message="Postal code '1011' is not valid"),)))
    svc = api.services
    with pytest.raises(AddressNotVerified) as refused:
        change_address(order_id, NEW_YORK, uow=svc.uow(), carrier=carrier, now=svc.now())
    assert refused.value.suggestion == fixed
    [problem] = refused.value.problems
    assert problem.field == "address.postal_code" and problem.message.startswith("Please check the postal code")
    with svc.uow() as uow:
        assert uow.orders.get(order_id).shipping_address.country == "GB"


def test_an_address_change_after_the_gate_never_asks_the_carrier(api):
    order_id = place(api)
    advance(api, order_id, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION)
    carrier = VerifyingCarrier(Verification(ok=True))
    with pytest.raises(NotAllowed, match="already in production"):
        change_address(order_id, NEW_YORK, uow=api.services.uow(), carrier=carrier, now=api.services.now())
    assert carrier.asked == []


def test_a_change_request_is_one_inbox_entry_per_form_and_none_for_a_cancelled_order(api):
    order_id = place(api)
    svc = api.services
    ask = functools.partial(request_change, order_id, uow=svc.uow(), now=svc.now())
    assert ask("Please send it gift-wrapped", request_id="r1") == "requested"
    assert ask("Please send it gift-wrapped", request_id="r1") == "already_requested"
    assert ask("And a card saying happy birthday", request_id="r2") == "requested"
    with svc.uow() as uow:
        assert sorted(a["key"] for a in uow.alerts.open(kinds=["change_request"])) == [f"{order_id}:r1",
                                                                                       f"{order_id}:r2"]
    with pytest.raises(ValidationFailed):
        ask("x" * 2001, request_id="r3")
    cancel(api, order_id)
    with pytest.raises(NotAllowed, match="was cancelled"):
        ask("Actually, please send it", request_id="r4")


# ---- what the customer reads ---------------------------------------------------------------------------------

CUSTOMER_TYPES = {"order.received", "order.on_hold", "payment.voided", "customer.text_changed",
                  "customer.address_changed", "customer.change_requested", "carrier.scan",
                  *(f"order.{status}" for status in OrderStatus)}


@given(kind=st.one_of(st.sampled_from(sorted(CUSTOMER_TYPES)), st.text(max_size=30)),
       payload=st.fixed_dictionaries({}, optional={
           "reason": st.sampled_from(["staff", "needs_address", "released", "customer"]),
           "status": st.sampled_from(["in_transit", "delivered", "failure", "unknown"]),
           "applied": st.booleans(), "location": st.sampled_from(["Boston MA US", None]),
           "line_no": st.integers(1, 3)}))
def test_only_whitelisted_timeline_rows_reach_the_customer_and_never_what_staff_wrote(kind, payload):
    # given any timeline row, with what staff and partners put in it
    payload = payload | {"note": "staff-only: refund them 10%", "user": "alice", "partner": "acme-print"}
    # then rows of other types say nothing, and no line repeats the note, the staff member or the partner
    line = customer_line(kind, payload)
    if kind not in CUSTOMER_TYPES:
        assert line is None
    if line is not None:
        assert "staff-only" not in line and "alice" not in line and "acme" not in line


def test_the_page_of_a_held_order_offers_cancel_but_no_edits(api):
    order_id = place(api)
    hold(api, order_id)
    view = page(api, order_id)
    assert not view.editable and view.cancellable
    assert "paused while our team looks into it" in view.not_editable_because
