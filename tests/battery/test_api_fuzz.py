"""Battery check 6 at CI size: schemathesis (all phases, both data modes, every check plus the rules-agree-with-schema
hook; 20 examples per operation, 60 s) against the API process on PostgreSQL + Redis: 0 findings of any kind, and the
happy paths reached (uploads and orders accepted). The hooks that get it there are checked on their own first: what
they make of a schema-valid case must stay schema-valid, or the fuzz would blame the API for the hook's mistake."""

from __future__ import annotations

import copy

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import shopify
from api.schemas import ORDER_EXAMPLE, OrderIn
from battery import api_fuzz, api_fuzz_hooks
from battery.api_fuzz_hooks import IMAGE_SIZES, image_bytes
from core.artwork import normalise_artwork
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(420)]

PLAN = {"artwork_ids": ["art_big", "art_small"], "prohibited": ["fuck"], "skus": {
    "TEE-DTG-BLK-M": {"slots": {"headline": {"max_chars": 30, "charset": "A-Za-z0-9 .,'!?&#-"}},
                      "prints": ["art_big"], "too_small": ["art_small"]},
    "CASE-UV-S24": {"slots": {"initials": {"max_chars": 4, "charset": "A-Z"}}, "prints": ["art_big"],
                    "too_small": ["art_small"]}}}
DOCUMENTED = jsonschema_rs.validator_for(OrderIn.model_json_schema())  # what the OpenAPI document states
GENERATED_LINE = {"sku": "\x85?", "quantity": 7, "artwork_id": "not uploaded", "texts": {"": "x"}}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a shared machine
@given(data=st.data(), lines=st.integers(1, 5))
def test_an_order_the_hooks_make_real_is_still_schema_valid_and_names_only_uploaded_artwork(data, lines):
    # given a schema-valid order as schemathesis generated it, and the run's plan
    body = copy.deepcopy(ORDER_EXAMPLE) | {"lines": [dict(GENERATED_LINE) for _ in range(lines)]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_fuzz_hooks, "PLAN", PLAN)
        # when the hook makes it a real order
        real = data.draw(api_fuzz_hooks._real_order(body))
    # then the schema still admits it, its lines are the catalogue's with uploaded artwork (but for a generated line
    # the hook keeps on purpose), and the generated order was left alone
    assert DOCUMENTED.is_valid(real), list(DOCUMENTED.iter_errors(real))[:3]
    OrderIn.model_validate(real)
    made = [line for line in real["lines"] if line != GENERATED_LINE]
    assert made and {line["sku"] for line in made} <= set(PLAN["skus"])
    assert {line["artwork_id"] for line in made} <= set(PLAN["artwork_ids"])
    assert body["lines"] == [GENERATED_LINE] * lines


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_shopify_order_the_hooks_make_is_read_by_the_api_as_an_order_of_uploaded_artwork(data):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_fuzz_hooks, "PLAN", PLAN)
        payload = data.draw(api_fuzz_hooks._shopify_order({"id": "generated", "line_items": [], "x": 1}))
    command = shopify.to_command(payload)  # raises on a payload the webhook would answer 422 for its shape
    made = [line for line in command.lines if line.sku]
    assert made and {line.artwork_id for line in made} <= set(PLAN["artwork_ids"]) and payload["x"] == 1


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "TIFF"])
def test_the_images_the_hooks_upload_pass_the_artwork_rules(image_format):
    for size in IMAGE_SIZES:
        art = normalise_artwork(image_bytes(size, image_format, (20, 20, 20), 300), max_pixels=10 ** 8,
                                max_bytes=50 * 1024 * 1024)
        assert (art.width, art.height) == size


def test_schemathesis_finds_no_server_error_schema_violation_or_rule_the_schema_does_not_state(ctx):
    figures, findings = api_fuzz.fuzz(ctx)
    assert not findings, "\n".join(f.line() for f in findings)
    assert_figures(figures)
