"""The storefront simulator plans honest orders: valid ones the API must take, invalid ones labelled right."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from sims import storefront as sf

ROOT = Path(__file__).resolve().parents[2]
RAW_CATALOGUE = json.loads((ROOT / "db" / "seed_data" / "catalogue.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                      "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})


def _orders(seed: int, count: int, **options: object) -> list[sf.SimOrder]:
    planner = sf.OrderPlanner(sf.load_catalogue(), seed=seed, options=sf.GenerationOptions(**options))
    return [planner.next_order(now=NOW) for _ in range(count)]


def _slot_rules() -> dict[tuple[str, str], tuple[re.Pattern[str], int]]:
    """(product id, slot) → (charset pattern, max chars), read straight from the catalogue file."""
    charsets = RAW_CATALOGUE["charsets"]
    return {
        (p["id"], t["name"]): (re.compile(f"[{charsets[t['charset']]}]+"), t["max_chars"])
        for p in RAW_CATALOGUE["products"] for t in p["template"]["texts"]
    }


def _templates() -> dict[str, dict]:
    return {p["id"]: p["template"] for p in RAW_CATALOGUE["products"]}


def _prohibited_words() -> list[str]:
    lines = (ROOT / "db" / "seed_data" / "prohibited_words.txt").read_text(encoding="utf-8").splitlines()
    return [w.strip().lower() for w in lines if w.strip() and not w.startswith("#")]


def _disguised_word(text: str, words: list[str]) -> str | None:
    """A stricter check than the API's: any list word inside the text once case, leet and spacing are gone."""
    squashed = re.sub(r"[^a-z]", "", text.lower().translate(LEET))
    return next((w for w in words if w in squashed), None)


def _artwork_specs(order: sf.SimOrder) -> dict[str, sf.ArtworkSpec]:
    return {spec.key: spec for spec in order.artworks}


def _api_example() -> dict:
    """The POST /v1/orders example body in docs/API.md: the contract the native payload must follow."""
    doc = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    section = doc[doc.index("## POST /v1/orders"):]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))


def _api_order_codes() -> set[str]:
    doc = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    section = doc[doc.index("## POST /v1/orders"):doc.index("## POST /webhooks")]
    return set(re.findall(r"`([a-z_]+)`", section))


# --- valid orders -------------------------------------------------------------------------------------


def test_valid_orders_texts_fit_their_slots_charset_and_length():
    # given 2,000 orders from a fixed seed
    orders = _orders(seed=7, count=2000)
    rules = _slot_rules()
    # when we look at every custom text of the valid ones
    texts = [(ln.product_id, slot, text) for o in orders if o.is_valid for ln in o.lines
             for slot, text in ln.texts.items()]
    # then each one fits its slot's charset and length, and every slot of every line is filled
    assert len(texts) > 2000
    for product_id, slot, text in texts:
        pattern, max_chars = rules[(product_id, slot)]
        assert pattern.fullmatch(text), (product_id, slot, text)
        assert 0 < len(text) <= max_chars, (product_id, slot, text)
    for order in orders:
        for ln in order.lines:
            assert set(ln.texts) == {slot for (pid, slot) in rules if pid == ln.product_id}


def test_valid_orders_texts_never_hide_a_prohibited_word():
    words = _prohibited_words()
    for seed in (1, 2, 3):
        for order in _orders(seed=seed, count=2000):
            if order.is_valid:
                for ln in order.lines:
                    for text in ln.texts.values():
                        assert _disguised_word(text, words) is None, text


def test_valid_artworks_meet_min_effective_dpi_whichever_way_the_template_scales():
    # given the valid orders of a seeded run
    templates = _templates()
    lines = [(ln, _artwork_specs(o)[ln.artwork_key]) for o in _orders(seed=11, count=2000) if o.is_valid
             for ln in o.lines]
    # then every artwork clears the minimum on both axes, so "fit" and "fill" placements both pass
    for ln, spec in lines:
        template = templates[ln.product_id]
        box_w, box_h = template["artwork"]["box_in"][2:]
        minimum = template["min_effective_dpi"]
        assert spec.width / box_w >= minimum and spec.height / box_h >= minimum, (ln.product_id, spec)
        fit = template["artwork"]["fit"]
        assert sf.effective_dpi(spec.width, spec.height, (box_w, box_h), fit) >= minimum
        # and stays a reasonable upload: near 3,000 px a side unless the print area itself needs more
        needed = max(box_w, box_h) * minimum * sf.DPI_MARGIN
        assert max(spec.width, spec.height) <= max(sf.MAX_SIDE_PX, needed + 1)


