"""The exception inbox's actions on orders the real stages put there (SQLite, the carrier sim over HTTP through
the official EasyPost client): each outcome on the timeline and in the audit log, the entry resolved once,
and every refusal leaving the order, the payment and the entry as they were."""

from __future__ import annotations

from datetime import timedelta

import dramatiq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.email import SmtpMailer
from adapters.sms import HttpSms
from core.commands import Address
from core.errors import NotAllowed, NotFound
from core.notifications import Channel, Milestone, notification_links
from core.services import exceptions as ex
from core.services.customer_changes import request_change
from core.services.notify import send_notification
from core.services.shipping import find_silent_parcels
from core.states import OrderStatus, ShipmentStatus
from db import tables as t
from tests.unit import test_shipping_stage as shipping_stage
from tests.unit.test_shipping_stage import (
    NOWHERE,
    US_CUSTOMER,
    control,
    ledger,
    order_row,
    ready_to_ship,
    replay,
    ship,
    shipment_row,
)

# The carrier sim, its webhook receiver and a client of it, shared with the shipping stage's tests.
sim, receiver, carrier, calm_sim = (shipping_stage.sim, shipping_stage.receiver, shipping_stage.carrier,
                                    shipping_stage.calm_sim)

SAM = "sam"


# ---- helpers -------------------------------------------------------------------------------------------------


def alert_of(api, order_id: str, kind: str):
    a = t.alerts
    with api.services.engine.connect() as conn:
        return conn.execute(select(a).where(a.c.order_id == order_id, a.c.kind == kind)).one()


def inbox_entries(api, order_id: str, action: str) -> tuple[list, list]:
    """The order's timeline lines for `action` and the audit rows for it."""
    e, log = t.order_events, t.audit_log
    with api.services.engine.connect() as conn:
        lines = conn.execute(select(e.c.source, e.c.payload).where(e.c.order_id == order_id,
                                                                   e.c.type == f"exception.{action}")).all()
        audits = conn.execute(select(log.c.actor, log.c.before, log.c.after)
                              .where(log.c.order_id == order_id, log.c.action == f"exception.{action}")).all()
    return lines, audits


def queued(api, queue: str) -> list[dict]:
    return [dramatiq.Message.decode(m).kwargs for m in api.broker.queues[queue].queue]


def shipments(api, order_id: str) -> list:
    s = t.shipments
    with api.services.engine.connect() as conn:
        return conn.execute(select(s).where(s.c.order_id == order_id).order_by(s.c.created_at)).all()


def act(api, action, alert_id, **kw):
    svc = api.services
    return action(alert_id, uow=svc.uow(), actor=SAM, at=svc.now(), **kw)


def held_for_address(api, carrier) -> tuple[str, int]:
    order_id = ready_to_ship(api, address=NOWHERE)
    assert ship(api, order_id, carrier) == "needs_address"
    return order_id, alert_of(api, order_id, "address").id


def returned(api, sim, carrier, receiver) -> tuple[str, int]:
    order_id = ready_to_ship(api)
    control(sim, fates_by_reference={order_id: "return_to_sender"})
    ship(api, order_id, carrier)
    replay(api, receiver, shipment_row(api, order_id).tracking_code, "return_to_sender")
    return order_id, alert_of(api, order_id, "carrier").id


def assert_untouched(api, order_id: str, alert_id: int, status: OrderStatus) -> None:
    """A refused action changed nothing: order, entry, timeline and audit log as they were."""
    assert order_row(api, order_id).status == status
    assert alert_of(api, order_id, alert_of_kind(api, alert_id)).cleared_at is None
    for action in ex.Action:
        assert inbox_entries(api, order_id, action.value) == ([], [])


def alert_of_kind(api, alert_id: int) -> str:
    with api.services.engine.connect() as conn:
        return conn.scalar(select(t.alerts.c.kind).where(t.alerts.c.id == alert_id))


# ---- verify address ------------------------------------------------------------------------------------------


