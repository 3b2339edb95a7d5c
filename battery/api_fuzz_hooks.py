"""schemathesis hooks for the api-fuzz check (loaded through SCHEMATHESIS_HOOKS).

- `rules_agree_with_schema`: a schema-valid request may still be refused for what a static schema cannot know (a SKU
  the catalogue does not sell, an artwork never uploaded, stock, a template's text slots, an image's content); any
  other refusal of schema-valid input means the schema admits what the rules refuse, and fails the run.
- `before_call` signs the webhooks with the API's own secrets (the same environment), so the fuzzer reaches what the
  handlers do after the signature check: a request without the signature header is sent as generated.
- `flatmap_case` reaches the happy paths (fuzzing and stateful phases, schema-valid cases only): some artwork uploads
  become real PNG/JPEG/TIFF images (print-worthy for some products, too small for others), some orders and Shopify
  orders real ones: catalogue SKUs, artwork the run uploaded through the API (API_FUZZ_PLAN, written by
  battery/api_fuzz.py) that prints on them, text that fits their slots; half of them with one thing wrong that only
  the data can tell (FAULTS: text, resolution, stock, a generated line, an external id sent before), and now and
  then an Idempotency-Key used before. The rest stays as generated. A schema-invalid case is never changed: it must
  still be refused. The stateful phase also chains an upload's id into an order through the OpenAPI links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from api.schemas import MAX_QUANTITY, ORDER_EXAMPLE
from core.artwork import RefusalCode
from core.settings import Settings
from core.text import TextProblemCode

# Problem codes that depend on data, per operation; everything else the rules refuse, the schema states.
DATA_DEPENDENT = {
    "POST /v1/orders": {"unknown_sku", "out_of_stock", "artwork_unknown", "artwork_resolution_too_low",
                        "unknown_text_slot", "text_does_not_fit", *TextProblemCode},
    "POST /v1/artwork": {RefusalCode.UNSUPPORTED_FORMAT, RefusalCode.POLYGLOT, RefusalCode.TRUNCATED,
                         RefusalCode.TOO_MANY_PIXELS},
}
# The statuses the built-in positive_data_acceptance check is told to let through for the operations above; this
# check then looks inside each such refusal. 402: the payment fake declines some external ids, as a card would.
# The webhooks' bodies are their senders' (Shopify's, a partner's); the schema says what the handler reads and what it
# refuses, and a signed payload the rules refuse (no name, an unknown partner's event id) is a 422 (402: declined).
REFUSED_FOR_DATA = {"POST /v1/orders": (402, 422), "POST /v1/artwork": (422,),
                    "POST /webhooks/shopify/orders-create": (402, 422), "POST /webhooks/partners/{partner_id}": (422,)}
SETTINGS = Settings.from_env(os.environ)


@schemathesis.check
def rules_agree_with_schema(ctx, response, case) -> bool | None:
    """A schema-valid request refused with 422 names only problems that depend on data."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    operation = f"{case.method.upper()} {case.operation.path}"
    if operation not in DATA_DEPENDENT:
        return None
    try:
        problems = json.loads(response.content).get("errors", [])
    except (ValueError, AttributeError):
        raise AssertionError("a 422 without a problem JSON body") from None
    expressible = sorted({f"{p.get('field')} {p.get('code')}" for p in problems
                          if p.get("code") not in DATA_DEPENDENT.get(operation, set())})
    if expressible:
        raise AssertionError(f"Schema-valid input refused for a rule the schema does not state: "
                             f"{', '.join(expressible)}")
    return None


def _header(headers: dict[str, Any], name: str) -> str | None:
    """The key `headers` holds `name` under (any case), or None when the request goes without it."""
    return next((key for key in headers if key.lower() == name.lower()), None)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """Sign a webhook's JSON body over the bytes the transport will send (requests' `json=`: json.dumps)."""
    path = case.operation.path
    if case.method.upper() != "POST" or not path.startswith("/webhooks/") or case.media_type != "application/json":
        return
    try:
        raw = json.dumps(case.body, allow_nan=False).encode()
    except (TypeError, ValueError):
        return
    headers = case.headers if case.headers is not None else {}
    if path == "/webhooks/shopify/orders-create" and (key := _header(headers, "X-Shopify-Hmac-Sha256")):
        secret = SETTINGS.shopify_webhook_secret.encode()
        headers[key] = base64.b64encode(hmac.new(secret, raw, hashlib.sha256).digest()).decode()
    elif path == "/webhooks/carrier/easypost" and (key := _header(headers, "X-Hmac-Signature")):
        secret = unicodedata.normalize("NFKD", SETTINGS.easypost_webhook_secret).encode()
        headers[key] = "hmac-sha256-hex=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    elif path == "/webhooks/partners/{partner_id}" and (key := _header(headers, "X-Partner-Signature")):
        partner = str((case.path_parameters or {}).get("partner_id", ""))
        secret = SETTINGS.partner_webhook_secret(partner).encode()
        headers[key] = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        event_id = case.body.get("event_id") if isinstance(case.body, dict) else None
        event_key = _header(headers, "X-Partner-Event-Id")
        if event_key and event_id is not None and len(str(event_id)) <= 120 and _latin1(str(event_id)):
            headers[event_key] = str(event_id)  # the header the signed body must agree with
    case.headers = headers


# ---- the happy paths ------------------------------------------------------------------------------------------

PLAN: dict[str, Any] = json.loads(Path(os.environ["API_FUZZ_PLAN"]).read_text()) if os.environ.get("API_FUZZ_PLAN") \
    else {}
# Sizes that print at the product's minimum DPI for some products and not others (fit: the longer side per inch of
# box decides, fill: the shorter): 2100x400 suits shirts, hoodies and caps; 1100x1225 mugs, cases and caps;
# 300x200 none. Small enough to encode and normalise in well under a second on a loaded machine.
IMAGE_SIZES = ((2100, 400), (400, 2100), (1100, 1225), (760, 300), (300, 200))
COLOURS = ((200, 30, 90), (20, 20, 20), (250, 250, 250), (30, 120, 200))
REPEATED_EXTERNAL_IDS = ("fuzz-repeat-1", "fuzz-repeat-2")  # a repeat answers 200 with the first order
REPEATED_IDEMPOTENCY_KEYS = ("fuzz-key-1", "fuzz-key-2")  # a repeat with another body answers 409


@lru_cache(maxsize=64)
def image_bytes(size: tuple[int, int], image_format: str, colour: tuple[int, int, int], dpi: int) -> bytes:
    """A real image: a flat colour with a shape on it, so the normalised file is not trivially empty."""
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).ellipse((size[0] // 8, size[1] // 8, size[0] // 2, size[1] // 2), fill=(240, 200, 0))
    out = io.BytesIO()
    image.save(out, format=image_format, dpi=(dpi, dpi))
    return out.getvalue()


images = st.builds(image_bytes, st.sampled_from(IMAGE_SIZES), st.sampled_from(("PNG", "JPEG", "TIFF")),
                   st.sampled_from(COLOURS), st.sampled_from((72, 300)))


def _often(value: st.SearchStrategy, otherwise: st.SearchStrategy, *, in_: int) -> st.SearchStrategy:
    """`otherwise` once in `in_` draws, `value` the other times."""
    return st.integers(1, in_).flatmap(lambda n: otherwise if n == 1 else value)


FAULTS = ("text", "resolution", "stock", "generated line", "external id sent before")


@st.composite
def _real_line(draw, line: dict[str, Any]) -> dict[str, Any]:
    """A line of a catalogue SKU with artwork that prints on it and text that fits its slots (or none)."""
    sku = draw(st.sampled_from(sorted(PLAN["skus"])))
    product = PLAN["skus"][sku]
    return {**line, "sku": sku, "artwork_id": draw(st.sampled_from(product["prints"])),
            "quantity": draw(st.integers(1, 3)), "texts": draw(_fitting_texts(product["slots"]))}


def _fitting_texts(slots: dict[str, dict[str, Any]]) -> st.SearchStrategy[dict[str, str]]:
    if not slots:
        return st.just({})
    return st.one_of(st.just({}), st.sampled_from(sorted(slots)).flatmap(lambda name: st.from_regex(
        f"[{slots[name]['charset']}]{{1,{slots[name]['max_chars']}}}", fullmatch=True).map(lambda v: {name: v})))


def _bad_text(slots: dict[str, dict[str, Any]]) -> st.SearchStrategy[dict[str, str]]:
    """Text for one of the product's slots that its rules refuse: too long, prohibited, characters not allowed."""
    def one(name: str) -> st.SearchStrategy[dict[str, str]]:
        too_long = st.just("A" * (slots[name]["max_chars"] + 1))
        prohibited = st.sampled_from(PLAN["prohibited"] or ["x"]).map(lambda word: f"I {word} it")
        odd = st.sampled_from(["<b>hi</b>", "naïve ☃", "tab\there"])
        return st.one_of(too_long, prohibited, odd).map(lambda value: {name: value})

    return st.sampled_from(sorted(slots)).flatmap(one) if slots else st.just({"no-such-slot": "x"})


@st.composite
def _real_order(draw, body: dict[str, Any]) -> dict[str, Any]:
    """One to three real lines; half the time with one thing wrong that only the data can tell (FAULTS)."""
    lines = [draw(_real_line(line)) for line in body["lines"][:draw(st.integers(1, 3))]]
    fault = draw(st.one_of(st.none(), st.sampled_from(FAULTS)))
    at = draw(st.integers(0, len(lines) - 1))
    product = PLAN["skus"][lines[at]["sku"]]
    # a generated external id soon repeats ("0"), and a repeat is answered with the first order: keep it once in 4
    external_id = draw(_often(st.uuids().map(lambda u: f"fuzz-{u.hex[:16]}"), st.just(body["external_id"]), in_=4))
    if fault == "text":
        lines[at]["texts"] = draw(_bad_text(product["slots"]))
    elif fault == "resolution" and product["too_small"]:
        lines[at]["artwork_id"] = draw(st.sampled_from(product["too_small"]))
    elif fault == "stock":
        lines[at]["quantity"] = MAX_QUANTITY
    elif fault == "generated line":
        lines.append(body["lines"][-1])
    elif fault == "external id sent before":
        external_id = draw(st.sampled_from(REPEATED_EXTERNAL_IDS))
    return {**body, "lines": lines, "external_id": external_id}


@st.composite
def _shopify_order(draw, body: dict[str, Any]) -> dict[str, Any]:
    """Shopify's orders/create payload for a real order (design in line-item properties), the generated body's other
    fields kept; its id now and then one sent before (answered with the first order)."""
    empty_line = {"sku": "", "quantity": 1, "artwork_id": "", "texts": {}}  # what a "generated line" fault adds
    order = draw(_real_order({**ORDER_EXAMPLE, "lines": [empty_line] * 3}))
    items = [{"sku": line["sku"], "quantity": line["quantity"],
              "properties": [{"name": "_artwork_id", "value": line["artwork_id"]}]
              + [{"name": f"text:{slot}", "value": text} for slot, text in line["texts"].items()]}
             for line in order["lines"]]
    shopify_id = draw(_often(st.integers(10 ** 12, 10 ** 13), st.sampled_from([4_000_001, 4_000_002]), in_=8))
    return {**body, "id": shopify_id, "email": "ada@example.com", "line_items": items,
            "customer": {"first_name": "Ada", "last_name": "Lovelace"},
            "shipping_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Marylebone Rd",
                                 "city": "London", "zip": "NW1 5LR", "country_code": "GB"},
            "shipping_lines": [{"code": draw(st.sampled_from(["standard", "express"]))}]}


def _with_body(case, body):
    case.body = body
    return case


def _with_image(case, data: bytes):
    """The upload with a real image as its file. schemathesis re-validates an edited body and counts any body that
    holds bytes as invalid (it cannot validate binary), which would make this schema-valid upload a negative case;
    the image fits the schema (a non-empty file), so the edited body is taken as the case's starting state."""
    case.body = {**case.body, "file": data}
    case._record_starting_state()
    return case


def _with_idempotency_key(case, key: str | None):
    if key is not None:
        headers = case.headers if case.headers is not None else {}
        headers[_header(headers, "Idempotency-Key") or "Idempotency-Key"] = key
        case.headers = headers
    return case


@schemathesis.hook
def flatmap_case(context, case):
    """reach_the_happy_paths: schema-valid uploads and orders, some made real (see the module's docstring)."""
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    operation = f"{case.method.upper()} {case.operation.path}"
    if not PLAN or not positive or not isinstance(case.body, dict):
        return st.just(case)
    if operation == "POST /v1/artwork" and "file" in case.body:
        return _often(images.map(lambda data: _with_image(case, data)), st.just(case), in_=3)
    if operation == "POST /v1/orders" and isinstance(case.body.get("lines"), list) and case.body["lines"]:
        real = _real_order(case.body).map(lambda body: _with_body(case, body))
        keyed = st.tuples(real, _often(st.none(), st.sampled_from(REPEATED_IDEMPOTENCY_KEYS), in_=8))
        return _often(keyed.map(lambda pair: _with_idempotency_key(*pair)), st.just(case), in_=4)
    if operation == "POST /webhooks/shopify/orders-create":
        return _often(_shopify_order(case.body).map(lambda body: _with_body(case, body)), st.just(case), in_=3)
    return st.just(case)
