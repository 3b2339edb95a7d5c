"""Map Shopify's orders/create payload onto our PlaceOrder command."""

from __future__ import annotations

from typing import Any

from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.states import Channel, ShippingSpeed

TEXT_PREFIX = "text:"
ARTWORK_PROPERTY = "_artwork_id"


def _line(item: dict[str, Any]) -> LineRequest:
    """Line-item properties carry the design: `_artwork_id` and `text:<slot>` (see docs/API.md)."""
    properties = {str(p.get("name", "")): str(p.get("value", "")) for p in item.get("properties") or []}
    return LineRequest(sku=str(item.get("sku") or ""), quantity=int(item.get("quantity", 0)),
                       artwork_id=properties.get(ARTWORK_PROPERTY) or None,
                       texts={k[len(TEXT_PREFIX):]: v for k, v in properties.items() if k.startswith(TEXT_PREFIX)})


def to_command(order: dict[str, Any]) -> PlaceOrder:
    """Raises KeyError/TypeError/ValueError on a payload that isn't a Shopify order."""
    customer = order.get("customer") or {}
    ship = order.get("shipping_address") or {}
    full_name = " ".join(x for x in (ship.get("first_name"), ship.get("last_name")) if x) or ship.get("name", "")
    buyer = " ".join(x for x in (customer.get("first_name"), customer.get("last_name")) if x) or full_name
    codes = [str(line.get("code", "")).lower() for line in order.get("shipping_lines") or []]
    return PlaceOrder(
        channel=Channel.SHOPIFY, external_id=str(order["id"]),
        customer=CustomerDetails(name=buyer, email=str(order.get("email") or customer.get("email") or ""),
                                 phone=str(order.get("phone") or customer.get("phone") or "")),
        shipping_address=Address(name=full_name, line1=str(ship.get("address1") or ""),
                                 line2=str(ship.get("address2") or ""), city=str(ship.get("city") or ""),
                                 region=str(ship.get("province_code") or ""), postal_code=str(ship.get("zip") or ""),
                                 country=str(ship.get("country_code") or "")),
        shipping_speed=ShippingSpeed.EXPRESS if "express" in codes else ShippingSpeed.STANDARD,
        lines=tuple(_line(item) for item in order["line_items"]))