def test_a_corrected_address_is_verified_released_and_its_label_queued_and_the_entry_resolved(api, sim, carrier):
    # given an order held because the carrier cannot find its address
    order_id, alert_id = held_for_address(api, carrier)

    # when support enters a deliverable address
    outcome = act(api, ex.verify_address, alert_id, address=Address(**US_CUSTOMER), carrier=carrier,
                  note="customer phoned with the right street")

    # then the order has the new address, is released to ship, and the label is queued
    assert outcome.action == ex.Action.VERIFY_ADDRESS and "released" in outcome.summary
    order = order_row(api, order_id)
    assert order.status == OrderStatus.READY_TO_SHIP and order.hold_reason is None
    with api.services.uow() as uow:
        assert uow.orders.get(order_id).shipping_address == Address(**US_CUSTOMER)
    assert {"order_id": order_id} in queued(api, "shipping")
    # and the entry is resolved, with the outcome on the timeline and in the audit log (no address in either)
    alert = alert_of(api, order_id, "address")
    assert (alert.resolution, alert.resolved_by) == ("verify_address", SAM) and alert.cleared_at is not None
    lines, audits = inbox_entries(api, order_id, "verify_address")
    assert len(lines) == 1 and lines[0].source == "user:sam"
    assert lines[0].payload["note"] == "customer phoned with the right street"
    assert set(lines[0].payload["fields_changed"]) >= {"line1", "postal_code"}
    assert len(audits) == 1 and "350 5th Ave" not in str(audits[0]) + str(lines[0])
    # and the shipping stage then buys the label for that one shipment record
    assert ship(api, order_id, carrier) == "label_created"
    assert ledger(sim)["purchases_by_reference"][order_id] == 1


def test_an_address_the_carrier_still_refuses_changes_nothing_and_offers_its_suggestion(api, sim, carrier):
    order_id, alert_id = held_for_address(api, carrier)
    still_bad = Address(**NOWHERE | {"line1": "2 Nowhere Lane"})

    with pytest.raises(ex.AddressStillInvalid) as refused:
        act(api, ex.verify_address, alert_id, address=still_bad, carrier=carrier)

    assert {e.field for e in refused.value.errors} >= {"postal_code"}
    assert refused.value.suggestion is not None and refused.value.suggestion.postal_code == "02134"
    assert_untouched(api, order_id, alert_id, OrderStatus.ON_HOLD)
    with api.services.uow() as uow:
        assert uow.orders.get(order_id).shipping_address == Address(**NOWHERE)
    assert queued(api, "shipping") == []


def test_a_blank_required_field_is_refused_before_asking_the_carrier(api, sim, carrier):
    order_id, alert_id = held_for_address(api, carrier)
    asked = ledger(sim)["addresses_created"]

    with pytest.raises(ex.AddressStillInvalid, match="city"):
        act(api, ex.verify_address, alert_id, address=Address(**US_CUSTOMER | {"city": "  "}), carrier=carrier)

    assert ledger(sim)["addresses_created"] == asked
    assert_untouched(api, order_id, alert_id, OrderStatus.ON_HOLD)


def test_an_entry_already_resolved_refuses_every_action_and_keeps_its_first_resolution(api, sim, carrier):
    order_id, alert_id = held_for_address(api, carrier)
    act(api, ex.resolve, alert_id, note="waiting for the customer's answer by e-mail")

    for action, kw in ((ex.verify_address, {"address": Address(**US_CUSTOMER), "carrier": carrier}),
                       (ex.refund, {"payments": api.payments}), (ex.contact_customer, {}),
                       (ex.resolve, {"note": "again"})):
        with pytest.raises(ex.AlreadyResolved, match="already resolved by sam"):
            act(api, action, alert_id, **kw)

    assert alert_of(api, order_id, "address").resolution == "resolve"
    assert order_row(api, order_id).status == OrderStatus.ON_HOLD and not api.payments.voided


def test_an_address_released_by_someone_else_is_no_longer_editable_here(api, sim, carrier):
    # given an address entry whose order has meanwhile been shipped with a corrected address
    order_id, alert_id = held_for_address(api, carrier)
    svc = api.services
    with svc.uow() as uow:
        order = uow.orders.get(order_id)
        order.shipping_address = Address(**US_CUSTOMER)
        order.release(at=svc.now(), source="user:olive")
        uow.commit()
    assert ship(api, order_id, carrier) == "label_created"

    with pytest.raises(NotAllowed, match="label is bought"):
        act(api, ex.verify_address, alert_id, address=Address(**US_CUSTOMER), carrier=carrier)
    assert alert_of(api, order_id, "address").cleared_at is None


# ---- reship and refund -----------------------------------------------------------------------------------------


def test_a_returned_parcel_is_reshipped_on_a_new_shipment_with_a_new_label(api, sim, carrier, receiver):
    # given an order whose parcel came back to sender
    order_id, alert_id = returned(api, sim, carrier, receiver)
    first = shipment_row(api, order_id)

    # when support reships it and the shipping stage runs
    outcome = act(api, ex.reship, alert_id, note="customer confirmed the address")
    assert order_row(api, order_id).status == OrderStatus.READY_TO_SHIP
    assert {"order_id": order_id} in queued(api, "shipping")
    control(sim, reset=True)
    assert ship(api, order_id, carrier) == "label_created"

    # then a second shipment carries a new label; the returned one stays returned
    assert first.tracking_code in outcome.summary
    old, new = shipments(api, order_id)
    assert (old.id, old.status) == (first.id, ShipmentStatus.RETURNED)
    assert new.status == ShipmentStatus.PURCHASED and new.tracking_code != old.tracking_code
    assert order_row(api, order_id).status == OrderStatus.LABEL_CREATED
    lines, audits = inbox_entries(api, order_id, "reship")
    assert lines[0].payload["previous"]["tracking_code"] == first.tracking_code and len(audits) == 1
    assert alert_of(api, order_id, "carrier").resolution == "reship"


