"""Request and response bodies of the intake API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.artwork import DEFAULT_MAX_BYTES
from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.settings import Settings
from core.states import Channel, ShippingSpeed
from core.validation import EMAIL

# What the OpenAPI document promises about a field is what the API refuses, so schema-valid input passes the rules
# and schema-invalid input is refused. Two sources, each written once:
# - pydantic enforces lengths, types, enums and NUL (below) before core sees anything;
# - core (core/validation.py) enforces the rules with its own codes and sentences (and counts each refusal):
#   non-blank required fields, the e-mail shape, at least one line, a quantity from 1 to `max_quantity`, an
#   artwork on every line. The schema states those rules in `json_schema_extra` only (documentation, not a second
#   check), built from core's constants; tests/unit/test_api_schema.py proves schema and core agree string by string.
# What depends on data (an unknown SKU or artwork, stock, a template's text slots) cannot be in a static schema.
# Core reads whitespace the Python way (str.strip, re's \s: \x1c-\x1f and \x85 too); JSON Schema's \s is
# ECMAScript's, which differs, so the schema spells Python's set out.


def _character_class(codes: list[int]) -> str:
    """`[...]` body for these code points, consecutive ones as ranges, each as a \\uXXXX escape."""
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in runs)


WHITESPACE = _character_class([code for code in range(0x3001) if chr(code).isspace()])  # none above U+3000
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"  # a character str.strip() keeps (core's test), no NUL
EMAIL_PATTERN = (f"^[{WHITESPACE}]*"  # core strips, then matches EMAIL
                 + EMAIL.pattern.strip("^$").replace(r"[^@\s]", rf"[^@{WHITESPACE}\x00]") + f"[{WHITESPACE}]*$")
NO_NUL_SCHEMA = {"pattern": NO_NUL}
UPLOAD_SCHEMA = {"minLength": 1,  # core refuses empty_file; too_large is stated in words (a fuzzer would build it)
                 "description": f"A PNG, JPEG or TIFF image (checked by content), at most {DEFAULT_MAX_BYTES:,} bytes"}
MAX_QUANTITY = next(f.default for f in fields(Settings) if f.name == "max_quantity")
TEXT_SLOT_NAME_MAX = 60  # longer than any template's slot name; a longer one is refused, never cut
TEXT_MAX = 1_000  # longer than any slot's max_chars; bounds what core's text checks read


def text(max_length: int, *, pattern: str = NO_NUL) -> Any:
    """A string field: its length enforced here, its pattern documented (NUL refused here, the rest by core)."""
    return Field(max_length=max_length, json_schema_extra={"pattern": pattern})


def optional_text(max_length: int) -> Any:
    return Field(default="", max_length=max_length, json_schema_extra={"pattern": NO_NUL})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """A NUL character is never text a customer typed, and PostgreSQL refuses to store it: a 422, not a 500."""
        if contains_nul(value):
            raise ValueError("must not contain NUL (\\x00) characters")
        return value


def contains_nul(value: Any) -> bool:
    """True when a string anywhere in `value` (a str, or dicts and lists of them) holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


class CustomerIn(Strict):
    name: str = text(200, pattern=NOT_BLANK)
    email: str = text(320, pattern=EMAIL_PATTERN)
    phone: str = optional_text(40)


class AddressIn(Strict):
    name: str = text(200, pattern=NOT_BLANK)
    line1: str = text(200, pattern=NOT_BLANK)
    line2: str = optional_text(200)
    city: str = text(120, pattern=NOT_BLANK)
    region: str = optional_text(120)
    postal_code: str = text(20, pattern=NOT_BLANK)
    country: str = Field(max_length=2, description="ISO 3166-1 alpha-2", json_schema_extra={"pattern": NOT_BLANK})


def _artwork_required(schema: dict[str, Any]) -> None:
    """Core refuses a line without artwork (artwork_missing): the schema says it is required and not empty."""
    schema["required"] = [*schema.get("required", []), "artwork_id"]
    schema["properties"]["artwork_id"] = {"type": "string", "minLength": 1, "maxLength": 40, "pattern": NO_NUL,
                                          "title": "Artwork Id"}


