"""A label buy whose answer is lost, on PostgreSQL and real Redis against the carrier sim: the stage retrieves
the shipment it stored before buying, so the carrier sells exactly one label per order, whatever happens."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import redis

from adapters.carrier import EasyPostCarrier
from core.services.shipping import CarrierUnavailable
from core.states import OrderStatus, ShipmentStatus
from sims.carrier import BackgroundServer, CarrierSimConfig
from tests.unit.test_shipping_stage import (
    KEY,
    control,
    ledger,
    order_row,
    ready_to_ship,
    ship,
    shipment_row,
    shipments_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def sim() -> Iterator[BackgroundServer]:
    """The carrier sim with its webhooks going nowhere (tracking is not under test here)."""
    with BackgroundServer(CarrierSimConfig(webhook_url=None, seed=5)) as server:
        yield server


@pytest.fixture
def carrier(sim, redis_url) -> EasyPostCarrier:
    """The adapter as a worker builds it: a 1-second timeout, the rate limit shared through real Redis."""
    return EasyPostCarrier(KEY, sim.api_base, timeout_s=1, redis_client=redis.Redis.from_url(redis_url),
                           rate_per_s=50, burst=50)


@pytest.mark.parametrize("mode", ["sleep", "drop"])
def test_a_buy_that_commits_and_then_times_out_is_retrieved_and_never_bought_again(harness, sim, carrier, mode):
    # given an order ready to ship, and a carrier that commits the next buy and then loses the answer
    # (sleep: the client times out, TimeoutError; drop: the connection closes mid-answer, HttpError)
    order_id = ready_to_ship(harness)
    control(sim, buy_timeouts_next=1, buy_timeout_mode=mode, buy_timeout_seconds=10)

    # when the shipping stage runs
    assert ship(harness, order_id, carrier) == "label_created"

    # then it settled the unknown outcome by retrieving: one shipment, one label, bought once
    books = ledger(sim)
    assert books["buy_timeouts_injected"] == 1
    assert books["shipments_by_reference"] == {order_id: 1}
    assert books["purchases_by_reference"] == {order_id: 1} and books["double_bought_references"] == []
    assert books["labels_bought"] == 1 and books["buy_attempts"] == 1
    shipment = shipment_row(harness, order_id)
    assert shipment.status == ShipmentStatus.PURCHASED and shipment.tracking_code
    assert harness.services.store.get(shipment.label_key).startswith(b"\x89PNG")
    assert order_row(harness, order_id).status == OrderStatus.LABEL_CREATED

    # when the message is redelivered, then nothing is bought or created again
    assert ship(harness, order_id, carrier) == "skipped"
    again = ledger(sim)
    assert (again["buy_attempts"], again["shipments_created"], again["labels_bought"]) == (1, 1, 1)


def test_a_buy_left_unsettled_is_retried_on_the_stored_shipment_and_never_a_new_one(harness, sim, carrier):
    # given an order whose buy fails with the carrier down just as it is sent, so even the retrieve fails
    order_id = ready_to_ship(harness)
    tripped = threading.Event()

    def carrier_goes_down_at_the_buy(**request) -> None:
        if request["path"].endswith("/buy") and not tripped.is_set():
            tripped.set()
            httpx.post(f"{sim.url}/sim/control", json={"server_error_rate": 1.0}, timeout=5).raise_for_status()

    carrier.client.subscribe_to_request_hook(carrier_goes_down_at_the_buy)

    # when the stage runs, then it gives up for now (the actor retries) with the shipment id stored
    with pytest.raises(CarrierUnavailable):
        ship(harness, order_id, carrier)
    stored = shipment_row(harness, order_id)
    assert stored.status == ShipmentStatus.CREATED and stored.carrier_shipment_id
    assert order_row(harness, order_id).status == OrderStatus.READY_TO_SHIP

    # when the carrier is back and the retry runs, then it buys that same shipment
    control(sim, reset=True)
    assert ship(harness, order_id, carrier) == "label_created"
    books = ledger(sim)
    assert books["shipments_by_reference"] == {order_id: 1}
    assert books["purchases_by_shipment"] == {stored.carrier_shipment_id: 1}
    assert shipment_row(harness, order_id).carrier_shipment_id == stored.carrier_shipment_id


def test_two_workers_on_the_same_order_at_once_buy_one_label(harness, sim, carrier):
    # given one order and its BuyLabel message delivered to two workers at the same moment
    order_id = ready_to_ship(harness)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def worker() -> None:
        start.wait()
        outcomes.append(ship(harness, order_id, carrier))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # then the order has one shipment record and the carrier sold one label (a second carrier shipment may
    # have been created by the loser of the race, but it was never bought)
    assert "label_created" in outcomes and set(outcomes) <= {"label_created", "skipped"}
    books = ledger(sim)
    assert books["purchases_by_reference"] == {order_id: 1} and books["double_bought_references"] == []
    assert books["shipments_by_reference"][order_id] in (1, 2)
    assert shipments_of(harness, order_id) == 1
    assert order_row(harness, order_id).status == OrderStatus.LABEL_CREATED
