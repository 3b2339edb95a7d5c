"""Checkout rules as pure functions: every problem at once, each with a field path and a code."""

from __future__ import annotations

from core.catalogue import ArtworkInfo, TemplateSpec, Variant
from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.states import Channel, PrintMethod, ShippingSpeed
from core.text import ProhibitedWords
from core.validation import validate_order

SPEC = {"print_area_in": [3.0, 1.0], "dpi": 300, "min_effective_dpi": 150, "colour_profile": "sRGB",
        "bleed_in": 0, "safe_in": 0, "artwork": {"box_in": [0, 0, 3.0, 0.5], "fit": "fit"},
        "texts": [{"name": "tag", "max_chars": 30, "charset": "A-Za-z0-9 ", "box_in": [0, 0.5, 1.0, 0.3],
                   "font": "DejaVuSans-Bold.ttf", "size_pt": [18, 24], "colour": "#000000", "align": "center",
                   "curved": False}]}
VARIANT = Variant(sku="TAG-1", product_id="tag", product_type="tag", print_method=PrintMethod.UV, price_cents=500,
                  template=TemplateSpec.from_spec("tag", 1, SPEC))
ART = ArtworkInfo(id="art_1", width=900, height=150, sha256="0" * 64)


def order(text: str, quantity: int = 1) -> PlaceOrder:
    return PlaceOrder(channel=Channel.API, external_id="x-1", customer=CustomerDetails(name="Ada", email="a@b.co"),
                      shipping_address=Address(name="Ada", line1="1 Rd", city="Leeds", postal_code="LS1 1AA",
                                               country="GB"),
                      shipping_speed=ShippingSpeed.STANDARD,
                      lines=(LineRequest(sku="TAG-1", quantity=quantity, artwork_id="art_1", texts={"tag": text}),))


def check(cmd: PlaceOrder, available: int = 5) -> dict[str, str]:
    problems = validate_order(cmd, variants={"TAG-1": VARIANT}, artworks={"art_1": ART},
                              available={"TAG-1": available}, prohibited=ProhibitedWords(["nike"]), max_quantity=10)
    return {p.field: p.code for p in problems}


def test_a_text_that_fits_its_box_passes():
    assert check(order("Hi")) == {}


def test_a_text_within_the_character_limit_that_cannot_fit_the_box_even_at_the_smallest_size_is_refused():
    assert check(order("WWWWWWWWWWWWWWWWWWWWWWWWWWWWWW")) == {"lines[0].texts.tag": "text_does_not_fit"}


def test_stock_is_checked_against_the_total_units_of_a_sku_in_the_order():
    assert check(order("Hi", quantity=6), available=5) == {"lines[0].sku": "out_of_stock"}


def test_a_prohibited_word_is_reported_once_without_a_fit_check():
    assert check(order("N1KE")) == {"lines[0].texts.tag": "prohibited_word"}
