"""The shipping and tracking stages on SQLite against the carrier sim over real HTTP, through the official
EasyPost client: labels bought once and stored, bad addresses held, the fastest rate for express, and tracker
webhooks signed by the sim taking orders to delivered (or on hold) and never backwards."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import httpx
import pytest
from sqlalchemy import func, select

from adapters.carrier import EasyPostCarrier
from core.commands import Address
from core.services.shipping import (
    SCAN_KIND,
    CarrierUnavailable,
    Rate,
    apply_carrier_event,
    buy_label,
    choose_rate,
    find_silent_parcels,
)
from core.states import HoldReason, OrderStatus, ShipmentStatus, ShippingSpeed
from db import tables as t
from sims.carrier import BackgroundServer, CarrierSimConfig, sign_webhook
from tests.conftest import png_bytes

KEY = "EZTK_pressroom_test"
SECRET = "whsec_dev_easypost"  # the API's default EASYPOST_WEBHOOK_SECRET
TIME_SCALE = 720_000.0  # 200 simulated hours per real second: an 8-day parcel arrives in about a second
SHIP_FROM = Address(name="Pressroom Fulfilment", line1="55 Water St", city="Brooklyn", region="NY",
                    postal_code="11201", country="US")
US_CUSTOMER = {"name": "Grace Hopper", "line1": "350 5th Ave", "city": "New York", "region": "NY",
               "postal_code": "10118", "country": "US"}
NOWHERE = {"name": "Nobody", "line1": "1 Nowhere Lane", "city": "Boston", "region": "MA", "postal_code": "2134",
           "country": "US"}


# ---- the outside world: the carrier sim and the endpoint its webhooks reach ----------------------------------


class Receiver:
    """Records each webhook exactly as the carrier sent it (raw body, header names as sent)."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.posts.append((body, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/carrier/easypost"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def deliveries(self, tracking_code: str) -> list[tuple[bytes, dict[str, str]]]:
        with self.lock:
            posts = list(self.posts)
        return [(body, headers) for body, headers in posts
                if json.loads(body)["result"]["tracking_code"] == tracking_code]

    def statuses(self, tracking_code: str) -> list[str]:
        return [json.loads(body)["result"]["status"] for body, _ in self.deliveries(tracking_code)]


def eventually(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def sim(receiver: Receiver) -> Iterator[BackgroundServer]:
    config = CarrierSimConfig(webhook_url=receiver.url, webhook_secret=SECRET, time_scale=TIME_SCALE, seed=11,
                              webhook_backoff_seconds=0.05, tick_seconds=0.02)
    with BackgroundServer(config) as server:
        yield server


@pytest.fixture(autouse=True)
def calm_sim(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        control(request.getfixturevalue("sim"), reset=True)


@pytest.fixture
def carrier(sim: BackgroundServer) -> EasyPostCarrier:
    return EasyPostCarrier(KEY, sim.api_base, timeout_s=5)


def control(sim: BackgroundServer, **knobs: Any) -> dict[str, Any]:
    response = httpx.post(f"{sim.url}/sim/control", json=knobs, timeout=5)
    response.raise_for_status()
    return response.json()


def ledger(sim: BackgroundServer) -> dict[str, Any]:
    return httpx.get(f"{sim.url}/sim/ledger", timeout=5).json()


# ---- our side: orders, the stage, and what it recorded ---------------------------------------------------------


def ready_to_ship(api, *, address: dict | None = None, speed: str = "standard") -> str:
    """An order placed through the API, then moved to ready_to_ship by the domain's own transitions."""
    art = api.upload(png_bytes(2400, 1200, colour=(30, 90, 200)))["id"]
    body = api.order_body(art, shipping_speed=speed, shipping_address=address or US_CUSTOMER)
    body["lines"][0].update(sku="MUG-SUB-11OZ-WHT", texts={"name": "Ada"})
    response = api.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]
    svc = api.services
    with svc.uow() as uow:
        order = uow.orders.get(order_id)
        for status in (OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION,
                       OrderStatus.QA, OrderStatus.READY_TO_SHIP):
            order.advance(status, at=svc.now(), source="test")
        uow.commit()
    return order_id


def ship(api, order_id: str, carrier: EasyPostCarrier) -> str:
    svc = api.services
    return buy_label(order_id, uow=svc.uow(), carrier=carrier, store=svc.store, now=svc.now, new_id=svc.ids.new,
                     ship_from=SHIP_FROM)


def order_row(api, order_id: str):
    with api.services.engine.connect() as conn:
        return conn.execute(select(t.orders).where(t.orders.c.id == order_id)).one()


def shipment_row(api, order_id: str):
    with api.services.engine.connect() as conn:
        return conn.execute(select(t.shipments).where(t.shipments.c.order_id == order_id)).one()


def shipments_of(api, order_id: str) -> int:
    """How many shipment records the order has (a retry must not add a second)."""
    with api.services.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(t.shipments).where(t.shipments.c.order_id == order_id))


