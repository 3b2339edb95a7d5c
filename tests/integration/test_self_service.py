"""Customer self-service over HTTP: the signed link from the e-mail opens the order's page; before the production
gate the customer changes text (re-rendered), address (verified by the carrier sim) or cancels; after it, edits
are refused and a change request lands in support's exception inbox. The cancel race runs on PostgreSQL against
the partner sim."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from urllib.parse import urlsplit

import httpx
import pytest
from dramatiq import Message
from sqlalchemy import select

from adapters.email import SmtpMailer
from adapters.sms import HttpSms
from api.main import create_app
from core.events import Noted
from core.notifications import Channel, Milestone, customer_link, notification_links
from core.services.notify import send_notification
from core.services.production import ProductionRules, batch_ready_jobs, route_order
from core.services.render import render_order
from core.signing import signed_customer_path
from core.states import HoldReason, OrderStatus
from db import tables as t
from sims.carrier import BackgroundServer, CarrierSimConfig
from sims.smtp_sink import SmtpSink
from tests.conftest import ApiHarness
from tests.integration.production_helpers import (
    DESTINATIONS,
    release_to_partners,
    serve,
    serve_sim,
    submit_all,
)
from tests.unit.test_render_stage import place, render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
US_ADDRESS = {"name": "Grace Hopper", "line1": "350 5th Ave", "line2": "", "city": "New York", "region": "NY",
              "postal_code": "10118", "country": "US"}


# ---- the world: the carrier sim, the API, and a customer with a browser ------------------------------------------


@pytest.fixture(scope="module")
def carrier_sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(CarrierSimConfig(webhook_url=None, seed=3)) as server:
        yield server


@pytest.fixture
def site(seeded_sqlite, tmp_path, carrier_sim) -> Iterator[ApiHarness]:
    """The real API on SQLite, checking addresses with the carrier sim over HTTP."""
    harness = ApiHarness(seeded_sqlite, tmp_path, easypost_api_base=carrier_sim.api_base)
    yield harness
    harness.services.engine.dispose()


class Customer:
    """What a customer's browser does: open the link from the e-mail, send the page's forms."""

    def __init__(self, api: ApiHarness) -> None:
        self.api = api
        self.client = api.client

    def link(self, order_id: str) -> str:
        """The path of the link in the order's e-mails."""
        url = customer_link(self.api.services.settings, order_id, now=self.api.services.now())
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"

    def token(self, order_id: str) -> str:
        return self.link(order_id).split("t=", 1)[1]

    def open(self, order_id: str) -> httpx.Response:
        return self.client.get(self.link(order_id))

    def send(self, order_id: str, action: str, *, token: str | None = None, follow: bool = True,
             **fields: str) -> httpx.Response:
        """Submit one of the page's forms (the token rides in it, as the page puts it there)."""
        page = self.open(order_id)
        data = {"t": self.token(order_id) if token is None else token, **fields}
        if action == "change-request" and "request_id" not in data:
            data["request_id"] = re.search(r'name="request_id" value="([0-9a-f]+)"', page.text).group(1)
        return self.client.post(f"/orders/{order_id}/{action}", data=data, follow_redirects=follow)


@pytest.fixture
def customer(site) -> Customer:
    return Customer(site)