def test_effective_dpi_follows_how_the_artwork_is_scaled_into_its_box():
    # a 3000 x 100 px banner in a 10 x 10 in box
    assert sf.effective_dpi(3000, 100, (10, 10), "fit") == 300  # shrunk to 10 in wide: 300 px per inch
    assert sf.effective_dpi(3000, 100, (10, 10), "fill") == 10  # blown up to 10 in tall: 10 px per inch


def test_popular_designs_are_reused_about_forty_percent_of_the_time():
    orders = _orders(seed=5, count=2000)
    specs = [_artwork_specs(o)[ln.artwork_key] for o in orders if o.is_valid for ln in o.lines]
    popular = [s for s in specs if s.popular]
    assert 0.34 < len(popular) / len(specs) < 0.46
    per_product = Counter(s.key.rsplit("-", 1)[0] for s in {s.key: s for s in popular}.values())
    assert all(n <= 5 for n in per_product.values())


def test_the_mix_looks_like_a_storefront_day():
    orders = _orders(seed=3, count=2000)
    lines = [ln for o in orders for ln in o.lines]
    types = Counter(ln.product_id for ln in lines)
    assert types.most_common(1)[0][0] == "tee"
    assert types["mug"] > types["hoodie"] > types["cap"]
    quantities = Counter(ln.quantity for o in orders if o.is_valid for ln in o.lines)
    assert set(quantities) <= {1, 2, 3} and quantities[1] > 0.7 * sum(quantities.values())
    assert 0.11 < sum(o.express for o in orders) / len(orders) < 0.19
    assert 0.25 < sum(o.channel is sf.Channel.SHOPIFY for o in orders) / len(orders) < 0.35
    assert {o.address.country for o in orders} >= {"US", "CA", "DE", "AU", "GB"}
    assert len({o.external_id for o in orders}) == len(orders)


def test_same_seed_gives_the_same_orders():
    first, second = _orders(seed=42, count=50), _orders(seed=42, count=50)
    assert first == second
    assert first != _orders(seed=43, count=50)


# --- invalid orders -----------------------------------------------------------------------------------


def test_about_three_percent_of_2000_orders_are_invalid_each_with_its_code():
    # given 2,000 orders at the default invalid rate
    orders = _orders(seed=2026, count=2000)
    # when we count the labelled ones
    invalid = [o for o in orders if not o.is_valid]
    # then about 3 % are invalid (binomial sd ~ 7.6 around 60) and each carries a code the API documents
    assert 40 <= len(invalid) <= 80
    documented = _api_order_codes() | {"unsupported_format"}
    assert {o.expected.code for o in invalid} <= documented
    assert all(o.expected.field for o in invalid)


def test_every_invalid_kind_shows_up_and_breaks_exactly_its_labelled_field():
    # given orders that are all invalid
    orders = _orders(seed=9, count=600, invalid_rate=1.0)
    catalogue = sf.load_catalogue()
    rules, templates, words = _slot_rules(), _templates(), _prohibited_words()
    by_code = Counter(o.expected.code for o in orders)
    # then all eight kinds appear
    assert set(by_code) == {k.value for k in sf.InvalidKind}
    for order in orders:
        code, fieldpath = order.expected.code, order.expected.field
        match = re.match(r"lines\[(\d+)\]\.(\w+)(?:\.(\w+))?", fieldpath)
        line = order.lines[int(match.group(1))] if match else None
        if code == "unknown_sku":
            assert line.sku not in catalogue.skus
        elif code == "quantity_out_of_range":
            assert line.quantity in (0, 1000)
        elif code in ("text_too_long", "text_characters", "prohibited_word"):
            text = line.texts[match.group(3)]
            pattern, max_chars = rules[(line.product_id, match.group(3))]
            if code == "text_too_long":
                assert len(text) > max_chars and pattern.fullmatch(text)
            elif code == "text_characters":
                assert len(text) <= max_chars and not pattern.fullmatch(text)
            else:
                assert len(text) <= max_chars and pattern.fullmatch(text) and _disguised_word(text, words)
        elif code == "artwork_resolution_too_low":
            spec = _artwork_specs(order)[line.artwork_key]
            template = templates[line.product_id]
            box_w, box_h = template["artwork"]["box_in"][2:]
            # too small whichever way it is scaled: even the better axis is far below the minimum
            assert max(spec.width / box_w, spec.height / box_h) < 0.5 * template["min_effective_dpi"]
        elif code == "address_incomplete":
            missing = fieldpath.removeprefix("shipping_address.")
            assert getattr(order.address, missing) == ""
        else:
            assert fieldpath == "file" and order.expected.stage is sf.Stage.UPLOAD
            hostile = [s for s in order.artworks if s.style is sf.ArtworkStyle.HOSTILE_SVG]
            assert len(hostile) == 1 and hostile[0].filename.endswith(".png")
            assert hostile[0].render().lstrip().startswith(b"<?xml") and b"<svg" in hostile[0].render()