def timeline(api, order_id: str) -> list[tuple[str, dict]]:
    with api.services.engine.connect() as conn:
        return [(r.type, r.payload) for r in conn.execute(
            select(t.order_events.c.type, t.order_events.c.payload).where(t.order_events.c.order_id == order_id)
            .order_by(t.order_events.c.id))]


def alerts(api) -> list[tuple[str, str]]:
    with api.services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.alerts.c.kind, t.alerts.c.key))]


def post_webhook(api, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return api.client.post("/webhooks/carrier/easypost", content=body, headers=headers)


def apply_queued(api) -> list[str]:
    """Run every ApplyCarrierEvent the webhook endpoint queued (the `tracking` actor's work), in order."""
    queue = api.broker.queues["tracking"]
    outcomes = []
    while not queue.empty():
        message = dramatiq.Message.decode(queue.get_nowait())
        outcomes.append(apply_carrier_event(message.kwargs["inbox_id"], uow=api.services.uow(),
                                            now=api.services.now()))
    return outcomes


def replay(api, receiver: Receiver, tracking_code: str, final: str) -> list[tuple[bytes, dict[str, str]]]:
    """Wait for the parcel's last scan, post every webhook the sim sent to our API as sent, apply them."""
    assert eventually(lambda: (s := receiver.statuses(tracking_code)) and s[-1] == final), \
        receiver.statuses(tracking_code)
    deliveries = receiver.deliveries(tracking_code)
    for body, headers in deliveries:
        assert post_webhook(api, body, headers).json() == {"status": "accepted"}
    apply_queued(api)
    return deliveries


# ---- buying the label -------------------------------------------------------------------------------------------


def test_a_ready_to_ship_order_gets_one_label_bought_stored_and_on_its_timeline(api, sim, carrier):
    # given an order whose items all passed QA
    order_id = ready_to_ship(api)

    # when the shipping stage runs
    assert ship(api, order_id, carrier) == "label_created"

    # then the carrier sold exactly one label for the order, and it is the cheapest rate (standard speed)
    books = ledger(sim)
    assert books["purchases_by_reference"][order_id] == 1 and books["shipments_by_reference"][order_id] == 1
    shipment = shipment_row(api, order_id)
    assert shipment.status == ShipmentStatus.PURCHASED and shipment.carrier_shipment_id.startswith("shp_")
    rates = carrier.retrieve(shipment.carrier_shipment_id).rates
    assert shipment.rate_cents == min(r.rate_cents for r in rates)
    assert (shipment.carrier, shipment.service) == ("USPS", "GroundAdvantage")
    # and the label is stored as a PNG, the order is label_created with its tracking code on the timeline
    assert shipment.label_key == f"labels/{order_id}.png"
    assert api.services.store.get(shipment.label_key).startswith(b"\x89PNG")
    assert order_row(api, order_id).status == OrderStatus.LABEL_CREATED
    events = timeline(api, order_id)
    created = next(p for kind, p in events if kind == "order.label_created")
    assert created["tracking_code"] == shipment.tracking_code
    assert [k for k, _ in events if k.startswith("shipment.")] == ["shipment.created", "shipment.purchased",
                                                                    "shipment.label_stored"]

    # when the message is delivered again, then nothing more is bought
    assert ship(api, order_id, carrier) == "skipped"
    assert ledger(sim)["buy_attempts"] == books["buy_attempts"]


def test_an_unverifiable_address_holds_the_order_alerts_support_and_asks_the_customer_once(api, sim, carrier):
    # given an order to a street the carrier cannot find, with a ZIP that lost its leading zero
    order_id = ready_to_ship(api, address=NOWHERE)
    before = ledger(sim)

    # when the shipping stage runs (twice, as a redelivery would)
    assert ship(api, order_id, carrier) == "needs_address"
    assert ship(api, order_id, carrier) == "skipped"

    # then the order waits for an address, support is alerted, and no shipment or label exists at the carrier
    order = order_row(api, order_id)
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, HoldReason.NEEDS_ADDRESS)
    assert shipment_row(api, order_id).status == ShipmentStatus.NEEDS_ADDRESS
    assert alerts(api) == [("address", order_id)]
    books = ledger(sim)
    assert order_id not in books["shipments_by_reference"] and books["labels_bought"] == before["labels_bought"]
    unverified = next(p for kind, p in timeline(api, order_id) if kind == "shipping.address_unverified")
    assert {(e["field"], e["code"]) for e in unverified["errors"]} == {("address", "E.ADDRESS.NOT_FOUND"),
                                                                      ("postal_code", "E.ZIP.INVALID")}
    assert unverified["suggestion_offered"] is True

    # when support releases it unchanged and the stage runs again, then the customer is still asked only once
    svc = api.services
    with svc.uow() as uow:
        uow.orders.get(order_id).release(at=svc.now(), source="user:sam")
        uow.commit()
    assert ship(api, order_id, carrier) == "needs_address"
    kinds = [kind for kind, _ in timeline(api, order_id)]
    assert kinds.count("customer.asked_for_address") == 1 and kinds.count("shipping.address_unverified") == 2
    assert alerts(api) == [("address", order_id)]