def test_a_silent_parcel_is_declared_lost_and_reshipped(api, sim, carrier, receiver):
    # given a parcel with no scan for four days
    order_id = ready_to_ship(api)
    control(sim, fates_by_reference={order_id: "lost"})
    ship(api, order_id, carrier)
    replay(api, receiver, shipment_row(api, order_id).tracking_code, "pre_transit")
    svc = api.services
    assert find_silent_parcels(svc.uow(), svc.now() + timedelta(days=4), 3) == [order_id]

    # when support reships it
    act(api, ex.reship, alert_of(api, order_id, "carrier").id)

    # then the silent parcel is lost and the order goes back to be shipped again
    assert shipment_row(api, order_id).status == ShipmentStatus.LOST
    assert order_row(api, order_id).status == OrderStatus.READY_TO_SHIP


def test_reship_is_refused_for_an_address_problem_and_for_an_order_no_longer_held(api, sim, carrier, receiver):
    address_order, address_alert = held_for_address(api, carrier)
    with pytest.raises(NotAllowed, match="does not apply to address exceptions"):
        act(api, ex.reship, address_alert)
    assert_untouched(api, address_order, address_alert, OrderStatus.ON_HOLD)

    order_id, alert_id = returned(api, sim, carrier, receiver)
    svc = api.services
    with svc.uow() as uow:  # someone released the hold by hand meanwhile
        uow.orders.get(order_id).release(at=svc.now(), source="user:olive")
        uow.commit()
    with pytest.raises(NotAllowed, match="not held for a carrier problem"):
        act(api, ex.reship, alert_id)
    assert alert_of(api, order_id, "carrier").cleared_at is None and queued(api, "shipping") == []


def test_a_refund_voids_the_payment_and_closes_the_order(api, sim, carrier, receiver):
    order_id, alert_id = returned(api, sim, carrier, receiver)
    with api.services.uow() as uow:
        authorization = uow.orders.get(order_id).payment_authorization

    outcome = act(api, ex.refund, alert_id, payments=api.payments, note="customer no longer wants it")

    assert authorization in api.payments.voided
    order = order_row(api, order_id)
    assert order.status == OrderStatus.FAILED and order.hold_reason is None
    assert "refunded" in outcome.summary
    lines, audits = inbox_entries(api, order_id, "refund")
    assert lines[0].payload["amount_cents"] == order.total_cents and audits[0].after["status"] == "failed"


def test_a_refund_is_refused_for_an_order_that_is_moving_again_and_nothing_is_voided(api, sim, carrier, receiver):
    order_id, alert_id = returned(api, sim, carrier, receiver)
    svc = api.services
    with svc.uow() as uow:
        uow.orders.get(order_id).release(at=svc.now(), source="user:olive")
        uow.commit()

    with pytest.raises(NotAllowed, match="only an order on hold"):
        act(api, ex.refund, alert_id, payments=api.payments)

    assert not api.payments.voided and alert_of(api, order_id, "carrier").cleared_at is None


def test_a_refund_whose_void_fails_keeps_the_order_closed_and_alerts_ops_to_void_by_hand(api, sim, carrier,
                                                                                          receiver):
    class ProviderDown:  # core.ports.Payments, with the provider unreachable
        def authorize(self, **kw):
            raise AssertionError("not used")

        def void(self, authorization_id: str) -> None:
            raise ConnectionError("payment provider unreachable")

    order_id, alert_id = returned(api, sim, carrier, receiver)

    outcome = act(api, ex.refund, alert_id, payments=ProviderDown())

    assert "void it by hand" in outcome.summary
    assert order_row(api, order_id).status == OrderStatus.FAILED
    payment = alert_of(api, order_id, "payment")
    assert payment.severity == "critical" and payment.cleared_at is None and "could not be voided" in payment.message


# ---- contacting the customer ----------------------------------------------------------------------------------


def test_contacting_the_customer_resends_the_exception_message_on_each_channel(api, sim, carrier):
    # given an order held for its address (its exception message is due on both channels)
    order_id, alert_id = held_for_address(api, carrier)
    before = queued(api, "notify")

    # when support contacts the customer
    outcome = act(api, ex.contact_customer, alert_id)

    # then one more exception message per channel is queued, and the entry is resolved
    added = [m for m in queued(api, "notify") if m not in before]
    assert sorted((m["milestone"], m["channel"], m["resend"]) for m in added) == [
        ("exception", "email", 1), ("exception", "sms", 1)]
    assert "email" in outcome.summary and alert_of(api, order_id, "address").resolution == "contact"


