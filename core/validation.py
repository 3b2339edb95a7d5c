"""Checkout validation: every rule an order must pass before anything is recorded, all problems at once."""

from __future__ import annotations

import re
from typing import Mapping

from core.catalogue import ArtworkInfo, Variant
from core.commands import PlaceOrder
from core.errors import Problem
from core.render import text_fits
from core.text import ProhibitedWords, check_custom_text

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FIELD_NAMES = {"name": "name", "line1": "street address", "city": "city", "postal_code": "postal code",
               "country": "country"}


def validate_order(cmd: PlaceOrder, *, variants: Mapping[str, Variant], artworks: Mapping[str, ArtworkInfo],
                   available: Mapping[str, int], prohibited: ProhibitedWords,
                   max_quantity: int) -> list[Problem]:
    """Check a checkout against the catalogue, the artwork on file and partner stock.

    Args:
        variants: the catalogue entries for the SKUs in the order (unknown SKUs are simply absent).
        artworks: the uploaded artworks the lines refer to (unknown ids absent).
        available: per SKU, the most units any one active partner can still reserve.
    Returns:
        Every problem found, each with a field path a form can point at; empty when the order is fine.
    """
    problems: list[Problem] = []
    problems += _customer_problems(cmd)
    problems += [Problem(field=f"shipping_address.{f}", code="address_incomplete",
                         message=f"Please add the {FIELD_NAMES[f]} to the shipping address.")
                 for f in cmd.shipping_address.missing()]
    if not cmd.external_id.strip():
        problems.append(Problem(field="external_id", code="required", message="The order needs its shop id."))
    if not cmd.lines:
        problems.append(Problem(field="lines", code="required", message="The order has no items."))
    wanted: dict[str, int] = {}
    for i, line in enumerate(cmd.lines):
        at = f"lines[{i}]"
        variant = variants.get(line.sku)
        if variant is None:
            problems.append(Problem(field=f"{at}.sku", code="unknown_sku",
                                    message=f"We don't sell a product with the code {line.sku!r}."))
            continue
        if not 1 <= line.quantity <= max_quantity:
            problems.append(Problem(field=f"{at}.quantity", code="quantity_out_of_range",
                                    message=f"Choose a quantity from 1 to {max_quantity}."))
        else:
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        problems += _text_problems(at, line.texts, variant, prohibited)
        problems += _artwork_problems(at, line.artwork_id, variant, artworks)
    for sku, units in wanted.items():
        if available.get(sku, 0) < units:
            index = next(i for i, line in enumerate(cmd.lines) if line.sku == sku)
            problems.append(Problem(field=f"lines[{index}].sku", code="out_of_stock",
                                    message="Sorry, this product is out of stock right now."))
    return problems


def _customer_problems(cmd: PlaceOrder) -> list[Problem]:
    problems = []
    if not cmd.customer.name.strip():
        problems.append(Problem(field="customer.name", code="required", message="Please tell us your name."))
    if not EMAIL.match(cmd.customer.email.strip()):
        problems.append(Problem(field="customer.email", code="invalid",
                                message="Please give an e-mail address like name@example.com."))
    return problems


def _text_problems(at: str, texts: Mapping[str, str], variant: Variant,
                   prohibited: ProhibitedWords) -> list[Problem]:
    problems = []
    for slot_name, text in texts.items():
        slot = variant.template.slot(slot_name)
        if slot is None:
            known = ", ".join(s.name for s in variant.template.text_slots) or "none"
            problems.append(Problem(field=f"{at}.texts.{slot_name}", code="unknown_text_slot",
                                    message=f"This product has no text called {slot_name!r} (it has: {known})."))
            continue
        found = [Problem(field=f"{at}.texts.{slot_name}", code=p.code, message=p.message)
                 for p in check_custom_text(text, slot=slot_name, max_chars=slot.max_chars,
                                            allowed=slot.charset, prohibited=prohibited)]
        if not found and not text_fits(variant.template.spec, slot_name, text):
            found.append(Problem(field=f"{at}.texts.{slot_name}", code="text_does_not_fit",
                                 message=f"The text for {slot_name!r} doesn't fit on this product even at the "
                                         "smallest size; please shorten it."))
        problems += found
    return problems


def _artwork_problems(at: str, artwork_id: str | None, variant: Variant,
                      artworks: Mapping[str, ArtworkInfo]) -> list[Problem]:
    if not artwork_id:
        return [Problem(field=f"{at}.artwork_id", code="artwork_missing",
                        message="Please upload the artwork for this item.")]
    artwork = artworks.get(artwork_id)
    if artwork is None:
        return [Problem(field=f"{at}.artwork_id", code="artwork_unknown",
                        message="We can't find that artwork; please upload it again.")]
    dpi = variant.template.effective_dpi(artwork.width, artwork.height)
    if dpi < variant.template.min_effective_dpi:
        return [Problem(field=f"{at}.artwork_id", code="artwork_resolution_too_low",
                        message=(f"The image is {artwork.width}×{artwork.height} pixels, which would print at "
                                 f"{dpi:.0f} DPI; this product needs at least "
                                 f"{variant.template.min_effective_dpi:.0f} DPI. Please upload a larger image."))]
    return []