def test_a_verified_address_after_a_hold_gets_its_label_on_the_same_shipment_record(api, sim, carrier):
    # given an order held for its address, which support then corrects and releases
    order_id = ready_to_ship(api, address=NOWHERE)
    assert ship(api, order_id, carrier) == "needs_address"
    svc = api.services
    with svc.uow() as uow:
        order = uow.orders.get(order_id)
        order.shipping_address = Address(**US_CUSTOMER)
        order.release(at=svc.now(), source="user:sam")
        uow.commit()

    # when the stage runs again, then the label is bought for the one shipment record the order has
    assert ship(api, order_id, carrier) == "label_created"
    assert shipment_row(api, order_id).status == ShipmentStatus.PURCHASED
    assert ledger(sim)["purchases_by_reference"][order_id] == 1


def test_express_buys_the_fastest_rate_and_the_cheapest_among_the_fastest(api, sim, carrier):
    # given an express order
    order_id = ready_to_ship(api, speed="express")

    # when its label is bought
    assert ship(api, order_id, carrier) == "label_created"

    # then no rate the carrier offered was faster, and none as fast was cheaper
    shipment = shipment_row(api, order_id)
    rates = carrier.retrieve(shipment.carrier_shipment_id).rates
    fastest = min(r.delivery_days for r in rates)
    chosen = next(r for r in rates if (r.carrier, r.service) == (shipment.carrier, shipment.service))
    assert chosen.delivery_days == fastest == 1
    assert shipment.rate_cents == min(r.rate_cents for r in rates if r.delivery_days == fastest)
    assert shipment.rate_cents > min(r.rate_cents for r in rates)  # speed was paid for


def test_rate_choice_by_speed_and_configured_carriers():
    rates = [Rate(id="a", carrier="USPS", service="Ground", rate_cents=500, delivery_days=5),
             Rate(id="b", carrier="UPS", service="NextDay", rate_cents=3000, delivery_days=1),
             Rate(id="c", carrier="FedEx", service="Overnight", rate_cents=2800, delivery_days=1),
             Rate(id="d", carrier="DHL", service="Unknown", rate_cents=400, delivery_days=None)]
    assert choose_rate(rates, ShippingSpeed.STANDARD).id == "d"
    assert choose_rate(rates, ShippingSpeed.EXPRESS).id == "c"
    assert choose_rate(rates, ShippingSpeed.EXPRESS, frozenset({"UPS", "USPS"})).id == "b"
    assert choose_rate(rates, ShippingSpeed.STANDARD, frozenset({"Royal Mail"})) is None


def test_a_throttled_call_waits_out_retry_after_and_a_long_one_is_left_for_later(sim):
    # given a carrier about to refuse two requests with Retry-After: 2
    waits: list[float] = []
    patient = EasyPostCarrier(KEY, sim.api_base, timeout_s=5, sleep=waits.append)
    control(sim, rate_limit_next=2, retry_after_seconds=2)

    # when an address is verified, then it waits as asked (twice) and then succeeds
    assert patient.verify_address(Address(**US_CUSTOMER)).ok
    assert len(waits) == 2 and all(2.0 <= w <= 2.2 for w in waits)

    # when the carrier asks for longer than we wait inline, then the call is handed back with its delay
    impatient = EasyPostCarrier(KEY, sim.api_base, timeout_s=5, sleep=waits.append, max_inline_wait_s=1)
    control(sim, rate_limit_next=1, retry_after_seconds=30)
    with pytest.raises(CarrierUnavailable) as caught:
        impatient.verify_address(Address(**US_CUSTOMER))
    assert caught.value.retry_after_s == 30


# ---- tracking ------------------------------------------------------------------------------------------------