def test_a_customer_who_opted_out_everywhere_cannot_be_contacted_and_the_entry_stays_open(api, sim, carrier):
    order_id, alert_id = held_for_address(api, carrier)
    with api.services.uow() as uow:
        customer = uow.orders.get(order_id).customer
        customer.email_opt_out = customer.sms_opt_out = True
        uow.commit()

    with pytest.raises(NotAllowed, match="cannot be reached"):
        act(api, ex.contact_customer, alert_id)
    assert alert_of(api, order_id, "address").cleared_at is None


def test_a_failed_notification_is_resent_from_its_entry(api):
    # given a "received" e-mail the mail server refused until the stage gave up, which alerted support
    from tests.unit.test_render_stage import place

    order_id = place(api)
    svc = api.services
    refused = SmtpMailer("127.0.0.1", 1, "Pressroom <orders@pressroom.dev>")  # nothing listens on port 1
    sms = HttpSms("http://127.0.0.1:1", "unused")
    links = notification_links(svc.settings, now=svc.now())
    assert send_notification(order_id, Milestone.RECEIVED, Channel.EMAIL, uow=svc.uow(), mailer=refused, sms=sms,
                             links=links, now=svc.now, max_attempts=1) == "gave_up"
    alert_id = alert_of(api, order_id, "notification").id

    # when support contacts the customer from that entry
    act(api, ex.contact_customer, alert_id)

    # then that same message (not the exception one) is queued once more
    assert {"order_id": order_id, "milestone": "received", "channel": "email", "resend": 1} in queued(api, "notify")
    assert alert_of(api, order_id, "notification").resolution == "contact"


# ---- resolving, change requests, unknown entries -------------------------------------------------------------


def test_resolving_needs_a_note_and_leaves_the_order_as_it_is(api, sim, carrier):
    order_id, alert_id = held_for_address(api, carrier)
    for blank in ("", "   "):
        with pytest.raises(ex.NoteRequired):
            act(api, ex.resolve, alert_id, note=blank)
    with pytest.raises(ex.NoteRequired, match="under 1000"):
        act(api, ex.resolve, alert_id, note="x" * 1001)
    assert_untouched(api, order_id, alert_id, OrderStatus.ON_HOLD)

    act(api, ex.resolve, alert_id, note="customer will reply with a new address")

    assert order_row(api, order_id).status == OrderStatus.ON_HOLD
    lines, audits = inbox_entries(api, order_id, "resolve")
    assert lines[0].payload["note"] == "customer will reply with a new address" and len(audits) == 1


def test_a_change_request_after_the_gate_can_move_the_address_until_the_label_is_bought(api, sim, carrier):
    # given an order past the production gate whose customer asks to ship elsewhere
    order_id = ready_to_ship(api)
    svc = api.services
    assert request_change(order_id, "Please send it to my office instead", request_id="r1", uow=svc.uow(),
                          now=svc.now()) == "requested"
    alert_id = alert_of(api, order_id, "change_request").id

    # when support verifies the new address
    new_address = Address(**US_CUSTOMER | {"name": "Grace Hopper (office)"})
    act(api, ex.verify_address, alert_id, address=new_address, carrier=carrier)

    # then the order keeps going and ships to it
    assert order_row(api, order_id).status == OrderStatus.READY_TO_SHIP
    assert ship(api, order_id, carrier) == "label_created"
    with svc.uow() as uow:
        assert uow.orders.get(order_id).shipping_address == new_address


def test_an_unknown_entry_is_not_found():
    class NoAlerts:
        def get(self, alert_id):
            return None

    class Uow:
        alerts = NoAlerts()

    with pytest.raises(NotFound, match="no exception #42"):
        ex._entry(Uow(), 42, ex.Action.RESOLVE)


@given(kind=st.sampled_from([*ex.KINDS, "queue_depth", "stuck", ""]))
def test_every_kind_can_be_resolved_with_a_note_and_only_inbox_kinds_get_more(kind):
    actions = ex.suggested_actions(kind)
    assert ex.Action.RESOLVE in actions
    assert (len(actions) > 1) == (kind in ex.KINDS)
    assert all(a.action_id.startswith("exception.") for a in actions)


def test_cancel_is_offered_only_before_the_gate():
    assert ex.before_the_gate("accepted") and ex.before_the_gate("ready_for_production")
    assert ex.before_the_gate("on_hold", "rendering")
    assert not ex.before_the_gate("in_production") and not ex.before_the_gate("on_hold", "shipped")
    assert not ex.before_the_gate("cancelled") and not ex.before_the_gate("delivered")
