"""The API's OpenAPI document tells the truth: every refusal is a documented problem+json response, and what the
schema admits is what the rules accept (the schemathesis battery check fuzzes the same promises)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.schemas import EMAIL_PATTERN, MAX_QUANTITY, NO_NUL, NOT_BLANK, TEXT_MAX, TEXT_SLOT_NAME_MAX
from core.settings import Settings
from core.validation import EMAIL

# Characters where engines disagree about whitespace (\x1c-\x1f, \x85 are space to Python, not to ECMAScript),
# zero-width ones that are not whitespace, NUL, and a few ordinary ones.
TRICKY = ["", " ", "\t", "\n", "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b", "\x00", "a", "@", "."]
tricky_text = st.lists(st.sampled_from(TRICKY) | st.characters(), max_size=12).map("".join)


def problem_types(response) -> tuple[str, int]:
    return response.headers["content-type"], response.json()["status"]


def schema_admits(pattern: str, value: str) -> bool:
    """What a JSON Schema validator does with `pattern` (an unanchored search)."""
    return re.search(pattern, value) is not None


# ---- malformed bodies and the problem+json content type -------------------------------------------------------


def test_a_malformed_multipart_upload_is_a_documented_422_problem_naming_the_body(api):
    # given a multipart body whose parts have no Content-Disposition name
    body = b"--XyZ\r\n\xe6\xf3\xa0\xba\r\n--XyZ--\r\n"
    # when it is uploaded as artwork
    response = api.client.post("/v1/artwork", content=body,
                               headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    # then it is refused like any malformed body: 422 problem JSON on `body`, and the OpenAPI lists that response
    assert problem_types(response) == ("application/problem+json", 422)
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("body", "malformed")]
    documented = api.client.get("/openapi.json").json()["paths"]["/v1/artwork"]["post"]["responses"]
    assert list(documented["422"]["content"]) == ["application/problem+json"]


def test_every_refusal_the_openapi_documents_is_problem_json_with_the_problem_schema(api):
    # given the API's OpenAPI document
    schema = api.client.get("/openapi.json").json()
    # when every 4xx response of every operation is read
    refusals = {(path, method, status): response.get("content", {})
                for path, operations in schema["paths"].items() for method, operation in operations.items()
                for status, response in operation["responses"].items() if status.startswith("4")}
    # then each says application/problem+json, with the Problem schema, and nothing else
    assert refusals
    assert {key: list(content) for key, content in refusals.items()
            if list(content) != ["application/problem+json"]} == {}
    assert {c["application/problem+json"]["schema"]["$ref"] for c in refusals.values()} == {
        "#/components/schemas/ProblemOut"}


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("post", "/webhooks/partners/acme", {"content": b"{}", "headers": {"X-Partner-Signature": "sha256=00",
                                                                       "X-Partner-Event-Id": "e1"}}, 401),
    ("post", "/webhooks/carrier/easypost", {"content": b"{}"}, 401),
    ("post", "/v1/orders", {"json": {"lines": []}}, 422),
    ("get", "/v1/assets/a1/print.png", {"params": {"expires": 1, "sig": "x"}}, 403),
    ("get", "/v1/assets/a1/nope", {"params": {"expires": 1, "sig": "x"}}, 404),
])
def test_each_refusal_is_sent_as_problem_json_with_a_status_its_operation_documents(api, method, path, kwargs,
                                                                                     status):
    response = getattr(api.client, method)(path, **kwargs)
    assert problem_types(response) == ("application/problem+json", status)
    route = "/webhooks/partners/{partner_id}" if path.startswith("/webhooks/partners") else (
        "/v1/assets/{asset_id}/{file}" if path.startswith("/v1/assets") else path)
    documented = api.client.get("/openapi.json").json()["paths"][route][method]["responses"]
    assert "application/problem+json" in documented[str(status)]["content"]


# ---- the schema states core's rules ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tricky_text)
def test_a_required_text_field_is_schema_valid_exactly_when_core_finds_it_filled_in(value):
    core_accepts = bool(value.strip()) and "\x00" not in value  # Address.missing, the name and external id rules
    assert schema_admits(NOT_BLANK, value) == core_accepts


@settings(max_examples=300, deadline=None)
@given(tricky_text | st.builds("{}@{}.{}".format, tricky_text, tricky_text, tricky_text))
def test_an_email_is_schema_valid_exactly_when_core_accepts_it(value):
    core_accepts = EMAIL.match(value.strip()) is not None and "\x00" not in value
    assert schema_admits(EMAIL_PATTERN, value) == core_accepts


def test_no_character_above_the_schemas_whitespace_set_is_whitespace_to_python():
    assert not [hex(code) for code in range(0x3001, 0x110000) if chr(code).isspace()]


@pytest.mark.parametrize("value", ["", "anything", " \t", "\x85"])
def test_an_optional_text_field_refuses_only_nul(value):
    assert schema_admits(NO_NUL, value) and not schema_admits(NO_NUL, value + "\x00")


def test_the_line_rules_in_the_schema_are_cores(api):
    # given the OpenAPI document's order line and order
    components = api.client.get("/openapi.json").json()["components"]["schemas"]
    line, order = components["LineIn"], components["OrderIn"]
    # then the quantity range is core's, an artwork is required on every line, and an order has a line
    assert (line["properties"]["quantity"]["minimum"], line["properties"]["quantity"]["maximum"]) == (
        1, MAX_QUANTITY) == (1, Settings().max_quantity)
    assert "artwork_id" in line["required"] and line["properties"]["artwork_id"]["minLength"] == 1
    assert order["properties"]["lines"]["minItems"] == 1


@pytest.mark.parametrize(("quantity", "schema_valid"), [(0, False), (1, True), (MAX_QUANTITY, True),
                                                        (MAX_QUANTITY + 1, False)])
def test_a_quantity_is_refused_by_core_exactly_when_the_schema_refuses_it(api, quantity, schema_valid):
    art = api.upload()
    body = api.order_body(art["id"])
    body["lines"][0]["quantity"] = quantity
    response = api.client.post("/v1/orders", json=body)
    refused_for_quantity = response.status_code == 422 and any(
        e["field"] == "lines[0].quantity" for e in response.json()["errors"])
    assert refused_for_quantity == (not schema_valid), response.text


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b.update(lines=[]), "lines"),
    (lambda b: b["lines"][0].pop("artwork_id"), "lines[0].artwork_id"),
    (lambda b: b["customer"].update(name="\x1c\x85"), "customer.name"),
    (lambda b: b["shipping_address"].update(country="\u3000"), "shipping_address.country"),
    (lambda b: b["customer"].update(email="ada\x1f@example.com"), "customer.email"),
])
def test_input_the_schema_refuses_is_refused_by_the_api(api, change, field):
    body = api.order_body(api.upload()["id"])
    change(body)
    response = api.client.post("/v1/orders", json=body)
    assert response.status_code == 422 and field in {e["field"] for e in response.json()["errors"]}


# ---- custom text: too long is refused by name, never cut to fit -----------------------------------------------


def test_the_schema_states_how_long_a_text_slots_name_and_its_text_may_be(api):
    texts = api.client.get("/openapi.json").json()["components"]["schemas"]["LineIn"]["properties"]["texts"]
    assert (texts["propertyNames"]["maxLength"], texts["additionalProperties"]["maxLength"]) == (
        TEXT_SLOT_NAME_MAX, TEXT_MAX) == (60, 1_000)


def place_with_texts(api, texts: dict[str, str]):
    """POST an otherwise valid order whose one line carries `texts`."""
    body = api.order_body(api.upload()["id"])
    body["lines"][0]["texts"] = texts
    return api.client.post("/v1/orders", json=body)


@pytest.mark.parametrize(("texts", "field", "says"), [
    ({"h" * 61: "Best Dad Ever"}, "lines[0].texts." + "h" * 61, "the name"),
    ({"headline": "x" * 1_001}, "lines[0].texts.headline", "1000 characters"),
])
def test_a_text_slot_name_or_text_over_the_schemas_length_is_a_422_naming_it_and_no_order(api, texts, field, says):
    # given an order whose line's custom text is one character over what the schema states, when it is placed
    response = place_with_texts(api, texts)
    # then it is a 422 problem on exactly that entry, saying what is too long, and nothing was recorded
    assert problem_types(response) == ("application/problem+json", 422), response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert list(errors) == [field] and says in errors[field].lower(), errors
    assert not api.queued()


@pytest.mark.parametrize(("texts", "field", "code"), [
    ({"h" * 60: "Best Dad Ever"}, "lines[0].texts." + "h" * 60, "unknown_text_slot"),
    ({"headline": "x" * 1_000}, "lines[0].texts.headline", "text_too_long"),
])
def test_text_at_the_schemas_length_reaches_core_whole(api, texts, field, code):
    # given custom text exactly as long as the schema allows, when it is placed,
    response = place_with_texts(api, texts)
    # then core judges the whole of it (its own rule, its own code), on the same entry
    assert response.status_code == 422, response.text
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


def test_a_text_slot_named_like_a_number_is_named_as_a_slot_not_a_list_index(api):
    body = api.order_body(api.upload()["id"])
    body["lines"][0]["texts"] = {"7": "x" * 1_001}
    response = api.client.post("/v1/orders", json=body)
    assert [e["field"] for e in response.json()["errors"]] == ["lines[0].texts.7"]


def test_the_openapi_links_an_uploaded_artworks_id_into_an_order_line_and_an_order_to_its_repeat(api):
    # the stateful fuzz (battery api-fuzz) follows these links; without them it never orders an artwork it uploaded
    paths = api.client.get("/openapi.json").json()["paths"]
    upload = paths["/v1/artwork"]["post"]["responses"]["201"]["links"]["OrderWithThisArtwork"]
    repeat = paths["/v1/orders"]["post"]["responses"]["201"]["links"]["SameOrderAgain"]
    assert upload["requestBody"] == {"lines": [{"artwork_id": "$response.body#/id"}]}
    assert set(repeat["requestBody"]) == {"channel", "external_id"}
    assert upload["operationRef"] == repeat["operationRef"] == "#/paths/~1v1~1orders/post"
    assert "$ref" in paths["/v1/artwork"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]


# ---- signed webhooks whose bodies are not what the sender promises -------------------------------------------


def shopify_signed(api, payload) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(api.services.settings.shopify_webhook_secret.encode(), raw,
                                       hashlib.sha256).digest()).decode()
    return raw, {"X-Shopify-Hmac-Sha256": digest, "X-Shopify-Webhook-Id": f"w-{hashlib.sha1(raw).hexdigest()}"}


@pytest.mark.parametrize("payload", [
    [], "an order", 5, {"id": 1, "line_items": [5]}, {"id": 1, "line_items": {}},
    {"id": 1, "line_items": [{"properties": [1]}]}, {"id": 1, "customer": [], "line_items": []},
    {"id": 1, "shipping_address": "x", "line_items": []}, {"id": 1, "shipping_lines": [1], "line_items": []},
    {"id": "9" * 81, "line_items": []}, {"id": 1, "line_items": [{"sku": "TEE-DTG-BLK-M", "quantity": 10 ** 30}]},
])
def test_a_signed_shopify_payload_of_the_wrong_shape_is_a_422_problem_not_a_server_error(api, payload):
    api.client.raise_server_exceptions = False
    raw, headers = shopify_signed(api, payload)
    response = api.client.post("/webhooks/shopify/orders-create", content=raw, headers=headers)
    assert problem_types(response) == ("application/problem+json", 422), response.text


@pytest.mark.parametrize("event", [{"id": "evt\x00x", "description": "tracker.updated"},
                                   {"id": "evt_1", "description": "tracker\x00updated"}])
def test_a_signed_carrier_event_with_nul_in_its_id_or_description_is_a_422_problem(api, event):
    api.client.raise_server_exceptions = False
    raw = json.dumps(event).encode()
    secret = unicodedata.normalize("NFKD", api.services.settings.easypost_webhook_secret).encode()
    signature = "hmac-sha256-hex=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    response = api.client.post("/webhooks/carrier/easypost", content=raw, headers={"X-Hmac-Signature": signature})
    assert problem_types(response) == ("application/problem+json", 422), response.text
