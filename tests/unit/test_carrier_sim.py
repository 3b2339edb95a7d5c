"""The carrier sim speaks EasyPost to the official client over real HTTP, and misbehaves only when told to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import easypost
import httpx
import pytest
from easypost.errors import (
    HttpError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    SignatureVerificationError,
    TimeoutError,
    UnauthorizedError,
)
from easypost.util import validate_webhook

from sims import carrier as sim
from sims.carrier import BackgroundServer, CarrierSimConfig

KEY = "EZTK_pressroom_test"
SECRET = "whsec_dev_easypost"
TIME_SCALE = 720_000.0  # 200 simulated hours per real second: a 2-day parcel arrives in about a quarter second
SHOP = {"name": "Pressroom Fulfilment", "street1": "55 Water St", "city": "Brooklyn", "state": "NY",
        "zip": "11201", "country": "US", "phone": "+1 212-555-0100"}
CUSTOMER = {"name": "Ada Lovelace", "street1": "417 Montgomery St", "street2": "Fl 5", "city": "San Francisco",
            "state": "CA", "zip": "94104", "country": "US"}
PARCEL = {"length": 12, "width": 9, "height": 2, "weight": 14.5}


# --- a webhook receiver: what a merchant's endpoint sees ------------------------------------------------------


class Receiver:
    """A stdlib HTTP server that records every POST (raw body, headers as sent) and can refuse the next few."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str], int]] = []
        self.refuse_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    status = 500 if receiver.refuse_next > 0 else 200
                    receiver.refuse_next -= status == 500
                    receiver.posts.append((body, dict(self.headers.items()), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/carrier/easypost"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accepted_events(self, tracker_id: str) -> list[tuple[bytes, dict[str, str]]]:
        """Accepted deliveries for one tracker, in arrival order."""
        with self.lock:
            posts = list(self.posts)
        return [(body, headers) for body, headers, status in posts
                if status == 200 and json.loads(body)["result"]["id"] == tracker_id]

    def statuses(self, tracker_id: str) -> list[str]:
        return [json.loads(body)["result"]["status"] for body, _ in self.accepted_events(tracker_id)]


def eventually(check: Callable[[], Any], *, timeout: float = 8.0) -> Any:
    """Poll until `check()` is truthy; return its value."""
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
def carrier(receiver: Receiver) -> Iterator[BackgroundServer]:
    config = CarrierSimConfig(webhook_url=receiver.url, webhook_secret=SECRET, time_scale=TIME_SCALE, seed=7,
                              webhook_backoff_seconds=0.05, tick_seconds=0.02)
    with BackgroundServer(config) as server:
        yield server


@pytest.fixture(autouse=True)
def calm_carrier(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts and ends with the startup knobs, whatever it turned."""
    yield
    if "carrier" in request.fixturenames:
        control(request.getfixturevalue("carrier"), reset=True)


@pytest.fixture
def client(carrier: BackgroundServer) -> easypost.EasyPostClient:
    return easypost.EasyPostClient(KEY, api_base=carrier.api_base, timeout=5)


def control(carrier: BackgroundServer, **knobs: Any) -> dict[str, Any]:
    response = httpx.post(f"{carrier.url}/sim/control", json=knobs)
    response.raise_for_status()
    return response.json()


def ledger(carrier: BackgroundServer) -> dict[str, Any]:
    return httpx.get(f"{carrier.url}/sim/ledger").json()


def new_shipment(client: easypost.EasyPostClient, reference: str, **overrides: Any):
    params = {"to_address": CUSTOMER, "from_address": SHOP, "parcel": PARCEL, "reference": reference,
              **overrides}
    return client.shipment.create(**params)


def rate_of(shipment, carrier_name: str = "USPS", service: str = "Priority"):
    return next(r for r in shipment.rates if r.carrier == carrier_name and r.service == service)


def bought(client: easypost.EasyPostClient, reference: str):
    shipment = new_shipment(client, reference)
    return client.shipment.buy(shipment.id, rate=rate_of(shipment))


# --- addresses -----------------------------------------------------------------------------------------------


def test_a_verified_address_comes_back_normalised_with_a_successful_delivery_verification(client):
    # when a deliverable address is created with verify
    address = client.address.create(verify=True, **CUSTOMER)

    # then it is stored, corrected the way USPS writes it, and its delivery verification succeeded
    assert address.id.startswith("adr_") and address.object == "Address"
    assert (address.street1, address.city, address.state) == ("417 MONTGOMERY ST", "SAN FRANCISCO", "CA")
    assert address.zip.startswith("94104-") and len(address.zip) == 10
    delivery = address.verifications.delivery
    assert delivery.success is True and delivery.errors == [] and delivery.details.time_zone


def test_strict_verification_of_an_undeliverable_address_raises_invalid_request_with_field_errors(client):
    # given an address whose street cannot be found and whose ZIP lost its leading zero
    bad = {**CUSTOMER, "street1": "1 Nowhere Lane", "city": "Boston", "state": "MA", "zip": "2134"}

    # when it is created with verify_strict
    with pytest.raises(InvalidRequestError) as caught:
        client.address.create(verify_strict=True, **bad)

    # then the client raises the 422 error with EasyPost's code and one error per field, with a suggestion
    error = caught.value
    assert error.http_status == 422 and error.code == "ADDRESS.VERIFY.FAILURE"
    by_field = {e["field"]: e for e in error.errors}
    assert by_field["zip"]["code"] == "E.ZIP.INVALID" and by_field["zip"]["suggestion"] == "02134"
    assert by_field["address"]["code"] == "E.ADDRESS.NOT_FOUND" and by_field["address"]["suggestion"] is None


def test_create_and_verify_is_strict_while_verify_of_a_stored_address_only_reports(client):
    # given an address marked undeliverable, stored without verification
    undeliverable = {**CUSTOMER, "street1": "UNDELIVERABLE ST"}
    stored = client.address.create(**undeliverable)
    assert stored.verifications.to_dict() == {}

    # when it is verified by id, then the failure is reported, not raised
    verified = client.address.verify(stored.id)
    assert verified.verifications.delivery.success is False
    assert [e.code for e in verified.verifications.delivery.errors] == ["E.ADDRESS.NOT_FOUND"]

    # when it is sent to create_and_verify, then that call refuses it
    with pytest.raises(InvalidRequestError) as caught:
        client.address.create_and_verify(**undeliverable)
    assert caught.value.code == "ADDRESS.VERIFY.FAILURE"


def test_missing_lines_and_foreign_postal_formats_are_checked_per_country():
    # given addresses from the storefront's markets, written carelessly
    cases = {
        ("CA", "m5v2t6"): "M5V 2T6", ("GB", "sw1a 1aa"): "SW1A 1AA", ("NL", "1012js"): "1012 JS",
        ("AU", "3000"): "3000", ("DE", "10115"): "10115", ("AT", "1010"): "1010",
    }
    for (country, raw), expected in cases.items():
        result = sim.verify_address({"street1": "12 High St", "city": "Town", "zip": raw, "country": country})
        assert result.success, (country, raw, result.errors)
        assert result.corrected["zip"] == expected

    # when lines are missing or a code does not fit its country, then each is a field error
    result = sim.verify_address({"street1": "", "city": "", "zip": "ABC", "country": "DE"})
    assert {e["field"]: e["code"] for e in result.errors} == {
        "street1": "E.STREET.MISSING", "city": "E.CITY.MISSING", "zip": "E.ZIP.INVALID"}
    assert sim.verify_address({"street1": "Hauptstraße 5", "city": "Leipzig", "zip": "4109",
                               "country": "DE"}).errors[0]["suggestion"] == "04109"


def test_an_unknown_api_key_is_refused_like_easypost_refuses_it(carrier):
    # when a key that is neither a test/production key nor configured is used
    stranger = easypost.EasyPostClient("sk_live_nope", api_base=carrier.api_base, timeout=5)

    # then the client raises UnauthorizedError, and an unknown id is a NotFoundError for a good key
    with pytest.raises(UnauthorizedError):
        stranger.address.create(**CUSTOMER)
    with pytest.raises(NotFoundError):
        easypost.EasyPostClient(KEY, api_base=carrier.api_base).shipment.retrieve("shp_doesnotexist")


# --- shipments and labels ------------------------------------------------------------------------------------


def test_a_domestic_shipment_is_rated_by_several_carriers_and_an_international_one_by_dhl_too(client):
    # when a domestic and an international shipment are created
    domestic = new_shipment(client, "ord-rates-1")
    abroad = new_shipment(client, "ord-rates-2", to_address={
        "name": "Lukas Müller", "street1": "Friedrichstraße 43", "city": "Berlin", "zip": "10117", "country": "DE"})

    # then each has priced rates from several carriers, with promised days, tied to the shipment
    assert {r.carrier for r in domestic.rates} >= {"USPS", "UPS", "FedEx"}
    assert {r.carrier for r in abroad.rates} >= {"USPS", "UPS", "FedEx", "DHLExpress"}
    for rate in domestic.rates + abroad.rates:
        assert rate.id.startswith("rate_") and float(rate.rate) > 0 and rate.delivery_days >= 1
        assert rate.shipment_id in {domestic.id, abroad.id}
    assert domestic.reference == "ord-rates-1" and domestic.postage_label is None
    assert float(domestic.lowest_rate().rate) == min(float(r.rate) for r in domestic.rates)


def test_buying_a_rate_returns_a_label_a_tracking_code_and_a_tracker(client):
    # given a shipment
    shipment = new_shipment(client, "ord-buy-1")
    chosen = rate_of(shipment, "UPS", "2ndDayAir")

    # when that rate is bought
    result = client.shipment.buy(shipment.id, rate=chosen)

    # then the shipment carries the postage, the selected rate, a tracking code and its tracker
    assert result.selected_rate.id == chosen.id
    assert result.postage_label.label_url.endswith(".png")
    assert result.postage_label.label_file_type == "image/png"
    assert result.tracking_code.startswith("1Z") and result.tracker.tracking_code == result.tracking_code
    assert result.tracker.id.startswith("trk_") and result.tracker.status == "pre_transit"
    assert client.shipment.retrieve(shipment.id).tracking_code == result.tracking_code


def test_a_second_buy_of_a_bought_shipment_is_refused_with_postage_exists(client, carrier):
    # given a bought shipment
    shipment = new_shipment(client, "ord-twice-1")
    client.shipment.buy(shipment.id, rate=rate_of(shipment))

    # when it is bought again (even at another rate)
    with pytest.raises(InvalidRequestError) as caught:
        client.shipment.buy(shipment.id, rate=rate_of(shipment, "FedEx", "FEDEX_GROUND"))

    # then EasyPost's error comes back, and only one label was ever bought for the order
    assert caught.value.code == "SHIPMENT.POSTAGE.EXISTS"
    assert ledger(carrier)["purchases_by_reference"]["ord-twice-1"] == 1


def test_the_labels_are_served_as_png_and_pdf(client):
    # given a bought label
    label = bought(client, "ord-label-1").postage_label

    # when both files are fetched
    png = httpx.get(label.label_url)
    pdf = httpx.get(label.label_url.removesuffix(".png") + ".pdf")

    # then they are a real 4x6 PNG and a real PDF
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")


def test_a_pdf_label_can_be_asked_for_up_front_or_after_the_buy(client):
    # when a shipment asks for PDF labels, then its label_url is the PDF
    shipment = new_shipment(client, "ord-pdf-1", options={"label_format": "PDF"})
    pdf_first = client.shipment.buy(shipment.id, rate=rate_of(shipment))
    assert pdf_first.postage_label.label_file_type == "application/pdf"
    assert pdf_first.postage_label.label_url.endswith(".pdf")

    # when a PNG label is converted, then label_pdf_url appears
    converted = client.shipment.label(bought(client, "ord-pdf-2").id, file_format="PDF")
    assert httpx.get(converted.postage_label.label_pdf_url).content.startswith(b"%PDF-")


# --- unknown outcomes and throttling -------------------------------------------------------------------------


def test_a_buy_that_times_out_after_committing_is_found_bought_on_retrieve_and_bought_once(carrier):
    # given a client with a short timeout and a carrier that commits the next buy, then stalls
    impatient = easypost.EasyPostClient(KEY, api_base=carrier.api_base, timeout=1)
    shipment = new_shipment(impatient, "ord-timeout-1")
    control(carrier, buy_timeouts_next=1, buy_timeout_mode="sleep", buy_timeout_seconds=10)

    # when the buy is sent, the client gives up
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        impatient.shipment.buy(shipment.id, rate=rate_of(shipment))
    assert time.monotonic() - started < 5  # one timeout: the client does not retry a POST

    # then a retrieve shows the postage bought, and a retried buy is refused rather than bought twice
    found = impatient.shipment.retrieve(shipment.id)
    assert found.postage_label is not None and found.tracking_code
    with pytest.raises(InvalidRequestError, match="already has postage"):
        impatient.shipment.buy(shipment.id, rate=rate_of(shipment))
    books = ledger(carrier)
    assert books["purchases_by_reference"]["ord-timeout-1"] == 1
    assert books["purchases_by_shipment"][shipment.id] == 1


def test_a_buy_whose_connection_drops_after_committing_is_an_http_error_with_the_postage_bought(client, carrier):
    # given a carrier that commits the next buy, then closes the connection mid-answer
    shipment = new_shipment(client, "ord-drop-1")
    control(carrier, buy_timeouts_next=1, buy_timeout_mode="drop")

    # when the buy is sent, then the client sees a broken response, not a timeout
    with pytest.raises(HttpError):
        client.shipment.buy(shipment.id, rate=rate_of(shipment))

    # and the shipment is bought all the same
    assert client.shipment.retrieve(shipment.id).postage_label is not None
    assert ledger(carrier)["purchases_by_reference"]["ord-drop-1"] == 1


def test_the_ledger_reveals_an_order_double_bought_through_two_shipments(client, carrier):
    # when a careless client creates and buys a second shipment for the same order
    bought(client, "ord-double-1")
    bought(client, "ord-double-1")

    # then the ledger names the order
    books = ledger(carrier)
    assert books["purchases_by_reference"]["ord-double-1"] == 2
    assert "ord-double-1" in books["double_bought_references"]
    assert books["shipments_by_reference"]["ord-double-1"] == 2


def test_a_shipment_can_be_retrieved_by_its_reference_in_place_of_its_id(client, carrier):
    # given a shipment created with our order id as its reference
    shipment = new_shipment(client, "ord_byref_1")

    # when it is retrieved by that reference, then it is the same shipment, and the ledger counts the lookup
    found = client.shipment.retrieve("ord_byref_1")
    assert found.id == shipment.id and found.reference == "ord_byref_1"
    assert ledger(carrier)["shipments_found_by_reference"] >= 1

    # and a reference nobody used is not found, like an unknown id
    with pytest.raises(NotFoundError):
        client.shipment.retrieve("ord_byref_nobody")


def test_a_reference_shared_by_two_shipments_answers_the_newest_and_only_under_its_own_mode(client, carrier):
    # given two test-mode shipments with one reference (EasyPost does not make references unique)
    new_shipment(client, "ord_byref_2")
    newer = new_shipment(client, "ord_byref_2")

    # when the reference is looked up, then the newest answers
    assert client.shipment.retrieve("ord_byref_2").id == newer.id

    # and a production key does not see a test shipment by its reference
    production = easypost.EasyPostClient("EZAK_pressroom_prod", api_base=carrier.api_base, timeout=5)
    with pytest.raises(NotFoundError):
        production.shipment.retrieve("ord_byref_2")


def test_a_rate_limit_burst_raises_rate_limit_error_with_retry_after(client, carrier):
    # given a client that records response headers, and a carrier about to throttle two requests
    seen: list[tuple[int, Any]] = []
    client.subscribe_to_response_hook(lambda **kw: seen.append((kw["http_status"], kw["headers"])))
    control(carrier, rate_limit_next=2, retry_after_seconds=3)

    # when requests are made, then the first two are refused with Retry-After and the third goes through
    for _ in range(2):
        with pytest.raises(RateLimitError) as caught:
            client.address.create(**CUSTOMER)
        assert caught.value.http_status == 429 and caught.value.code == "RATE_LIMITED"
    assert client.address.create(**CUSTOMER).id.startswith("adr_")
    assert [status for status, _ in seen] == [429, 429, 201]
    assert seen[0][1]["Retry-After"] == "3"


def test_a_rate_limit_window_and_every_nth_request_throttle_too(client, carrier):
    # when the carrier is throttled for a window, then every request in it is refused with the time left
    control(carrier, rate_limit_for_seconds=1.5)
    with pytest.raises(RateLimitError) as caught:
        client.address.create(**CUSTOMER)
    assert json.loads(caught.value.http_body)["error"]["code"] == "RATE_LIMITED"
    time.sleep(1.6)

    # when every 3rd request is throttled, then exactly one of three is
    control(carrier, rate_limit_every=3)
    outcomes = []
    for _ in range(3):
        try:
            client.address.create(**CUSTOMER)
            outcomes.append("ok")
        except RateLimitError:
            outcomes.append("429")
    assert sorted(outcomes) == ["429", "ok", "ok"]


def test_a_rate_limit_refuses_requests_beyond_the_burst_with_retry_after_and_counts_them(client, carrier):
    # given a carrier that allows a burst of 2 and then one request every 2 s
    seen: list[tuple[int, Any]] = []
    client.subscribe_to_response_hook(lambda **kw: seen.append((kw["http_status"], kw["headers"])))
    control(carrier, rate_limit_per_second=0.5, rate_limit_burst=2)

    # when three requests come at once, then the third is refused with a Retry-After of whole seconds
    client.address.create(**CUSTOMER)
    client.address.create(**CUSTOMER)
    with pytest.raises(RateLimitError):
        client.address.create(**CUSTOMER)
    assert [status for status, _ in seen] == [201, 201, 429]
    assert int(seen[2][1]["Retry-After"]) >= 1
    assert ledger(carrier)["requests"]["rate_limited_by_rate"] == 1


def test_the_rate_limit_refills_at_its_rate_and_a_refused_request_spends_nothing():
    # given the sim's bucket at 10 requests/s with a burst of 3, read on a clock we hold
    state = sim.CarrierSim(CarrierSimConfig())
    faults = sim.Faults(rate_limit_per_second=10.0, rate_limit_burst=3)

    # when 3 requests take the burst at t=0, then a 4th waits 0.1 s, and asking again does not make it longer
    assert [state._over_rate(faults, 100.0) for _ in range(3)] == [None, None, None]
    assert state._over_rate(faults, 100.0) == pytest.approx(0.1)
    assert state._over_rate(faults, 100.05) == pytest.approx(0.05)

    # when 0.1 s has passed since the burst, then one request fits and the next waits again
    assert state._over_rate(faults, 100.1) is None
    assert state._over_rate(faults, 100.1) == pytest.approx(0.1)

    # when it stays quiet for a long time, then only the burst is saved up
    assert [state._over_rate(faults, 200.0) is None for _ in range(4)] == [True, True, True, False]


def test_server_errors_are_answered_before_anything_is_done(client, carrier):
    # given a carrier that is down for every request
    shipment = new_shipment(client, "ord-503-1")
    control(carrier, server_error_rate=1.0)

    # when a buy is sent, then the client raises ServiceUnavailableError and nothing was bought
    with pytest.raises(ServiceUnavailableError):
        client.shipment.buy(shipment.id, rate=rate_of(shipment))
    control(carrier, reset=True)
    assert client.shipment.retrieve(shipment.id).postage_label is None
    assert "ord-503-1" not in ledger(carrier)["purchases_by_reference"]


# --- trackers and webhooks -----------------------------------------------------------------------------------


def test_tracker_updated_webhooks_arrive_in_order_and_verify_with_the_official_helper(client, receiver):
    # when a label is bought and the compressed clock runs
    tracker_id = bought(client, "ord-track-1").tracker.id
    statuses = eventually(lambda: (s := receiver.statuses(tracker_id)) and s[-1] == "delivered" and s)

    # then tracker.updated events arrived pre_transit -> in_transit -> out_for_delivery -> delivered
    assert statuses == ["pre_transit", "in_transit", "in_transit", "out_for_delivery", "delivered"]
    for body, headers in receiver.accepted_events(tracker_id):
        assert "X-Hmac-Signature" in headers  # sent with EasyPost's capitalisation
        event = validate_webhook(body, headers, SECRET)
        assert event["object"] == "Event" and event["description"] == "tracker.updated"
        assert event["id"].startswith("evt_") and event["result"]["object"] == "Tracker"
        with pytest.raises(SignatureVerificationError):
            validate_webhook(body, headers, "whsec_someone_else")

    # and the tracker, retrieved, tells the same story
    tracker = client.tracker.retrieve(tracker_id)
    assert tracker.status == "delivered" and len(tracker.tracking_details) == 5
    assert client.shipment.retrieve(tracker.shipment_id).status == "delivered"


def test_the_signature_is_hmac_sha256_of_the_raw_body_keyed_by_the_nfkd_secret():
    # given a secret that NFKD normalisation changes (a ligature) and a body
    secret, body = "whsec_\ufb01ne", b'{"id":"evt_1","object":"Event"}'

    # when the sim signs it, then the official helper accepts it under the same secret
    headers = {"X-Hmac-Signature": sim.sign_webhook(body, secret)}
    assert validate_webhook(body, headers, secret)["id"] == "evt_1"
    assert headers["X-Hmac-Signature"].startswith("hmac-sha256-hex=")


def test_refused_webhooks_are_retried_until_accepted(client, carrier, receiver):
    # given an endpoint that refuses the next two deliveries
    before = ledger(carrier)["webhooks"]
    with receiver.lock:
        receiver.refuse_next = 2

    # when a parcel travels
    tracker_id = bought(client, "ord-retry-1").tracker.id

    # then all five scans arrive in the end, and the ledger counts the failed attempts
    statuses = eventually(lambda: len(s := receiver.statuses(tracker_id)) == 5 and s)
    assert sorted(statuses) == sorted(["pre_transit", "in_transit", "in_transit", "out_for_delivery", "delivered"])
    assert ledger(carrier)["webhooks"]["failed_attempts"] - before["failed_attempts"] >= 2


@pytest.mark.parametrize(("fate", "final"), [("return_to_sender", "return_to_sender"), ("failure", "failure"),
                                             ("lost", "pre_transit")])
def test_an_order_can_be_steered_to_a_bad_end(client, carrier, receiver, fate, final):
    # given a fate set for one order reference, next to an ordinary parcel bought after it
    reference = f"ord-fate-{fate}"
    control(carrier, fates_by_reference={reference: fate})
    steered = bought(client, reference).tracker.id
    ordinary = bought(client, f"{reference}-neighbour").tracker.id

    # when the ordinary parcel has been delivered
    assert eventually(lambda: client.tracker.retrieve(ordinary).status == "delivered")

    # then the steered one ended as told; a lost parcel was scanned once and never again
    tracker = client.tracker.retrieve(steered)
    assert tracker.status == final
    assert eventually(lambda: receiver.statuses(steered) and receiver.statuses(steered)[-1] == final)
    if fate == "lost":
        assert len(tracker.tracking_details) == 1 and receiver.statuses(steered) == ["pre_transit"]


def test_fate_rates_apply_to_every_parcel_when_set_to_one(client, carrier):
    # given every parcel is to fail
    control(carrier, failure_rate=1.0)

    # when two parcels travel, then both fail
    ids = [bought(client, f"ord-rate-{i}").tracker.id for i in range(2)]
    assert eventually(lambda: all(client.tracker.retrieve(i).status == "failure" for i in ids))


def test_an_unverified_undeliverable_address_comes_back_to_the_sender(client):
    # when a label is bought for an address nobody verified, which the carrier cannot find
    shipment = new_shipment(client, "ord-unverified-1", to_address={**CUSTOMER, "street1": "9 Nowhere Rd"})
    tracker_id = client.shipment.buy(shipment.id, rate=rate_of(shipment)).tracker.id

    # then the parcel is returned
    assert eventually(lambda: client.tracker.retrieve(tracker_id).status == "return_to_sender")


def test_duplicate_webhooks_repeat_the_same_event_byte_for_byte(client, carrier, receiver):
    # given every event is to be delivered twice
    control(carrier, webhook_duplicate_rate=1.0)

    # when a parcel travels
    tracker_id = bought(client, "ord-dup-1").tracker.id
    events = eventually(lambda: len(e := receiver.accepted_events(tracker_id)) == 10 and e)

    # then each event id arrives twice, with the identical signed body
    bodies = [body for body, _ in events]
    assert all(bodies.count(body) == 2 for body in bodies)
    assert len({json.loads(body)["id"] for body in bodies}) == 5


def test_out_of_order_webhooks_deliver_an_older_scan_after_a_newer_one(client, carrier, receiver):
    # given every event that can be held back is held until the next one has gone
    control(carrier, webhook_out_of_order_rate=1.0)

    # when a parcel travels
    tracker_id = bought(client, "ord-ooo-1").tracker.id
    events = eventually(lambda: len(e := receiver.accepted_events(tracker_id)) == 5 and e)

    # then pre_transit arrives after the first in_transit, and nothing is lost
    statuses = [json.loads(body)["result"]["status"] for body, _ in events]
    assert statuses[:2] == ["in_transit", "pre_transit"] and statuses[-1] == "delivered"
    assert ledger(carrier)["webhooks"]["reordered_injected"] >= 2


def test_control_refuses_unknown_or_impossible_knobs(carrier):
    # when the control endpoint is given a typo or an impossible value, then nothing changes
    for body in ({"retrun_to_sender_rate": 0.5}, {"failure_rate": 2}, {"buy_timeout_mode": "explode"}):
        response = httpx.post(f"{carrier.url}/sim/control", json=body)
        assert response.status_code == 422, body
    assert httpx.get(f"{carrier.url}/sim/control").json()["config"]["faults"]["failure_rate"] == 0.0
    assert httpx.get(f"{carrier.url}/healthz").json()["ok"] is True


def test_the_command_line_builds_the_config_it_was_given():
    # when the documented command line is parsed
    args = sim._parser().parse_args([
        "--port", "8200", "--webhook-url", "http://127.0.0.1:8000/webhooks/carrier/easypost",
        "--webhook-secret", "whsec_dev_easypost", "--time-scale", "3600",
        "--return-to-sender-rate", "0.05", "--buy-timeout-mode", "drop",
    ])
    config = sim.config_from_args(args)

    # then the config carries it
    assert config.webhook_url.endswith("/webhooks/carrier/easypost") and config.time_scale == 3600
    assert config.faults.return_to_sender_rate == 0.05 and config.faults.buy_timeout_mode is sim.TimeoutMode.DROP