def text_of(response: httpx.Response, element_id: str) -> str:
    """The visible text of the element with that id (whitespace folded), or "" when the page has none."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(section|p|ol|div|h1)>', response.text, re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split()) if found else ""


def queued(api, queue: str) -> list[Message]:
    return [Message.decode(data) for data in api.queued(queue)]


def order_row(api, order_id: str):
    with api.services.engine.connect() as conn:
        return conn.execute(select(t.orders).where(t.orders.c.id == order_id)).one()


def jobs(api, order_id: str) -> list:
    j = t.print_jobs
    with api.services.engine.connect() as conn:
        return conn.execute(select(j.c.id, j.c.status, j.c.batch_id, j.c.partner_id, j.c.partner_job_id)
                            .where(j.c.order_id == order_id).order_by(j.c.id)).all()


def events(api, order_id: str, kind: str | None = None) -> list:
    e = t.order_events
    query = select(e.c.type, e.c.source, e.c.payload).where(e.c.order_id == order_id).order_by(e.c.id)
    with api.services.engine.connect() as conn:
        return [r for r in conn.execute(query) if kind is None or r.type == kind]


def reserved(api) -> int:
    with api.services.engine.connect() as conn:
        return sum(conn.scalars(select(t.partner_stock.c.reserved)))


def advance(api, order_id: str, *statuses: OrderStatus) -> None:
    with api.services.uow() as uow:
        order = uow.orders.get(order_id)
        for status in statuses:
            order.advance(status, at=api.services.now(), source="worker:test")
        uow.commit()


def past_gate(api, order_id: str) -> None:
    advance(api, order_id, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION)


def route_and_batch(api, order_id: str) -> None:
    svc = api.services
    assert render(api, order_id) == "rendered"
    assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=ProductionRules()) == "routed"
    batch_ready_jobs(svc.uow(), now=svc.now(), rules=ProductionRules(), new_id=svc.ids.new)


# ---- the done-when: cancel before the gate, and not after it ---------------------------------------------------


def test_a_customer_cancels_through_the_link_before_the_gate_and_cannot_after_it(site, customer, redis_url):
    svc = site.services
    with serve_sim() as partner_sim:
        # given one order sent to the print partner over HTTP (past the production gate)
        late = place(site, sku="TEE-DTG-BLK-M", texts={"headline": "Best Dad Ever"})
        submit_all(svc, release_to_partners(svc, [late]), partner_sim)
        assert order_row(site, late).status == OrderStatus.IN_PRODUCTION
        # and one whose design is ready and waiting in a batch (before the gate)
        early = place(site)
        route_and_batch(site, early)
        stock_before_cancel = reserved(site)

        # when the customer opens the early order's link, it offers to cancel, with the time production starts
        page = customer.open(early)
        assert page.status_code == 200
        assert "until production starts (expected around" in text_of(page, "editable")
        assert 'id="cancel"' in page.text

        # and cancels
        done = customer.send(early, "cancel", reason="ordered the wrong mug")

        # then the page says so, and the order is cancelled, its blank free, its payment voided
        assert done.status_code == 200 and done.history[0].status_code == 303
        assert "Your order is cancelled" in text_of(done, "notice")
        assert "This order was cancelled." in text_of(done, "headline")
        assert 'id="cancel"' not in done.text
        assert order_row(site, early).status == OrderStatus.CANCELLED
        assert [j.status for j in jobs(site, early)] == ["cancelled"]
        assert reserved(site) == stock_before_cancel - 1
        assert order_row(site, early).payment_authorization in site.payments.voided
        [cancelled] = events(site, early, "order.cancelled")
        assert cancelled.source == "customer" and "ordered the wrong mug" in cancelled.payload["reason"]

        # when the customer opens the late order's link, it says production started and offers no cancel
        page = customer.open(late)
        assert "already in production" in text_of(page, "editable")
        assert "Production started on" in text_of(page, "editable")
        assert 'id="cancel"' not in page.text and 'id="change-request"' in page.text

        # and a cancel sent anyway (an old tab) is refused with the sentence, changing nothing
        refused = customer.send(late, "cancel")
        assert refused.status_code == 409
        assert "already in production and can no longer be cancelled" in text_of(refused, "error")
        assert order_row(site, late).status == OrderStatus.IN_PRODUCTION
        assert {j.status for j in jobs(site, late)} == {"submitted"}
        assert order_row(site, late).payment_authorization not in site.payments.voided
        truth = httpx.get(f"{partner_sim}/sim/truth/jobs/{jobs(site, late)[0].id}", timeout=5)
        assert truth.status_code == 200  # the partner still has the job


def test_a_second_cancel_says_the_order_is_already_cancelled(site, customer):
    order_id = place(site)
    assert customer.send(order_id, "cancel").status_code == 200
    lines = len(events(site, order_id))

    again = customer.send(order_id, "cancel")

    assert again.status_code == 200
    assert text_of(again, "notice") == "This order was already cancelled; nothing more to do."
    assert len(events(site, order_id)) == lines


# ---- the link arrives by e-mail --------------------------------------------------------------------------------


def test_the_link_in_a_real_e_mail_opens_the_order_page(site, customer):
    # given the order-received e-mail, sent over SMTP to the sink as the notify worker sends it
    order_id = place(site)
    svc = site.services
    with SmtpSink() as sink:
        mailer = SmtpMailer("127.0.0.1", sink.smtp_port, "Pressroom <orders@pressroom.dev>")
        sms = HttpSms("http://127.0.0.1:9", "unused")
        assert send_notification(order_id, Milestone.RECEIVED, Channel.EMAIL, uow=svc.uow(), mailer=mailer,
                                 sms=sms, links=notification_links(svc.settings, now=svc.now()),
                                 now=svc.now) == "sent"
        [summary] = httpx.get(f"{sink.http_url}/messages", timeout=5).json()
        mail = httpx.get(f"{sink.http_url}/messages/{summary['id']}", headers={"Accept": "application/json"},
                         timeout=5).json()
        sms.close()

    # when the customer follows the link in its text part and its button
    [in_text] = re.findall(r"https?://\S+/orders/\S+", mail["text"])
    [in_html] = re.findall(r'href="(https?://[^"]+/orders/[^"]+)"', mail["html"])
    assert unescape(in_html) == in_text
    parts = urlsplit(in_text)
    page = site.client.get(f"{parts.path}?{parts.query}")

    # then the page is that order's, with the forms that still apply
    assert page.status_code == 200
    assert order_row(site, order_id).number in page.text and 'id="cancel"' in page.text


# ---- links that must not open anything --------------------------------------------------------------------------


def test_an_expired_link_gets_a_403_page_that_says_so_and_changes_nothing(site, customer):
    order_id = place(site)
    settings = site.services.settings
    old = signed_customer_path(settings.customer_link_secret, order_id,
                               expires=int((site.services.now() - timedelta(minutes=1)).timestamp()))

    page = site.client.get(old)
    cancel = customer.send(order_id, "cancel", token=old.split("t=", 1)[1])

    for response in (page, cancel):
        assert response.status_code == 403
        assert "This link has expired" in text_of(response, "reason")
        assert "Ada" not in response.text and order_id not in response.text
    assert order_row(site, order_id).status == OrderStatus.ACCEPTED


@pytest.mark.parametrize("tamper", ["signature", "expiry", "other_order", "missing"])
def test_a_tampered_link_gets_a_403_page_and_changes_nothing(site, customer, tamper):
    order_id, other = place(site), place(site)
    token = customer.token(order_id)
    expires, signature = token.split(".", 1)
    forged = {"signature": f"{expires}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
              "expiry": f"{int(expires) + 86400 * 365}.{signature}",
              "other_order": customer.token(other),
              "missing": ""}[tamper]

    page = site.client.get(f"/orders/{order_id}", params={"t": forged} if forged else None)
    cancel = customer.send(order_id, "cancel", token=forged)
    text = customer.send(order_id, "text", token=forged, line_no="1", **{"text.name": "Bob"})

    for response in (page, cancel, text):
        assert response.status_code == 403
        assert "This link is not valid" in text_of(response, "reason")
    assert order_row(site, order_id).status == OrderStatus.ACCEPTED
    assert site.payments.voided == set()


def test_a_signed_link_to_an_order_we_do_not_have_is_a_404(site):
    secret = site.services.settings.customer_link_secret
    path = signed_customer_path(secret, "ord_gone", expires=int(site.services.now().timestamp()) + 60)

    page = site.client.get(path)

    assert page.status_code == 404
    assert "We can't find this order" in text_of(page, "reason")


def test_changes_are_post_only_and_the_page_is_never_cached_or_framed(site, customer):
    order_id = place(site)
    assert site.client.get(f"/orders/{order_id}/cancel", params={"t": customer.token(order_id)}).status_code == 405
    page = customer.open(order_id)
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    # every form carries the signed token, since no cookie does
    forms = re.findall(r"<form method=\"post\".*?</form>", page.text, re.S)
    assert forms and all(f'name="t" value="{customer.token(order_id)}"' in form for form in forms)
    assert order_row(site, order_id).status == OrderStatus.ACCEPTED


# ---- new custom text --------------------------------------------------------------------------------------------


def test_new_text_is_checked_saved_and_the_design_rendered_again(site, customer):
    # given an order whose design is ready and whose job waits in a batch
    order_id = place(site)
    route_and_batch(site, order_id)
    with site.services.engine.connect() as conn:
        old_asset = conn.scalar(select(t.order_lines.c.asset_id).where(t.order_lines.c.order_id == order_id))

    # when the customer changes the mug's name
    done = customer.send(order_id, "text", line_no="1", **{"text.name": "Grace"})

    # then the page thanks them, the order goes back to rendering, its job leaves the batch and is unrouted
    assert done.status_code == 200
    assert "the new text is saved" in text_of(done, "notice")
    assert order_row(site, order_id).status == OrderStatus.RENDERING
    [job] = jobs(site, order_id)
    assert (job.status, job.batch_id, job.partner_id) == ("pending", None, None)
    assert [(m.actor_name, m.kwargs) for m in queued(site, "render")][-1] == ("render.render_asset",
                                                                            {"order_id": order_id})
    [changed] = events(site, order_id, "customer.text_changed")
    assert changed.source == "customer" and changed.payload["after"] == {"name": "Grace"}

    # when the render stage takes the message, a new design with the new text is made and routed again
    svc = site.services
    assert render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter) == "rendered"
    with svc.engine.connect() as conn:
        line = conn.execute(select(t.order_lines).where(t.order_lines.c.order_id == order_id)).one()
    assert line.texts == {"name": "Grace"} and line.asset_id != old_asset
    assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=ProductionRules()) == "routed"
    assert "You changed the text of item 1" in text_of(customer.open(order_id), "timeline")


@pytest.mark.parametrize(("text", "expected"), [
    ("A name far too long for a mug", 'Keep "name" to 20 characters (you have 29).'),
    ("Ada ☃", "can't be printed"),
    ("Shit happens", "contains a word we can't print"),
    ("sh1t", "contains a word we can't print"),
])
def test_text_that_breaks_a_rule_is_refused_with_the_reason_and_nothing_changes(site, customer, text, expected):
    order_id = place(site)
    render(site, order_id)

    refused = customer.send(order_id, "text", line_no="1", **{"text.name": text})

    assert refused.status_code == 422
    assert expected in unescape(refused.text)
    assert 'aria-invalid="true"' in refused.text and f'value="{text}"'.replace("'", "&#39;") in refused.text
    assert order_row(site, order_id).status == OrderStatus.READY_FOR_PRODUCTION
    assert events(site, order_id, "customer.text_changed") == []


def test_text_that_does_not_fit_the_product_is_refused(site, customer):
    # given a cap, whose embroidered text slot holds 12 characters but not 12 wide ones
    art = site.upload()["id"]
    body = site.order_body(art)
    body["lines"][0].update(sku="CAP-EMB-BLK", texts={"text": "Ada"})
    response = site.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]

    refused = customer.send(order_id, "text", line_no="1", **{"text.text": "WWWWWWWWWWWW"})

    assert refused.status_code == 422
    assert "doesn't fit on this product" in unescape(refused.text)


def test_text_cannot_change_while_the_design_is_being_prepared(site, customer):
    order_id = place(site)
    advance(site, order_id, OrderStatus.RENDERING)

    refused = customer.send(order_id, "text", line_no="1", **{"text.name": "Grace"})

    assert refused.status_code == 409
    assert "preparing the design" in text_of(refused, "error")


# ---- new address ------------------------------------------------------------------------------------------------


def test_an_address_the_carrier_verifies_is_saved_and_a_new_region_routes_the_order_again(site, customer):
    # given a London order routed to a partner and batched
    order_id = place(site)
    route_and_batch(site, order_id)

    # when the customer moves it to New York
    done = customer.send(order_id, "address", **US_ADDRESS)

    # then it is saved, and the job goes back to routing for a partner nearer New York
    assert done.status_code == 200 and "your order will go to the new address" in text_of(done, "notice")
    with site.services.uow() as uow:
        address = uow.orders.get(order_id).shipping_address
    assert (address.line1, address.city, address.country) == ("350 5th Ave", "New York", "US")
    [job] = jobs(site, order_id)
    assert (job.status, job.partner_id) == ("pending", None)
    assert [(m.actor_name, m.kwargs) for m in queued(site, "production")][-1] == ("production.route_order",
                                                                                {"order_id": order_id})
    [changed] = events(site, order_id, "customer.address_changed")
    assert changed.source == "customer" and changed.payload["rerouted"] is True
    assert "Hopper" not in str(changed.payload) and "5th" not in str(changed.payload)  # no PII on the timeline


def test_an_unverifiable_address_shows_the_field_errors_and_the_carriers_suggestion(site, customer):
    order_id = place(site)
    typo = US_ADDRESS | {"line1": "1 Main St", "city": "Boston", "region": "MA", "postal_code": "2134"}

    refused = customer.send(order_id, "address", **typo)

    # then the page names the field, offers the corrected postal code, keeps what was typed, changes nothing
    assert refused.status_code == 422
    assert "couldn't verify this address" in text_of(refused, "error")
    assert "Please check the postal code" in unescape(refused.text)
    assert 'id="address-postal_code" name="postal_code" value="2134"' in refused.text
    assert "02134" in text_of(refused, "suggestion")
    with site.services.uow() as uow:
        assert uow.orders.get(order_id).shipping_address.country == "GB"

    # when the customer takes the suggestion, it is verified and saved
    accepted = customer.send(order_id, "address", **(typo | {"postal_code": "02134"}))
    assert accepted.status_code == 200
    with site.services.uow() as uow:
        assert uow.orders.get(order_id).shipping_address.postal_code == "02134"


def test_an_address_the_carrier_cannot_find_is_refused_without_a_suggestion(site, customer):
    order_id = place(site)
    refused = customer.send(order_id, "address", **(US_ADDRESS | {"line1": "1 Nowhere Lane"}))
    assert refused.status_code == 422
    assert "The carrier can't find this address" in unescape(refused.text)
    assert 'id="suggestion"' not in refused.text


def test_a_blank_required_field_is_refused_before_asking_the_carrier(site, customer, carrier_sim):
    order_id = place(site)
    before = httpx.get(f"{carrier_sim.url}/sim/ledger", timeout=5).json()
    refused = customer.send(order_id, "address", **(US_ADDRESS | {"city": " "}))
    assert refused.status_code == 422
    assert "Please add the city to the address." in unescape(refused.text)
    assert httpx.get(f"{carrier_sim.url}/sim/ledger", timeout=5).json() == before


def test_when_the_carrier_cannot_be_reached_nothing_changes_and_the_customer_is_told(seeded_sqlite, tmp_path):
    site = ApiHarness(seeded_sqlite, tmp_path, easypost_api_base="http://127.0.0.1:9/v2", easypost_timeout_s=1)
    try:
        order_id = place(site)
        refused = Customer(site).send(order_id, "address", **US_ADDRESS)
        assert refused.status_code == 503
        assert "can't check addresses with the carrier right now" in text_of(refused, "error")
        with site.services.uow() as uow:
            assert uow.orders.get(order_id).shipping_address.country == "GB"
    finally:
        site.services.engine.dispose()


# ---- after the gate: refusals and change requests ---------------------------------------------------------------


def test_after_the_gate_edits_are_refused_and_a_change_request_lands_in_the_exception_inbox(site, customer):
    order_id = place(site)
    past_gate(site, order_id)
    page = customer.open(order_id)
    assert 'action="/orders/' + order_id + '/text"' not in page.text
    assert 'action="/orders/' + order_id + '/address"' not in page.text

    for action, fields in (("text", {"line_no": "1", "text.name": "Grace"}), ("address", US_ADDRESS),
                           ("cancel", {})):
        refused = customer.send(order_id, action, **fields)
        assert refused.status_code == 409, action
        assert "already in production" in text_of(refused, "error"), action

    # when the customer asks for a change instead (and the form is sent twice)
    request_id = "a1b2c3d4"
    done = customer.send(order_id, "change-request", message="Please make it a size L instead of M.",
                         request_id=request_id)
    again = customer.send(order_id, "change-request", message="Please make it a size L instead of M.",
                          request_id=request_id)

    # then support has one entry in the exception inbox, and the timeline one line from the customer
    assert "your change request is with our support team" in text_of(done, "notice")
    assert "We already have this change request" in text_of(again, "notice")
    with site.services.uow() as uow:
        [alert] = uow.alerts.open(kinds=["change_request"])
    assert alert["order_id"] == order_id and alert["key"] == f"{order_id}:{request_id}"
    assert alert["details"]["request"] == "Please make it a size L instead of M." and alert["details"]["past_gate"]
    assert "size L" in alert["message"]
    [line] = events(site, order_id, "customer.change_requested")
    assert line.source == "customer"
    assert order_row(site, order_id).status == OrderStatus.IN_PRODUCTION
    assert "You sent us a change request" in text_of(customer.open(order_id), "timeline")


def test_an_empty_change_request_is_refused_and_opens_nothing(site, customer):
    order_id = place(site)
    past_gate(site, order_id)
    refused = customer.send(order_id, "change-request", message="   ")
    assert refused.status_code == 422
    assert "Please tell us what you would like to change." in text_of(refused, "error")
    with site.services.uow() as uow:
        assert uow.alerts.open(kinds=["change_request"]) == []


# ---- what the page shows ------------------------------------------------------------------------------------------


def test_the_timeline_shows_customer_lines_only_and_nothing_of_staff_partners_or_other_customers(site, customer):
    # given an order with staff notes, routing and partner facts on its timeline, and another customer's order
    order_id = place(site)
    route_and_batch(site, order_id)
    body = site.order_body(site.upload()["id"], customer={"name": "Zelda Zimmerman", "email": "zelda@example.com"})
    assert site.client.post("/v1/orders", json=body).status_code == 201
    svc = site.services
    with svc.uow() as uow:
        uow.timeline.add(Noted(order_id=order_id, at=svc.now(), source="user:alice", kind="note.added",
                               key=f"note:{order_id}:1", details={"note": "customer sounds angry, offer 10%"}))
        uow.orders.get(order_id).hold(HoldReason.STAFF, at=svc.now(), source="user:alice",
                                      note="checking the artwork licence")
        uow.commit()

    page = customer.open(order_id)

    timeline = text_of(page, "timeline")
    assert "We received your order." in timeline and "Your design is ready for print." in timeline
    assert "paused while our team looks into something" in timeline
    for secret in ("alice", "angry", "licence", "Zelda", "zelda@", "routed", "acme", "partner_", "worker:",
                   "batch"):
        assert secret not in page.text, secret
    assert "paused while our team looks into it" in text_of(page, "editable")  # held: edits go through support


# ---- the race with the production gate, on PostgreSQL -----------------------------------------------------------


def test_a_cancel_racing_the_production_gate_ends_cancelled_before_it_or_refused_never_both(pg_url, redis_url,
                                                                                            tmp_path):
    # given orders rendered and routed on PostgreSQL, the partner sim, and the API serving customers over HTTP
    harness = ApiHarness(pg_url, tmp_path)
    svc = harness.services
    outcomes: dict[str, int] = {}
    try:
        art = harness.upload()["id"]
        order_ids = []
        for n in range(8):
            body = harness.order_body(art, shipping_address=DESTINATIONS[n % 2])
            response = harness.client.post("/v1/orders", json=body)
            assert response.status_code == 201, response.text
            order_ids.append(response.json()["id"])
        rules = ProductionRules()
        for order_id in order_ids:
            assert render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now,
                                clock=time.perf_counter) == "rendered"
            assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=rules) == "routed"
        assert batch_ready_jobs(svc.uow(), now=svc.now(), rules=rules, new_id=svc.ids.new) == []
        links = {order_id: Customer(harness).token(order_id) for order_id in order_ids}
        start = threading.Barrier(len(order_ids) + 1)
        jitter = random.Random(7)
        delays = {order_id: jitter.uniform(0, 2.0) for order_id in order_ids}

        with serve_sim() as partner_sim, serve(create_app(svc)) as api_url:
            def gate() -> None:  # the batcher releases every batch (they are old enough), then the gate
                start.wait()
                time.sleep(0.8)  # some cancels come before the release, some during it, some after
                later = svc.now() + rules.batching.max_wait + timedelta(seconds=1)
                submit_all(svc, batch_ready_jobs(svc.uow(), now=later, rules=rules, new_id=svc.ids.new),
                           partner_sim)

            def cancel(order_id: str) -> None:
                start.wait()
                time.sleep(delays[order_id])  # spread the cancels over the release and the submissions
                answer = httpx.post(f"{api_url}/orders/{order_id}/cancel", data={"t": links[order_id]},
                                    timeout=30)
                outcomes[order_id] = answer.status_code

            threads = [threading.Thread(target=gate)] + [threading.Thread(target=cancel, args=(o,))
                                                          for o in order_ids]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            # the batcher's next runs and the reconciler's re-drive find nothing left to send
            submit_all(svc, batch_ready_jobs(svc.uow(), now=svc.now() + timedelta(hours=1), rules=rules,
                                             new_id=svc.ids.new), partner_sim)

            # then every order ended one way or the other, and the partner agrees with us
            for order_id in order_ids:
                status = order_row(harness, order_id).status
                its_jobs = jobs(harness, order_id)
                at_partner = [httpx.get(f"{partner_sim}/sim/truth/jobs/{job.id}", timeout=5).status_code == 200
                              for job in its_jobs]
                auth = order_row(harness, order_id).payment_authorization
                if outcomes[order_id] == 303:
                    assert status == OrderStatus.CANCELLED, order_id
                    assert {j.status for j in its_jobs} == {"cancelled"} and not any(at_partner), order_id
                    assert auth in harness.payments.voided
                else:
                    assert outcomes[order_id] == 409, outcomes
                    assert status == OrderStatus.IN_PRODUCTION, order_id
                    assert {j.status for j in its_jobs} == {"submitted"} and all(at_partner), order_id
                    assert auth not in harness.payments.voided
        with svc.engine.connect() as conn:  # stock: exactly the cancelled orders' blanks came back
            states = dict(conn.execute(select(t.stock_reservations.c.order_id, t.stock_reservations.c.state)).all())
        assert {o for o, s in states.items() if s == "released"} == {o for o, c in outcomes.items() if c == 303}
    finally:
        svc.engine.dispose()
    print(f"cancel race outcomes: {sorted(outcomes.values())}")
