"""A shipment create whose answer is lost, on PostgreSQL and real Redis, through a fault proxy in front of the
carrier sim: the retry asks the carrier for the order's shipment by reference before creating another, so the
carrier holds one shipment and sells one label per order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from adapters.carrier import EasyPostCarrier
from core.commands import Address
from core.services.shipping import CarrierUnavailable
from core.states import OrderStatus, ShipmentStatus
from sims.carrier import BackgroundServer, CarrierSimConfig
from sims.faultproxy import FaultProxy, Mode, Rule
from tests.unit.test_shipping_stage import (
    KEY,
    ledger,
    order_row,
    ready_to_ship,
    ship,
    shipment_row,
    shipments_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CREATE = r"^POST /v2/shipments$"


@pytest.fixture
def sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(CarrierSimConfig(webhook_url=None, seed=6)) as server:
        yield server


@pytest.fixture
def proxy(sim) -> Iterator[FaultProxy]:
    with FaultProxy(sim.url, seed=3, blackhole_hold_s=5) as p:
        yield p


@pytest.fixture
def carrier(proxy, redis_url) -> EasyPostCarrier:
    """The adapter as a worker builds it, talking to the carrier through the proxy."""
    return EasyPostCarrier(KEY, f"{proxy.url}/v2", timeout_s=1, redis_client=redis.Redis.from_url(redis_url),
                           rate_per_s=50, burst=50)


def calls(proxy: FaultProxy) -> list[str]:
    return [f"{e.method} {e.target}{' (' + e.fault + ')' if e.fault else ''}" for e in proxy.exchanges()]


def test_a_create_whose_answer_is_lost_is_found_by_reference_on_the_retry_and_bought_once(harness, sim, proxy,
                                                                                           carrier):
    # given an order ready to ship, and a network that loses the carrier's answer to the next create
    order_id = ready_to_ship(harness)
    proxy.set_rules([Rule(mode=Mode.LOST_RESPONSE, next=1, match=CREATE)])

    # when the shipping stage runs, then it gives up for now (the actor retries) with the create marked as sent
    with pytest.raises(CarrierUnavailable):
        ship(harness, order_id, carrier)
    assert ledger(sim)["shipments_by_reference"] == {order_id: 1}  # the carrier did create it
    marked = shipment_row(harness, order_id)
    assert marked.status == ShipmentStatus.PENDING and marked.carrier_shipment_id is None

    # when the retry runs
    assert ship(harness, order_id, carrier) == "label_created"

    # then it asked for the order's shipment by reference instead of creating another, and bought that one
    after_lost = calls(proxy)[[c.startswith("POST /v2/shipments") for c in calls(proxy)].index(True) + 1:]
    assert after_lost[0] == f"GET /v2/shipments/{order_id}"
    assert not any(c.startswith("POST /v2/shipments (") or c == "POST /v2/shipments" for c in after_lost)
    books = ledger(sim)
    assert books["shipments_by_reference"] == {order_id: 1} and books["shipments_found_by_reference"] == 1
    assert books["purchases_by_reference"] == {order_id: 1} and books["labels_bought"] == 1
    shipment = shipment_row(harness, order_id)
    assert shipment.status == ShipmentStatus.PURCHASED and list(books["purchases_by_shipment"]) == [
        shipment.carrier_shipment_id]
    assert shipments_of(harness, order_id) == 1
    assert harness.services.store.get(shipment.label_key).startswith(b"\x89PNG")
    assert order_row(harness, order_id).status == OrderStatus.LABEL_CREATED


def test_a_create_that_never_reached_the_carrier_is_looked_up_then_made_once(harness, sim, proxy, carrier):
    # given a network that resets the next create before it reaches the carrier
    order_id = ready_to_ship(harness)
    proxy.set_rules([Rule(mode=Mode.RESET, next=1, match=CREATE)])
    with pytest.raises(CarrierUnavailable):
        ship(harness, order_id, carrier)
    assert ledger(sim)["shipments_created"] == 0

    # when the retry runs, then it asks first, finds nothing, and creates the one shipment it buys
    assert ship(harness, order_id, carrier) == "label_created"
    assert f"GET /v2/shipments/{order_id}" in calls(proxy)
    books = ledger(sim)
    assert books["shipments_by_reference"] == {order_id: 1} and books["purchases_by_reference"] == {order_id: 1}


def test_the_first_try_asks_nothing_before_creating(harness, sim, proxy, carrier):
    # given a calm network, when an order's label is bought
    order_id = ready_to_ship(harness)
    assert ship(harness, order_id, carrier) == "label_created"

    # then no lookup was spent on it: verify, create and buy were the only API calls
    shipment_id = shipment_row(harness, order_id).carrier_shipment_id
    assert [c for c in calls(proxy) if c.split(" ")[1].startswith("/v2/")] == [
        "POST /v2/addresses", "POST /v2/shipments", f"POST /v2/shipments/{shipment_id}/buy"]
    assert ledger(sim)["shipments_found_by_reference"] == 0


def test_a_shipment_found_by_reference_to_an_address_corrected_since_stays_unbought(harness, sim, proxy, carrier):
    # given a create whose answer was lost, and the order's address corrected before the retry
    order_id = ready_to_ship(harness)
    proxy.set_rules([Rule(mode=Mode.LOST_RESPONSE, next=1, match=CREATE)])
    with pytest.raises(CarrierUnavailable):
        ship(harness, order_id, carrier)
    corrected = Address(name="Grace Hopper", line1="20 W 34th St", city="New York", region="NY",
                        postal_code="10001", country="US")
    with harness.services.uow() as uow:
        uow.orders.get(order_id, lock=True).shipping_address = corrected
        uow.commit()

    # when the retry runs
    assert ship(harness, order_id, carrier) == "label_created"

    # then the old shipment is left unbought and the label goes to the corrected address
    books = ledger(sim)
    assert books["shipments_by_reference"] == {order_id: 2} and books["purchases_by_reference"] == {order_id: 1}
    bought = carrier.retrieve(shipment_row(harness, order_id).carrier_shipment_id)
    assert bought.purchase is not None and bought.to is not None and bought.to.line1 == "20 W 34th St"