def test_tracker_webhooks_signed_by_the_carrier_take_the_order_to_delivered(api, sim, carrier, receiver):
    # given an order whose label was bought
    order_id = ready_to_ship(api)
    ship(api, order_id, carrier)
    code = shipment_row(api, order_id).tracking_code

    # when every tracker.updated webhook the carrier sent reaches our API and is applied
    deliveries = replay(api, receiver, code, "delivered")

    # then the parcel and the order are delivered, and every scan is on the timeline
    assert [json.loads(b)["result"]["status"] for b, _ in deliveries] == [
        "pre_transit", "in_transit", "in_transit", "out_for_delivery", "delivered"]
    assert shipment_row(api, order_id).status == ShipmentStatus.DELIVERED
    assert order_row(api, order_id).status == OrderStatus.DELIVERED
    events = timeline(api, order_id)
    scans = [p for kind, p in events if kind == SCAN_KIND]
    assert [s["status"] for s in scans] == ["pre_transit", "in_transit", "in_transit", "out_for_delivery",
                                            "delivered"]
    assert [s["applied"] for s in scans] == [False, True, False, True, True]
    assert [k for k, _ in events if k.startswith("order.")][-3:] == ["order.label_created", "order.shipped",
                                                                     "order.delivered"]


def test_a_parcel_returned_to_sender_puts_the_order_on_hold_with_a_carrier_alert(api, sim, carrier, receiver):
    # given an order whose parcel the carrier will bring back
    order_id = ready_to_ship(api)
    control(sim, fates_by_reference={order_id: "return_to_sender"})
    ship(api, order_id, carrier)

    # when its webhooks are applied
    replay(api, receiver, shipment_row(api, order_id).tracking_code, "return_to_sender")

    # then the parcel is returned, the order on hold for a carrier exception, and support alerted
    assert shipment_row(api, order_id).status == ShipmentStatus.RETURNED
    order = order_row(api, order_id)
    assert (order.status, order.hold_reason, order.held_from) == (OrderStatus.ON_HOLD,
                                                                  HoldReason.CARRIER_EXCEPTION, OrderStatus.SHIPPED)
    assert alerts(api) == [("carrier", order_id)]


def test_duplicate_and_late_carrier_events_are_recorded_but_never_move_the_parcel_back(api, sim, carrier,
                                                                                        receiver):
    # given a delivered order
    order_id = ready_to_ship(api)
    ship(api, order_id, carrier)
    code = shipment_row(api, order_id).tracking_code
    deliveries = replay(api, receiver, code, "delivered")
    in_transit_body, headers = deliveries[1]

    # when the carrier retries an in_transit webhook byte for byte, then it is recognised and not queued
    assert post_webhook(api, in_transit_body, headers).json() == {"status": "duplicate"}
    assert apply_queued(api) == []

    # when a late in_transit event (a new event id, signed as EasyPost signs) arrives after delivery
    late = json.loads(in_transit_body) | {"id": f"evt_{secrets.token_hex(16)}"}
    body = json.dumps(late, separators=(",", ":")).encode()
    response = post_webhook(api, body, {"Content-Type": "application/json",
                                        "X-Hmac-Signature": sign_webhook(body, SECRET)})
    assert response.json() == {"status": "accepted"}

    # then it is on the timeline as late, and the parcel and the order stay delivered
    assert apply_queued(api) == ["recorded"]
    assert shipment_row(api, order_id).status == ShipmentStatus.DELIVERED
    assert order_row(api, order_id).status == OrderStatus.DELIVERED
    last = [p for kind, p in timeline(api, order_id) if kind == SCAN_KIND][-1]
    assert last["event"] == late["id"] and last["applied"] is False and "late or repeated" in last["why"]


def test_a_forged_or_unsigned_carrier_webhook_is_refused_before_anything_is_stored(api):
    body = json.dumps({"id": "evt_forged", "object": "Event", "description": "tracker.updated",
                       "result": {"tracking_code": "9400"}}).encode()
    for headers in ({"X-Hmac-Signature": sign_webhook(body, "whsec_someone_else")}, {}):
        response = post_webhook(api, body, {"Content-Type": "application/json", **headers})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/bad-signature")
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.webhook_inbox)) == 0


def test_a_parcel_with_no_scan_for_days_puts_the_order_on_hold_once(api, sim, carrier, receiver):
    # given a parcel the carrier scanned once (label created) and then lost
    order_id = ready_to_ship(api)
    control(sim, fates_by_reference={order_id: "lost"})
    ship(api, order_id, carrier)
    replay(api, receiver, shipment_row(api, order_id).tracking_code, "pre_transit")
    svc = api.services

    # when the monitor looks within the allowed silence, then nothing happens
    assert find_silent_parcels(svc.uow(), svc.now() + timedelta(days=2), 3) == []

    # when it looks after three silent days, then the order is held with an alert, once
    later = svc.now() + timedelta(days=3, hours=1)
    assert find_silent_parcels(svc.uow(), later, 3) == [order_id]
    assert find_silent_parcels(svc.uow(), later, 3) == []
    order = order_row(api, order_id)
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, HoldReason.CARRIER_EXCEPTION)
    assert alerts(api) == [("carrier", order_id)]
