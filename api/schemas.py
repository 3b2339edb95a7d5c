"""Request and response bodies of the intake API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.states import Channel, ShippingSpeed


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
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    phone: str = Field(default="", max_length=40)


class AddressIn(Strict):
    name: str = Field(max_length=200)
    line1: str = Field(max_length=200)
    line2: str = Field(default="", max_length=200)
    city: str = Field(max_length=120)
    region: str = Field(default="", max_length=120)
    postal_code: str = Field(max_length=20)
    country: str = Field(max_length=2, description="ISO 3166-1 alpha-2")


class LineIn(Strict):
    sku: str = Field(max_length=60)
    quantity: int = Field(ge=-1_000_000, le=1_000_000)
    artwork_id: str | None = Field(default=None, max_length=40)
    texts: dict[str, str] = Field(default_factory=dict, max_length=10)


class OrderIn(Strict):
    external_id: str = Field(max_length=80)
    channel: Channel = Channel.API
    customer: CustomerIn
    shipping_address: AddressIn
    shipping_speed: ShippingSpeed = ShippingSpeed.STANDARD
    lines: list[LineIn] = Field(max_length=50)

    def to_command(self) -> PlaceOrder:
        return PlaceOrder(
            channel=self.channel, external_id=self.external_id,
            customer=CustomerDetails(**self.customer.model_dump()),
            shipping_address=Address(**self.shipping_address.model_dump()),
            shipping_speed=self.shipping_speed,
            lines=tuple(LineRequest(sku=line.sku, quantity=line.quantity, artwork_id=line.artwork_id,
                                    texts={k[:60]: v[:1000] for k, v in line.texts.items()})
                        for line in self.lines))


class OrderOut(BaseModel):
    id: str
    number: str
    status: str
    total_cents: int
    currency: str


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