def test_no_hostile_option_keeps_uploads_honest():
    orders = _orders(seed=4, count=300, invalid_rate=1.0, hostile_uploads=False)
    assert "unsupported_format" not in {o.expected.code for o in orders}


# --- payloads and signatures --------------------------------------------------------------------------


def _first(orders: list[sf.SimOrder], channel: sf.Channel, **where: object) -> sf.SimOrder:
    return next(o for o in orders if o.channel is channel and o.is_valid
                and all(getattr(o, k) == v for k, v in where.items()))


def _ids(order: sf.SimOrder) -> dict[str, str]:
    return {spec.key: f"art_{n:04d}" for n, spec in enumerate(order.artworks)}


def _shape(value: object) -> object:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "texts"}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_native_payload_has_exactly_the_fields_docs_api_shows():
    order = _first(_orders(seed=8, count=200), sf.Channel.STOREFRONT)
    payload = order.payload(_ids(order))
    assert _shape(payload) == _shape(_api_example())
    assert payload["channel"] == "storefront"
    assert payload["shipping_speed"] in ("standard", "express")
    for line in payload["lines"]:
        assert line["artwork_id"].startswith("art_") and isinstance(line["texts"], dict)


def test_native_request_carries_an_idempotency_key_over_the_exact_body():
    order = _first(_orders(seed=8, count=200), sf.Channel.STOREFRONT)
    path, headers, body = sf.build_request(order, _ids(order), shopify_secret="unused")
    assert path == "/v1/orders"
    assert headers["Idempotency-Key"] == order.idempotency_key
    assert json.loads(body) == order.payload(_ids(order))


def test_shopify_signature_is_verifiable_with_the_shared_secret():
    # given a Shopify order signed with the shop's secret
    order = _first(_orders(seed=8, count=200), sf.Channel.SHOPIFY)
    path, headers, body = sf.build_request(order, _ids(order), shopify_secret="shpss_test")
    # when the receiver recomputes the HMAC over the raw body
    expected = base64.b64encode(hmac.new(b"shpss_test", body, hashlib.sha256).digest()).decode()
    # then it matches, and a tampered body or another secret does not
    assert path == "/webhooks/shopify/orders-create"
    assert hmac.compare_digest(expected, headers["X-Shopify-Hmac-Sha256"])
    assert sf.sign_shopify(body + b" ", "shpss_test") != headers["X-Shopify-Hmac-Sha256"]
    assert sf.sign_shopify(body, "other") != headers["X-Shopify-Hmac-Sha256"]
    assert headers["X-Shopify-Topic"] == "orders/create"
    assert headers["X-Shopify-Shop-Domain"] == "pressroom-demo.myshopify.com"
    assert headers["X-Shopify-Webhook-Id"] == order.webhook_id


def test_shopify_payload_has_the_shape_shopify_sends():
    orders = _orders(seed=12, count=400)
    order = _first(orders, sf.Channel.SHOPIFY, express=True)
    _, _, body = sf.build_request(order, _ids(order), shopify_secret="s")
    payload = json.loads(body)
    assert isinstance(payload["id"], int) and re.fullmatch(r"#\d+", payload["name"])
    assert {"email", "phone", "customer", "shipping_address", "shipping_lines", "line_items", "total_price",
            "currency", "created_at"} <= set(payload)
    assert {"first_name", "last_name", "email", "phone"} <= set(payload["customer"])
    assert {"first_name", "last_name", "address1", "address2", "city", "province_code", "zip", "country_code",
            "phone"} <= set(payload["shipping_address"])
    assert payload["shipping_lines"][0]["code"] == "express"
    assert re.fullmatch(r"\d+\.\d\d", payload["total_price"])
    for item, line in zip(payload["line_items"], order.lines, strict=True):
        assert {"id", "sku", "quantity", "title", "price", "properties"} <= set(item)
        props = {p["name"]: p["value"] for p in item["properties"]}
        assert props["_artwork_id"] == _ids(order)[line.artwork_key]
        texts = {k.removeprefix("text:"): v for k, v in props.items() if k.startswith("text:")}
        assert texts == dict(line.texts)
    cents = sum(ln.price_cents * ln.quantity for ln in order.lines) + RAW_CATALOGUE["express_surcharge_cents"]
    assert payload["total_price"] == f"{cents // 100}.{cents % 100:02d}"


# --- artwork bytes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("style", "fmt"), [(sf.ArtworkStyle.FLAT, "PNG"), (sf.ArtworkStyle.PHOTO, "JPEG")])
def test_make_artwork_draws_a_real_image_of_the_asked_size(style, fmt):
    data = sf.make_artwork(random.Random(1), 320, 180, style=style)
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == (fmt, (320, 180))
    assert len(image.convert("RGB").getcolors(maxcolors=10_000) or range(10_001)) > 2


def test_artwork_spec_renders_the_same_bytes_every_time():
    spec = sf.ArtworkSpec(key="design-x", width=200, height=150, style=sf.ArtworkStyle.PHOTO, seed=99)
    assert spec.render() == spec.render()
    assert spec.filename == "design-x.jpg" and spec.content_type == "image/jpeg"


# --- judging answers ----------------------------------------------------------------------------------

TOO_LONG = sf.Expectation(stage=sf.Stage.ORDER, field="lines[0].texts.headline", code="text_too_long")
HEADLINE_TOO_LONG = ("lines[0].texts.headline", "text_too_long")


def _problem(*errors: tuple[str, str]) -> dict:
    return {"type": "https://pressroom.dev/problems/validation", "status": 422,
            "errors": [{"field": f, "code": c, "message": "..."} for f, c in errors]}


@pytest.mark.parametrize(
    ("expected", "status", "problem", "outcome"),
    [
        (None, 201, {"id": "ord_1"}, sf.Outcome.ACCEPTED),
        (None, 200, {"id": "ord_1"}, sf.Outcome.ACCEPTED),
        (None, 422, _problem(("lines[0].sku", "out_of_stock")), sf.Outcome.DECLINED),
        (None, 402, {"status": 402}, sf.Outcome.DECLINED),
        (None, 422, _problem(("lines[0].texts.headline", "prohibited_word")), sf.Outcome.MISMATCH),
        (TOO_LONG, 422, _problem(HEADLINE_TOO_LONG), sf.Outcome.REJECTED_AS_EXPECTED),
        (TOO_LONG, 422, _problem(("lines[1].texts.headline", "text_too_long")), sf.Outcome.MISMATCH),
        (TOO_LONG, 422, _problem(HEADLINE_TOO_LONG, ("lines[0].sku", "unknown_sku")), sf.Outcome.MISMATCH),
        (TOO_LONG, 201, {"id": "ord_1"}, sf.Outcome.MISMATCH),
        (TOO_LONG, 500, "Internal Server Error", sf.Outcome.MISMATCH),
    ],
)
def test_judge_tells_expected_refusals_from_mismatches(expected, status, problem, outcome):
    assert sf.judge(expected, channel=sf.Channel.STOREFRONT, status=status, problem=problem)[0] is outcome


def test_address_refusal_on_the_parent_object_still_counts_as_expected():
    expected = sf.Expectation(stage=sf.Stage.ORDER, field="shipping_address.city", code="address_incomplete")
    verdict = sf.judge(expected, channel=sf.Channel.STOREFRONT, status=422,
                       problem=_problem(("shipping_address", "address_incomplete")))
    assert verdict[0] is sf.Outcome.REJECTED_AS_EXPECTED


def test_webhook_that_acknowledges_an_invalid_order_is_deferred_not_a_mismatch():
    verdict = sf.judge(TOO_LONG, channel=sf.Channel.SHOPIFY, status=200, problem={})
    assert verdict[0] is sf.Outcome.DEFERRED


# --- retries ------------------------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates():
    assert sf.retry_after_seconds("3") == 3.0
    assert sf.retry_after_seconds("Sat, 14 Mar 2026 15:09:30 GMT", now=NOW.timestamp()) == 4.0
    assert sf.retry_after_seconds(None) is None
    assert sf.retry_after_seconds("soon") is None


def test_sender_retries_connection_errors_and_busy_answers_then_returns_the_real_one():
    # given an API that refuses the connection, then is busy, then answers
    answers = iter([
        httpx.ConnectError("refused"),
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(201, json={"id": "ord_1"}),
    ])
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Idempotency-Key"))
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api") as client:
            sender = sf.Sender(client, max_delay=0.01)
            headers = {"Idempotency-Key": "k-1"}
            return await sender.request("POST", "/v1/orders", content=b"{}", headers=headers)

    # when the storefront sends once
    response = asyncio.run(send())
    # then it gets the 201 after four tries, all with the same idempotency key
    assert response.status_code == 201
    assert seen == ["k-1"] * 4


def test_storefront_uploads_a_popular_design_once_and_counts_outcomes(tmp_path):
    # given a tiny catalogue (small images keep the test fast) and an API stub that accepts everything
    raw = {
        "charsets": {"basic": "A-Za-z0-9 .,'!?&#-"}, "currency": "USD", "express_surcharge_cents": 1200,
        "products": [{"id": "tee", "name": "Tee", "product_type": "tshirt",
                      "template": {"min_effective_dpi": 30, "artwork": {"box_in": [0, 0, 4, 4], "fit": "fit"},
                                   "texts": [{"name": "headline", "max_chars": 30, "charset": "basic"}]},
                      "variants": [{"sku": "TEE-1", "colour": "black", "size": "M", "price_cents": 2400}]}],
    }
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw))
    catalogue = sf.load_catalogue(path)
    uploads: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/artwork":
            uploads.append(request.content.split(b'filename="')[1].split(b'"')[0].decode())
            return httpx.Response(201, json={"id": f"art_{len(uploads)}"})
        return httpx.Response(201, json={"id": "ord_1", "status": "accepted"})

    planner = sf.OrderPlanner(catalogue, seed=1, options=sf.GenerationOptions(invalid_rate=0.0),
                              reuse_share=1.0)
    orders = [planner.next_order(now=NOW) for _ in range(6)]

    async def run() -> sf.Tally:
        tally = sf.Tally()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api") as client:
            shop = sf.Storefront(sf.Sender(client), catalogue, shopify_secret="s", tally=tally)
            await asyncio.gather(*(shop.process(o) for o in orders))
        return tally

    # when six orders all use popular designs
    tally = asyncio.run(run())
    # then each distinct design was uploaded once and every order was accepted
    distinct = {spec.filename for o in orders for spec in o.artworks}
    assert sorted(uploads) == sorted(distinct) and len(distinct) < sum(len(o.artworks) for o in orders)
    assert tally.accepted == 6 and tally.unexpected == 0
    assert tally.uploads + tally.reuses == sum(len(o.artworks) for o in orders)
    assert "accepted" in sf.format_summary(tally, elapsed=1.0)


# --- command line -------------------------------------------------------------------------------------


def test_cli_defaults_follow_the_brief(monkeypatch):
    monkeypatch.delenv("SHOPIFY_WEBHOOK_SECRET", raising=False)
    args = sf.parse_args([])
    assert (args.url, args.count, args.rate, args.invalid_rate, args.shopify_share) == (
        "http://127.0.0.1:8000", 20, None, 0.03, 0.3)
    assert args.shopify_secret == "shpss_dev_secret"
    assert sf.parse_args(["--rate", "0.5"]).count is None  # a rate alone runs until stopped
    monkeypatch.setenv("SHOPIFY_WEBHOOK_SECRET", "from-env")
    assert sf.parse_args(["--count", "5", "--rate", "2"]).shopify_secret == "from-env"
    with pytest.raises(SystemExit):
        sf.parse_args(["--invalid-rate", "1.5"])
