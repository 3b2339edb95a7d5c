"""Map Shopify's orders/create payload onto our PlaceOrder command."""

from __future__ import annotations

from typing import Any

from api.schemas import AddressIn, CustomerIn, LineIn, OrderIn
from core.commands import PlaceOrder
from core.states import Channel, ShippingSpeed

TEXT_PREFIX = "text:"
ARTWORK_PROPERTY = "_artwork_id"


def _object(value: Any, what: str) -> dict[str, Any]:
    """`value` as a JSON object; anything else is not a Shopify order (a ValueError, answered 422)."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return [_object(item, f"an item of {what}") for item in value]


def _quantity(value: Any) -> int:
    try:
        return int(value)
    except OverflowError:  # int(float("inf"))
        raise ValueError("quantity is not a number") from None


def _line(item: dict[str, Any]) -> dict[str, Any]:
    """Line-item properties carry the design: `_artwork_id` and `text:<slot>` (see docs/API.md)."""
    properties = {str(p.get("name", "")): str(p.get("value", ""))
                  for p in _objects(item.get("properties") or [], "properties")}
    return {"sku": str(item.get("sku") or ""), "quantity": _quantity(item.get("quantity", 0)),
            "artwork_id": properties.get(ARTWORK_PROPERTY) or None,
            "texts": {k[len(TEXT_PREFIX):]: v for k, v in properties.items() if k.startswith(TEXT_PREFIX)}}


def to_command(order: dict[str, Any]) -> PlaceOrder:
    """Raises KeyError/TypeError/ValueError on a payload that isn't a Shopify order (pydantic's ValidationError, a
    ValueError, when a field breaks the limits every order's fields have: OrderIn's)."""
    order = _object(order, "the payload")
    customer = _object(order.get("customer") or {}, "customer")
    ship = _object(order.get("shipping_address") or {}, "shipping_address")
    full_name = " ".join(x for x in (ship.get("first_name"), ship.get("last_name")) if x) or ship.get("name", "")
    buyer = " ".join(x for x in (customer.get("first_name"), customer.get("last_name")) if x) or full_name
    shipping_lines = _objects(order.get("shipping_lines") or [], "shipping_lines")
    codes = [str(line.get("code", "")).lower() for line in shipping_lines]
    return OrderIn(
        channel=Channel.SHOPIFY, external_id=str(order["id"]),
        customer=CustomerIn(name=str(buyer), email=str(order.get("email") or customer.get("email") or ""),
                            phone=str(order.get("phone") or customer.get("phone") or "")),
        shipping_address=AddressIn(name=str(full_name), line1=str(ship.get("address1") or ""),
                                   line2=str(ship.get("address2") or ""), city=str(ship.get("city") or ""),
                                   region=str(ship.get("province_code") or ""),
                                   postal_code=str(ship.get("zip") or ""),
                                   country=str(ship.get("country_code") or "")),
        shipping_speed=ShippingSpeed.EXPRESS if "express" in codes else ShippingSpeed.STANDARD,
        lines=[LineIn(**_line(item)) for item in _objects(order["line_items"], "line_items")]).to_command()