class LineIn(Strict):
    model_config = ConfigDict(json_schema_extra=_artwork_required)

    sku: str = text(60)
    quantity: int = Field(ge=-1_000_000, le=1_000_000,
                          json_schema_extra={"minimum": 1, "maximum": MAX_QUANTITY})
    artwork_id: str | None = Field(default=None, max_length=40)
    # Lengths enforced here, per entry (a refusal names lines[i].texts.<slot>); nothing is cut to fit.
    texts: dict[Annotated[str, Field(max_length=TEXT_SLOT_NAME_MAX)], Annotated[str, Field(max_length=TEXT_MAX)]] = (
        Field(default_factory=dict, max_length=10,
              description="Custom text per text slot of the product's template; the slots, their lengths and "
                          "characters depend on the product (refused with unknown_text_slot, text_too_long, "
                          "text_characters).",
              json_schema_extra={"propertyNames": {"maxLength": TEXT_SLOT_NAME_MAX, "pattern": NO_NUL},
                                 "additionalProperties": {"type": "string", "maxLength": TEXT_MAX,
                                                          "pattern": NO_NUL}}))


ORDER_EXAMPLE = {  # docs/API.md's example; artwork_id is what POST /v1/artwork answered
    "external_id": "SF-100231", "channel": "storefront",
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0958"},
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "line2": "", "city": "London",
                         "region": "LND", "postal_code": "NW1 5LR", "country": "GB"},
    "shipping_speed": "standard",
    "lines": [{"sku": "TEE-DTG-BLK-M", "quantity": 1, "artwork_id": "art_example",
               "texts": {"headline": "Best Dad Ever"}}]}


class OrderIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_EXAMPLE]})

    external_id: str = text(80, pattern=NOT_BLANK)
    channel: Channel = Channel.API
    customer: CustomerIn
    shipping_address: AddressIn
    shipping_speed: ShippingSpeed = ShippingSpeed.STANDARD
    lines: list[LineIn] = Field(max_length=50, json_schema_extra={"minItems": 1})

    def to_command(self) -> PlaceOrder:
        return PlaceOrder(
            channel=self.channel, external_id=self.external_id,
            customer=CustomerDetails(**self.customer.model_dump()),
            shipping_address=Address(**self.shipping_address.model_dump()),
            shipping_speed=self.shipping_speed,
            lines=tuple(LineRequest(sku=line.sku, quantity=line.quantity, artwork_id=line.artwork_id,
                                    texts=dict(line.texts))
                        for line in self.lines))


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A webhook route's `openapi_extra`: the route reads its raw body (the signature is over the bytes), so FastAPI
    cannot document it; what the handler refuses (422) is what these schemas leave out."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}


_OBJECTS = {"type": "array", "items": {"type": "object"}}
SHOPIFY_ORDER_BODY = _json_body({
    "type": "object", "required": ["id", "line_items"],
    "properties": {"id": {}, "email": {}, "phone": {}, "customer": {}, "shipping_address": {}, "shipping_lines": {},
                   "line_items": _OBJECTS}},
    "Shopify's orders/create payload, of which the API reads id, email, phone, customer, shipping_address "
    "(first_name, last_name, address1, address2, city, province_code, zip, country_code), shipping_lines (code) "
    "and line_items (sku, quantity, properties: _artwork_id and text:<slot>); signed in X-Shopify-Hmac-Sha256.")
PARTNER_EVENT_BODY = _json_body(
    {"type": "object", "required": ["event_id"], "properties": {"event_id": {}}},
    "A print partner's job event; event_id must equal X-Partner-Event-Id; signed in X-Partner-Signature.")
CARRIER_EVENT_BODY = {
    **_json_body({"type": "object", "required": ["id"],
                  "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 120, "pattern": NO_NUL},
                                 "description": {"pattern": NO_NUL}}},
                 "An EasyPost Event (tracker.updated), signed in X-Hmac-Signature."),
    "parameters": [{"name": "X-Hmac-Signature", "in": "header", "required": True,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "hmac-sha256-hex=<HMAC-SHA256 of the body with the webhook secret>"}]}


class OrderOut(BaseModel):
    id: str
    number: str
    status: str
    total_cents: int
    currency: str


class WebhookAck(BaseModel):
    """A webhook stored for the queue to apply, or recognised as one already stored."""

    status: Literal["accepted", "duplicate"]


class ArtworkOut(BaseModel):
    id: str
    sha256: str
    width: int
    height: int
    format: str
    bytes: int


class FieldError(BaseModel):
    field: str
    code: str
    message: str


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []
