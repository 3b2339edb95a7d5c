"""Order intake through the real API on SQLite: accepted atomically, or refused with every field named."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from db import tables as t
from tests.conftest import png_bytes


def count(api, table) -> int:
    with api.services.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def errors_of(response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["code"] for e in response.json()["errors"]}


def test_a_valid_order_is_accepted_with_its_timeline_jobs_reservation_and_render_message(api):
    # given an uploaded artwork
    art = api.upload()
    # when the storefront sends an order for two shirts
    body = api.order_body(art["id"])
    body["lines"][0]["quantity"] = 2
    response = api.client.post("/v1/orders", json=body)
    # then it is accepted
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "accepted" and order["number"].startswith("PR-")
    assert order["total_cents"] == 2 * 2400
    with api.services.engine.connect() as conn:
        events = conn.execute(select(t.order_events.c.type).where(t.order_events.c.order_id == order["id"])).all()
        jobs = conn.scalar(select(func.count()).where(t.print_jobs.c.order_id == order["id"]))
        reserved = conn.scalar(select(func.sum(t.stock_reservations.c.quantity))
                               .where(t.stock_reservations.c.order_id == order["id"]))
    assert [e.type for e in events] == ["order.received"]
    assert jobs == 2 and reserved == 2
    # and the render stage's message is on its queue, carrying only the id
    [message] = api.queued("render")
    decoded = json.loads(message)
    assert decoded["actor_name"] == "render.render_asset" and decoded["kwargs"] == {"order_id": order["id"]}


def test_same_idempotency_key_and_body_returns_the_first_response_and_records_one_order(api):
    art = api.upload()
    body = api.order_body(art["id"])
    first = api.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-1"})
    again = api.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert count(api, t.orders) == 1 and len(api.queued()) == 1


def test_same_idempotency_key_with_another_body_is_a_conflict_and_records_nothing(api):
    art = api.upload()
    api.client.post("/v1/orders", json=api.order_body(art["id"], external_id="A-1"), headers={"Idempotency-Key": "k"})
    clash = api.client.post("/v1/orders", json=api.order_body(art["id"], external_id="A-2"),
                            headers={"Idempotency-Key": "k"})
    assert clash.status_code == 409 and clash.json()["type"].endswith("idempotency-conflict")
    assert count(api, t.orders) == 1


def test_without_a_key_a_repeated_channel_and_external_id_returns_the_same_order(api):
    art = api.upload()
    body = api.order_body(art["id"], external_id="SF-42")
    first = api.client.post("/v1/orders", json=body)
    again = api.client.post("/v1/orders", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and count(api, t.orders) == 1


@pytest.mark.parametrize(("change", "field", "code"), [
    (lambda b: b["lines"][0].update(sku="TEE-NOPE"), "lines[0].sku", "unknown_sku"),
    (lambda b: b["lines"][0].update(quantity=0), "lines[0].quantity", "quantity_out_of_range"),
    (lambda b: b["lines"][0].update(quantity=1000), "lines[0].quantity", "quantity_out_of_range"),
    (lambda b: b["lines"][0].update(texts={"headline": "x" * 31}), "lines[0].texts.headline", "text_too_long"),
    (lambda b: b["lines"][0].update(texts={"headline": "<script>"}), "lines[0].texts.headline", "text_characters"),
    (lambda b: b["lines"][0].update(texts={"headline": "S h 1 t happens"}), "lines[0].texts.headline",
     "prohibited_word"),
    (lambda b: b["lines"][0].update(texts={"back": "hi"}), "lines[0].texts.back", "unknown_text_slot"),
    (lambda b: b["lines"][0].update(artwork_id=None), "lines[0].artwork_id", "artwork_missing"),
    (lambda b: b["lines"][0].update(artwork_id="art_missing"), "lines[0].artwork_id", "artwork_unknown"),
    (lambda b: b["shipping_address"].update(city=""), "shipping_address.city", "address_incomplete"),
    (lambda b: b["shipping_address"].update(postal_code=" "), "shipping_address.postal_code", "address_incomplete"),
    (lambda b: b["customer"].update(email="not-an-email"), "customer.email", "invalid"),
])
def test_each_rule_refuses_with_its_field_and_code_and_records_nothing(api, change, field, code):
    art = api.upload()
    body = api.order_body(art["id"])
    change(body)
    response = api.client.post("/v1/orders", json=body)
    assert response.status_code == 422, response.text
    assert errors_of(response).get(field) == code
    assert all(e["message"] for e in response.json()["errors"])
    assert count(api, t.orders) == 0 and count(api, t.stock_reservations) == 0 and api.queued() == []
    with api.services.engine.connect() as conn:
        assert code in set(conn.scalars(select(t.intake_rejections.c.code)))


def test_every_failing_field_is_listed_at_once(api):
    body = api.order_body("art_missing")
    body["lines"][0].update(sku="TEE-DTG-BLK-M", quantity=0, texts={"headline": "fück this"})
    body["shipping_address"]["city"] = ""
    fields = errors_of(api.client.post("/v1/orders", json=body))
    assert fields == {"lines[0].quantity": "quantity_out_of_range", "lines[0].texts.headline": "prohibited_word",
                      "lines[0].artwork_id": "artwork_unknown", "shipping_address.city": "address_incomplete"}


def test_artwork_too_small_for_the_print_area_is_refused_with_the_dpi_it_would_print_at(api):
    small = api.upload(png_bytes(600, 600))
    response = api.client.post("/v1/orders", json=api.order_body(small["id"]))
    assert errors_of(response) == {"lines[0].artwork_id": "artwork_resolution_too_low"}
    assert "44 DPI" in response.json()["errors"][0]["message"]


def test_a_sku_out_of_stock_at_every_active_partner_is_refused(api):
    art = api.upload()
    with api.services.engine.begin() as conn:
        conn.execute(update(t.partner_stock).where(t.partner_stock.c.sku == "TEE-DTG-BLK-M").values(on_hand=0))
    response = api.client.post("/v1/orders", json=api.order_body(art["id"]))
    assert errors_of(response) == {"lines[0].sku": "out_of_stock"}


def test_stock_at_an_inactive_partner_does_not_count(api):
    art = api.upload()
    with api.services.engine.begin() as conn:
        holders = conn.scalars(select(t.partner_stock.c.partner_id).where(t.partner_stock.c.sku == "TEE-DTG-BLK-M"))
        conn.execute(update(t.partners).where(t.partners.c.id.in_(list(holders))).values(active=False))
    assert errors_of(api.client.post("/v1/orders", json=api.order_body(art["id"]))) == {
        "lines[0].sku": "out_of_stock"}


def test_a_declined_payment_records_nothing(api):
    art = api.upload()
    response = api.client.post("/v1/orders", json=api.order_body(art["id"], external_id="decline-me"))
    assert response.status_code == 402 and response.json()["type"].endswith("payment-declined")
    assert count(api, t.orders) == 0 and count(api, t.stock_reservations) == 0


def test_a_malformed_body_gets_field_level_problems(api):
    response = api.client.post("/v1/orders", json={"external_id": 5, "lines": "nope"})
    assert response.status_code == 422
    fields = errors_of(response)
    assert fields["customer"] == "required" and fields["lines"] == "invalid"


def test_customer_pii_is_not_stored_in_plain_text(api, seeded_sqlite):
    art = api.upload()
    api.client.post("/v1/orders", json=api.order_body(art["id"]))
    api.services.engine.dispose()
    path = Path(seeded_sqlite.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    for secret in (b"ada@example.com", b"Ada Lovelace", b"Marylebone", b"7946 0958"):
        assert secret not in raw


def test_artwork_is_normalised_stored_and_described(api):
    art = api.upload(png_bytes(2400, 1800))
    assert (art["width"], art["height"], art["format"]) == (2400, 1800, "PNG")
    stored = api.services.store.get(f"artwork/{art['id']}.png")
    assert hashlib.sha256(stored).hexdigest() == art["sha256"]


@pytest.mark.parametrize(("data", "code"), [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "unsupported_format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_format"),
    (b"%PDF-1.7\n1 0 obj<<>>endobj\n", "unsupported_format"),
    (png_bytes(100, 100)[:60], "truncated"),
    (b"", "empty_file"),
])
def test_hostile_uploads_are_refused_with_a_specific_code_and_nothing_is_stored(api, data, code):
    response = api.client.post("/v1/artwork", files={"file": ("innocent.png", data, "image/png")})
    assert response.status_code == 422
    assert errors_of(response) == {"file": code}
    assert count(api, t.artworks) == 0


def test_an_upload_larger_than_the_products_pixel_limit_is_refused_before_decoding(api):
    big = png_bytes(3000, 3000)
    response = api.client.post("/v1/artwork", files={"file": ("cap.png", big)}, data={"sku": "CAP-EMB-BLK"})
    assert response.status_code == 422 and errors_of(response) == {"file": "too_many_pixels"}


def shopify_payload(artwork_id: str, order_id: int = 820982911946154508) -> dict:
    return {"id": order_id, "name": "#1001", "email": "bob@example.com", "phone": "+1 555 0100",
            "customer": {"first_name": "Bob", "last_name": "Norman", "email": "bob@example.com"},
            "shipping_address": {"first_name": "Bob", "last_name": "Norman", "address1": "Chestnut Street 92",
                                 "city": "Louisville", "province_code": "KY", "zip": "40202", "country_code": "US"},
            "shipping_lines": [{"code": "express", "title": "Express"}],
            "line_items": [{"sku": "MUG-SUB-11OZ-WHT", "quantity": 1,
                            "properties": [{"name": "_artwork_id", "value": artwork_id},
                                           {"name": "text:name", "value": "Bob"}]}]}


def signed(api, payload: dict, webhook_id: str = "wh-1", secret: str | None = None) -> dict:
    raw = json.dumps(payload).encode()
    key = (secret or api.services.settings.shopify_webhook_secret).encode()
    digest = base64.b64encode(hmac.new(key, raw, hashlib.sha256).digest()).decode()
    return {"content": raw, "headers": {"X-Shopify-Hmac-Sha256": digest, "X-Shopify-Webhook-Id": webhook_id,
                                        "Content-Type": "application/json"}}


def test_a_signed_shopify_order_is_accepted_with_properties_mapped(api):
    art = api.upload()
    response = api.client.post("/webhooks/shopify/orders-create", **signed(api, shopify_payload(art["id"])))
    assert response.status_code == 201, response.text
    with api.services.engine.connect() as conn:
        row = conn.execute(select(t.orders.c.channel, t.orders.c.shipping_speed)).one()
        texts = conn.scalar(select(t.order_lines.c.texts))
    assert (row.channel, str(row.shipping_speed)) == ("shopify", "express") and texts == {"name": "Bob"}


def test_a_repeated_shopify_delivery_returns_the_same_order(api):
    art = api.upload()
    first = api.client.post("/webhooks/shopify/orders-create", **signed(api, shopify_payload(art["id"])))
    again = api.client.post("/webhooks/shopify/orders-create", **signed(api, shopify_payload(art["id"])))
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    assert count(api, t.orders) == 1


@pytest.mark.parametrize("tamper", ["wrong-secret", "body", "missing"])
def test_a_forged_shopify_webhook_is_refused_before_anything_is_stored(api, tamper):
    art = api.upload()
    request = signed(api, shopify_payload(art["id"]), secret="not-the-secret" if tamper == "wrong-secret" else None)
    if tamper == "body":
        request["content"] = request["content"].replace(b"Bob", b"Eve")
    if tamper == "missing":
        del request["headers"]["X-Shopify-Hmac-Sha256"]
    response = api.client.post("/webhooks/shopify/orders-create", **request)
    assert response.status_code in (401, 422)
    assert count(api, t.webhook_inbox) == 0 and count(api, t.orders) == 0


def test_health_reports_the_database_and_openapi_is_published(api):
    assert api.client.get("/healthz").json()["database"] == "ok"
    spec = api.client.get("/openapi.json").json()
    assert {"/v1/orders", "/v1/artwork", "/webhooks/shopify/orders-create", "/healthz"} <= set(spec["paths"])


def test_a_nul_character_anywhere_is_a_field_problem_not_a_server_error(api):
    # PostgreSQL refuses to store NUL; the battery's fuzzing found it as a 500 (issue 8).
    art = api.upload()
    order = api.client.post("/v1/orders", json=api.order_body(art["id"], external_id="SF-\x00-1"))
    text_nul = api.client.post("/v1/orders", json=api.order_body(
        art["id"], lines=[{"sku": "TEE-DTG-BLK-M", "quantity": 1, "artwork_id": art["id"],
                           "texts": {"headline": "Best\x00Dad"}}]))
    upload = api.client.post("/v1/artwork", files={"file": ("a.png", png_bytes(3000, 3000), "image/png")},
                             data={"sku": "TEE\x00"})
    shop = api.client.post("/webhooks/shopify/orders-create",
                           **signed(api, {**shopify_payload(art["id"]), "email": "bob\x00@example.com"}))

    assert (order.status_code, text_nul.status_code, upload.status_code, shop.status_code) == (422, 422, 422, 422)
    assert errors_of(order) == {"external_id": "invalid"} and errors_of(upload) == {"sku": "invalid"}
    assert "lines[0].texts" in errors_of(text_nul)
    assert count(api, t.orders) == 0 and count(api, t.webhook_inbox) == 0


def test_a_webhook_without_its_signature_header_is_refused_and_logged(api, caplog):
    with caplog.at_level(logging.WARNING, logger="api.problems"):
        response = api.client.post("/webhooks/partners/acme-columbus", content=b'{"event_id": "evt_1"}',
                                   headers={"Content-Type": "application/json", "X-Partner-Event-Id": "evt_1"})

    assert response.status_code == 422 and count(api, t.webhook_inbox) == 0
    assert "webhook refused: malformed POST /webhooks/partners/acme-columbus" in caplog.text


def test_while_the_database_is_unreachable_an_order_gets_a_503_problem_with_retry_after(tmp_path, caplog):
    # given the API with its database down (nothing listens on port 9)
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.conftest import ApiHarness

    down = ApiHarness("postgresql+psycopg2://postgres@127.0.0.1:9/test", tmp_path)
    client = TestClient(create_app(down.services), raise_server_exceptions=False)
    # when a storefront sends an order
    order = client.post("/v1/orders", json=down.order_body("art_1"), headers={"Idempotency-Key": "k-1"})
    # then it gets a problem saying when to try again (the storefront retries with the same key), not a 500
    assert order.status_code == 503 and order.headers["retry-after"] == "5"
    assert order.headers["content-type"] == "application/problem+json"
    assert order.json()["title"] == "Service unavailable" and "again" in order.json()["detail"]
    assert "database unavailable for POST /v1/orders" in caplog.text
    # and the health check says the database is down
    assert client.get("/healthz").status_code == 503
