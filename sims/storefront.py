"""Storefront simulator: realistic orders, some invalid on purpose, sent to Pressroom's HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import math
import os
import random
import re
import signal
import sys
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
from PIL import Image, ImageChops, ImageDraw, ImageFont
from tqdm import tqdm

from sims import storefront_data as data

log = logging.getLogger(__name__)
T = TypeVar("T")

CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "db" / "seed_data" / "catalogue.json"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_SHOPIFY_SECRET = "shpss_dev_secret"
SHOP_DOMAIN = "pressroom-demo.myshopify.com"
MAX_SIDE_PX = 3000
DPI_MARGIN = 1.05


# --------------------------------------------------------------------------------------------------
# Catalogue: only the public file, never our own packages.


@dataclass(frozen=True, slots=True, kw_only=True)
class TextSlot:
    """A custom-text slot of a template; the charset is a regex class body, as in the catalogue."""

    name: str
    max_chars: int
    charset: str

    def allows(self, text: str) -> bool:
        """Whether the API would accept this text for the slot on length and characters alone."""
        return 0 < len(text) <= self.max_chars and _charset_pattern(self.charset).fullmatch(text) is not None

    def allows_characters(self, text: str) -> bool:
        """Whether every character is in the slot's charset, whatever the length."""
        return _charset_pattern(self.charset).fullmatch(text) is not None


@lru_cache(maxsize=64)
def _charset_pattern(body: str) -> re.Pattern[str]:
    return re.compile(f"[{body}]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """One sellable SKU of a product."""

    sku: str
    colour: str
    size: str
    price_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """What the storefront needs of a product line to build orders its template will accept."""

    id: str
    name: str
    product_type: str
    box_in: tuple[float, float]
    fit: str
    min_effective_dpi: float
    slots: tuple[TextSlot, ...]
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalogue:
    """The public product catalogue as the storefront sees it."""

    products: tuple[Product, ...]
    currency: str
    express_surcharge_cents: int

    @property
    def skus(self) -> frozenset[str]:
        return frozenset(v.sku for p in self.products for v in p.variants)

    def product(self, product_id: str) -> Product:
        return next(p for p in self.products if p.id == product_id)


def load_catalogue(path: Path | str = CATALOGUE_PATH) -> Catalogue:
    """Read the published catalogue file, the same one a real storefront would sync its listings from."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    charsets: dict[str, str] = raw.get("charsets", {})
    products = []
    for p in raw["products"]:
        template = p["template"]
        box = template["artwork"]["box_in"]
        slots = tuple(
            TextSlot(name=t["name"], max_chars=int(t["max_chars"]),
                     charset=charsets.get(t["charset"], t["charset"]))
            for t in template.get("texts", [])
        )
        variants = tuple(
            Variant(sku=v["sku"], colour=v["colour"], size=v["size"], price_cents=int(v["price_cents"]))
            for v in p["variants"]
        )
        products.append(
            Product(
                id=p["id"],
                name=p["name"],
                product_type=p["product_type"],
                box_in=(float(box[2]), float(box[3])),
                fit=template["artwork"]["fit"],
                min_effective_dpi=float(template["min_effective_dpi"]),
                slots=slots,
                variants=variants,
            )
        )
    return Catalogue(
        products=tuple(products),
        currency=raw.get("currency", "USD"),
        express_surcharge_cents=int(raw.get("express_surcharge_cents", 0)),
    )


def effective_dpi(width_px: int, height_px: int, box_in: tuple[float, float], fit: str) -> float:
    """Pixels per printed inch once the artwork is scaled into its box.

    "fit" shrinks the artwork until it fits inside the box, so the tighter dimension sets the scale and the
    effective DPI is the larger of the two ratios; "fill" enlarges it until it covers the box (cropping the
    rest), so the effective DPI is the smaller ratio.
    """
    ratio_w, ratio_h = width_px / box_in[0], height_px / box_in[1]
    return max(ratio_w, ratio_h) if fit == "fit" else min(ratio_w, ratio_h)


# --------------------------------------------------------------------------------------------------
# Artwork: a plan (size, style, seed) that renders to real image bytes only when it is uploaded.


class ArtworkStyle(StrEnum):
    PHOTO = "photo"
    FLAT = "flat"
    HOSTILE_SVG = "hostile_svg"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtworkSpec:
    """An artwork to upload, kept as a plan so thousands of orders can be generated without drawing them."""

    key: str
    width: int
    height: int
    style: ArtworkStyle
    seed: int
    popular: bool = False

    @property
    def filename(self) -> str:
        # The hostile file lies about what it is: an SVG named like a PNG.
        return f"{self.key}.jpg" if self.style is ArtworkStyle.PHOTO else f"{self.key}.png"

    @property
    def content_type(self) -> str:
        return "image/jpeg" if self.style is ArtworkStyle.PHOTO else "image/png"

    def render(self) -> bytes:
        """Draw the file; deterministic for a given spec so a rerun uploads the same bytes."""
        if self.style is ArtworkStyle.HOSTILE_SVG:
            return data.HOSTILE_SVG
        return make_artwork(random.Random(self.seed), self.width, self.height, style=self.style)


def make_artwork(rng: random.Random, width: int, height: int, *, style: str = ArtworkStyle.FLAT) -> bytes:
    """Draw a plausible customer design: a photo-like JPEG or a flat-colour PNG with shapes and a word.

    Real uploads are what the intake's sniffing, re-encoding and DPI checks must handle, so these are real
    encoded images, not placeholders.
    """
    if style == ArtworkStyle.PHOTO:
        return _photo(rng, width, height)
    return _flat_art(rng, width, height)


def _photo(rng: random.Random, width: int, height: int) -> bytes:
    # A smooth random colour field upsampled from a tiny grid reads like an out-of-focus photograph.
    grid_w, grid_h = rng.randint(3, 7), rng.randint(3, 7)
    grid = Image.frombytes("RGB", (grid_w, grid_h), rng.randbytes(grid_w * grid_h * 3))
    small = grid.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.BICUBIC)
    image = small.resize((width, height), Image.Resampling.BILINEAR)  # two steps: a quarter of the work
    draw = ImageDraw.Draw(image, "RGBA")
    short = min(width, height)
    for _ in range(rng.randint(3, 9)):
        r = rng.randint(max(1, short // 12), max(2, short // 3))
        cx, cy = rng.randrange(width), rng.randrange(height)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*_colour(rng), rng.randint(40, 140)))
    # Sensor grain from a seeded tile (Pillow's own noise is not seedable), added at ±8 levels.
    tile = Image.frombytes("L", (256, 256), rng.randbytes(256 * 256)).point(lambda v: 120 + v // 16)
    grain = Image.new("L", (width, height))
    for x in range(0, width, 256):
        for y in range(0, height, 256):
            grain.paste(tile, (x, y))
    image = ImageChops.add(image, Image.merge("RGB", (grain, grain, grain)), offset=-128)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _flat_art(rng: random.Random, width: int, height: int) -> bytes:
    # Drawn straight onto a palette image: flat art has few colours, and this keeps the PNG small and quick.
    palette = [_colour(rng) for _ in range(rng.randint(3, 5))]
    bands = 24
    top, bottom = palette[0], palette[1]
    gradient = [tuple(round(a + (b - a) * k / (bands - 1)) for a, b in zip(top, bottom, strict=True))
                for k in range(bands)]
    colours = gradient + palette
    image = Image.new("P", (width, height), 0)
    image.putpalette([channel for colour in colours for channel in colour])
    draw = ImageDraw.Draw(image)
    band = -(-height // bands)
    for k in range(bands):  # a stepped gradient, like a screen-printed sunset
        draw.rectangle((0, k * band, width, (k + 1) * band), fill=k)
    short = min(width, height)
    for _ in range(rng.randint(4, 12)):
        colour = bands + rng.randrange(1, len(palette))
        x, y = rng.randrange(width), rng.randrange(height)
        size = rng.randint(max(1, short // 14), max(2, short // 3))
        shape = rng.choice(("rect", "ellipse", "triangle", "star"))
        if shape == "rect":
            draw.rectangle((x, y, x + size, y + size * rng.uniform(0.4, 1.6)), fill=colour)
        elif shape == "ellipse":
            draw.ellipse((x - size, y - size, x + size, y + size), fill=colour)
        elif shape == "triangle":
            draw.polygon([(x, y - size), (x - size, y + size), (x + size, y + size)], fill=colour)
        else:
            draw.regular_polygon((x, y, size), n_sides=rng.choice((5, 6, 8)), rotation=rng.randint(0, 90),
                                 fill=colour)
    word = rng.choice(("RETRO", "SUMMER", "WILD", "CREW", "VIBES", "2026", "LOCAL", "BOLD", "OCEAN", "PEAK"))
    font = ImageFont.load_default(size=max(12, short // 6))
    draw.text((width / 2, height / 2), word, font=font, anchor="mm", fill=len(colours) - 1,
              stroke_width=max(1, short // 150), stroke_fill=bands)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def artwork_size_for(rng: random.Random, product: Product) -> tuple[int, int]:
    """A pixel size that clears the template's minimum effective DPI with a little margin, kept small.

    Both dimensions clear the minimum on their own, so the size holds whichever way the template scales
    ("fit" or "fill") and whatever the artwork's aspect ratio; sides are capped near 3,000 px unless the
    print area needs more.
    """
    floor = [math.ceil(side * product.min_effective_dpi * DPI_MARGIN) for side in product.box_in]
    target = product.min_effective_dpi * rng.uniform(1.08, 1.3)
    sides = [math.ceil(side * target * rng.uniform(1.0, 1.15)) for side in product.box_in]
    width, height = (max(low, min(px, MAX_SIDE_PX)) for low, px in zip(floor, sides, strict=True))
    return width, height


def too_small_size_for(rng: random.Random, product: Product) -> tuple[int, int]:
    """A size at a fraction of the minimum DPI: a thumbnail saved off a web page, far too small to print."""
    share = rng.uniform(0.15, 0.35)
    return tuple(max(48, math.floor(side * product.min_effective_dpi * share)) for side in product.box_in)


@dataclass(slots=True)
class ArtworkPool:
    """Popular designs per product line, reused across orders so the API sees the same artwork id again.

    Mutable on purpose: it is the storefront's memory of designs it has already planned (and, at send
    time, uploaded once).
    """

    reuse_share: float = 0.4
    designs_per_product: int = 5
    designs: dict[str, list[ArtworkSpec]] = field(default_factory=dict)
    _counter: int = 0

    def pick(self, rng: random.Random, product: Product, *, order_key: str) -> ArtworkSpec:
        """A popular design ~reuse_share of the time, otherwise a one-off design for this order."""
        if rng.random() < self.reuse_share:
            pool = self.designs.setdefault(product.id, [])
            slot = rng.randrange(self.designs_per_product)
            if slot >= len(pool):
                pool.append(self._new(rng, product, key=f"design-{product.id}-{len(pool) + 1}", popular=True))
                return pool[-1]
            return pool[slot]
        self._counter += 1
        return self._new(rng, product, key=f"art-{order_key}-{self._counter}", popular=False)

    def _new(self, rng: random.Random, product: Product, *, key: str, popular: bool) -> ArtworkSpec:
        width, height = artwork_size_for(rng, product)
        style = ArtworkStyle.PHOTO if rng.random() < 0.35 else ArtworkStyle.FLAT
        return ArtworkSpec(key=key, width=width, height=height, style=style, seed=rng.getrandbits(63),
                           popular=popular)


# --------------------------------------------------------------------------------------------------
# Orders: pure generation from (rng, catalogue, pool); the payload is built once artwork ids are known.


class Channel(StrEnum):
    STOREFRONT = "storefront"
    SHOPIFY = "shopify"


class InvalidKind(StrEnum):
    """The known ways an order goes wrong; each value is the error code the API must answer with."""

    UNKNOWN_SKU = "unknown_sku"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    TEXT_TOO_LONG = "text_too_long"
    TEXT_CHARACTERS = "text_characters"
    PROHIBITED_WORD = "prohibited_word"
    ARTWORK_RESOLUTION_TOO_LOW = "artwork_resolution_too_low"
    ADDRESS_INCOMPLETE = "address_incomplete"
    UNSUPPORTED_FORMAT = "unsupported_format"


class Stage(StrEnum):
    UPLOAD = "upload"
    ORDER = "order"


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """The refusal a deliberately invalid order must get: at which step, on which field, with which code."""

    stage: Stage
    field: str
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    first_name: str
    last_name: str
    email: str
    phone: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    first_name: str
    last_name: str
    line1: str
    line2: str
    city: str
    region: str
    postal_code: str
    country: str
    phone: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimLine:
    product_id: str
    product_name: str
    sku: str
    variant_title: str
    price_cents: int
    quantity: int
    artwork_key: str
    texts: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationOptions:
    """Knobs of the order mix; defaults are the storefront's normal day."""

    invalid_rate: float = 0.03
    shopify_share: float = 0.3
    express_share: float = 0.15
    hostile_uploads: bool = True
    number_base: int = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOrder:
    """One simulated checkout: who, what, which artworks to upload first, and any refusal it must get."""

    sequence: int
    external_id: str
    channel: Channel
    customer: Person
    address: Address
    express: bool
    lines: tuple[SimLine, ...]
    artworks: tuple[ArtworkSpec, ...]
    expected: Expectation | None
    idempotency_key: str
    shopify_id: int
    shopify_customer_id: int
    webhook_id: str
    created_at: str

    @property
    def is_valid(self) -> bool:
        return self.expected is None

    @property
    def label(self) -> str:
        """How staff would find this order: the storefront's id, or the Shopify order name."""
        if self.channel is Channel.SHOPIFY:
            return f"shopify #{1000 + self.sequence} ({self.shopify_id})"
        return self.external_id

    def payload(self, artwork_ids: Mapping[str, str]) -> dict[str, Any]:
        """The request body for this order's channel, once the artworks have ids from the API."""
        if self.channel is Channel.SHOPIFY:
            return shopify_payload(self, artwork_ids)
        return native_payload(self, artwork_ids)


def generate_order(
    rng: random.Random,
    catalogue: Catalogue,
    artwork_pool: ArtworkPool,
    *,
    sequence: int,
    now: datetime,
    options: GenerationOptions = GenerationOptions(),
) -> SimOrder:
    """Plan one realistic order (maybe with one known defect) without network calls or drawing images."""
    region = rng.choices(data.REGIONS, weights=[r.weight for r in data.REGIONS], k=1)[0]
    customer = _person(rng, region)
    recipient = _person(rng, region) if rng.random() < 0.1 else customer  # a gift, shipped to someone else
    address = _address(rng, region, recipient)
    order_key = f"{options.number_base + sequence}"
    context = _text_context(rng, region, customer, address)
    line_count = _weighted(rng, data.LINE_COUNT_WEIGHTS)
    lines: list[SimLine] = []
    artworks: dict[str, ArtworkSpec] = {}
    for _ in range(line_count):
        product = _pick_product(rng, catalogue.products)
        line, art = _line(rng, product, artwork_pool, context, order_key=order_key)
        lines.append(line)
        artworks.setdefault(art.key, art)
    channel = Channel.SHOPIFY if rng.random() < options.shopify_share else Channel.STOREFRONT
    express = rng.random() < options.express_share

    expected = None
    if rng.random() < options.invalid_rate:
        kinds = {k: w for k, w in data.INVALID_KIND_WEIGHTS.items()
                 if options.hostile_uploads or k != InvalidKind.UNSUPPORTED_FORMAT}
        kind = InvalidKind(_weighted(rng, kinds))
        lines, address, artworks, expected = _break(
            rng, kind, catalogue, lines=lines, address=address, artworks=artworks, context=context,
            order_key=order_key, artwork_pool=artwork_pool,
        )
        if kind is InvalidKind.UNSUPPORTED_FORMAT:
            channel = Channel.STOREFRONT  # refused at upload: the checkout never happens on either channel

    return SimOrder(
        sequence=sequence,
        external_id=f"SF-{options.number_base + sequence}",
        channel=channel,
        customer=customer,
        address=address,
        express=express,
        lines=tuple(lines),
        artworks=tuple(artworks.values()),
        expected=expected,
        idempotency_key=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        shopify_id=5_100_000_000_000 + options.number_base + sequence,
        shopify_customer_id=7_200_000_000_000 + rng.randrange(10**9),
        webhook_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        created_at=now.astimezone(UTC).isoformat(timespec="seconds"),
    )


class OrderPlanner:
    """A seeded stream of orders: the same seed gives the same orders, ids and artworks."""

    def __init__(self, catalogue: Catalogue, *, seed: int | None, options: GenerationOptions | None = None,
                 reuse_share: float = 0.4) -> None:
        self.rng = random.Random(seed)
        self.catalogue = catalogue
        base = options or GenerationOptions()
        # A seeded block of order numbers keeps reruns idempotent and different seeds from colliding.
        self.options = replace(base, number_base=self.rng.randrange(1, 90_000) * 10_000)
        self.pool = ArtworkPool(reuse_share=reuse_share)
        self.sequence = 0

    def next_order(self, *, now: datetime) -> SimOrder:
        self.sequence += 1
        return generate_order(self.rng, self.catalogue, self.pool, sequence=self.sequence, now=now,
                              options=self.options)


def _weighted(rng: random.Random, weights: Mapping[T, float]) -> T:
    return rng.choices(list(weights), weights=list(weights.values()), k=1)[0]


def _pick_product(rng: random.Random, products: Sequence[Product]) -> Product:
    # A type's weight is shared between its products (two poster sizes split the poster share).
    per_type = Counter(p.product_type for p in products)
    weights = [data.PRODUCT_TYPE_WEIGHTS.get(p.product_type, 1.0) / per_type[p.product_type]
               for p in products]
    return rng.choices(products, weights=weights, k=1)[0]


def _fold(text: str) -> str:
    """ASCII-fold a name the way a storefront's personalisation box would suggest it (Müller → Muller)."""
    text = text.replace("ß", "ss").replace("Æ", "AE").replace("æ", "ae").replace("Ø", "O").replace("ø", "o")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _person(rng: random.Random, region: data.Region) -> Person:
    first, last = rng.choice(region.first_names), rng.choice(region.last_names)
    f, la = (re.sub(r"[^a-z]", "", _fold(n).lower()) for n in (first, last))
    local = rng.choice((f"{f}.{la}", f"{f}{la}", f"{f[0]}{la}", f"{f}.{la}{rng.randint(1, 99)}",
                        f"{f}_{la}{rng.randint(70, 99)}", f"{f}{rng.randint(100, 999)}", f"{la}.{f}"))
    return Person(first_name=first, last_name=last, email=f"{local}@{rng.choice(data.EMAIL_DOMAINS)}",
                  phone=_phone(rng, rng.choice(region.cities)))


def _phone(rng: random.Random, city: data.City) -> str:
    return data.PHONE_FORMATS[city.country].format(
        area=city.phone_area, d1=rng.randint(0, 9), d2=f"{rng.randint(0, 99):02d}",
        d3=f"{rng.randint(0, 999):03d}", d4=f"{rng.randint(1000, 9999)}",
    )


def _address(rng: random.Random, region: data.Region, person: Person) -> Address:
    city = rng.choice(region.cities)
    street = rng.choice(city.streets or region.streets)
    number = rng.randint(1, region.max_house_number)
    line1 = f"{street} {number}" if region.number_after_street else f"{number} {street}"
    line2 = ""
    if rng.random() < 0.25:
        line2 = rng.choice(region.unit_formats).format(n=rng.randint(1, 30))
    return Address(first_name=person.first_name, last_name=person.last_name, line1=line1, line2=line2,
                   city=city.city, region=city.region, postal_code=rng.choice(city.postal_codes),
                   country=city.country, phone=_phone(rng, city))


def _text_context(rng: random.Random, region: data.Region, customer: Person,
                  address: Address) -> dict[str, str]:
    others = [n for n in region.first_names if n != customer.first_name]
    return {
        "first": _fold(customer.first_name),
        "last": _fold(customer.last_name),
        "first2": _fold(rng.choice(others)),
        "year": str(rng.randint(2024, 2028)),
        "est": str(rng.randint(1968, 2025)),
        "city": _fold(address.city),
    }


def _initials(rng: random.Random, context: Mapping[str, str]) -> str:
    first, last = context["first"], context["last"]
    middle = rng.choice("ABCDEFGHJKLMNPRSTW") if rng.random() < 0.5 else ""
    return (first[:1] + middle + last.replace("'", "").strip()[:1]).upper()


def _slot_text(rng: random.Random, slot: TextSlot, context: Mapping[str, str]) -> str:
    """A phrase a customer would type into this slot that fits its charset and length."""
    if slot.name == "initials" or not slot.allows_characters("a b"):
        text = _initials(rng, context)
        if slot.allows(text):
            return text
    pool = data.SLOT_TEXTS.get(slot.name, data.HEADLINE_TEXTS)
    for _ in range(8):  # a few random picks first; a full scan only for a slot that few phrases fit
        text = _fold(rng.choice(pool).format(**context))
        if slot.allows(text):
            return text
    for template in (*pool, *data.HEADLINE_TEXTS, *data.NAME_TEXTS, "{first}"):
        text = _fold(template.format(**context))
        if slot.allows(text):
            return text
    letters = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if slot.allows_characters(c)] or ["A"]
    return "".join(rng.choice(letters) for _ in range(min(3, slot.max_chars)))


def _variant(rng: random.Random, product: Product) -> Variant:
    weights = [data.SIZE_WEIGHTS.get(v.size, 10.0) for v in product.variants]
    return rng.choices(product.variants, weights=weights, k=1)[0]


def _line(rng: random.Random, product: Product, pool: ArtworkPool, context: Mapping[str, str], *,
          order_key: str) -> tuple[SimLine, ArtworkSpec]:
    variant = _variant(rng, product)
    art = pool.pick(rng, product, order_key=order_key)
    texts = {slot.name: _slot_text(rng, slot, context) for slot in product.slots}
    title = f"{variant.colour.title()} / {variant.size}"
    line = SimLine(product_id=product.id, product_name=product.name, sku=variant.sku, variant_title=title,
                   price_cents=variant.price_cents, quantity=_weighted(rng, data.QUANTITY_WEIGHTS),
                   artwork_key=art.key, texts=texts)
    return line, art


def _bad_text(rng: random.Random, kind: InvalidKind, slot: TextSlot,
              context: Mapping[str, str]) -> str | None:
    """A text that breaks exactly one rule of the slot (and no other), or None if the slot cannot show it."""
    def fmt(template: str) -> str:
        return template.format(**context)

    if kind is InvalidKind.TEXT_TOO_LONG:
        options = [_fold(fmt(t)) for t in data.LONG_TEXTS]
        # Consonants only: random letters must not spell a prohibited word and earn a second error code.
        letters = "".join(c for c in "BCDFGHJKLMNPQRSTVWXZ" if slot.allows_characters(c))
        if letters:
            options.append("".join(rng.choice(letters) for _ in range(slot.max_chars + rng.randint(1, 3))))
        fits = [t for t in options if len(t) > slot.max_chars and slot.allows_characters(t)]
    elif kind is InvalidKind.TEXT_CHARACTERS:
        options = [fmt(t) for t in data.BAD_CHARACTER_TEXTS + data.BAD_INITIALS]
        fits = [t for t in options if 0 < len(t) <= slot.max_chars and not slot.allows_characters(t)]
    else:
        options = list(data.OBFUSCATED_PROHIBITED + data.CAPITAL_PROHIBITED)
        fits = [t for t in options if slot.allows(t)]
    return rng.choice(fits) if fits else None


def _break(
    rng: random.Random,
    kind: InvalidKind,
    catalogue: Catalogue,
    *,
    lines: list[SimLine],
    address: Address,
    artworks: dict[str, ArtworkSpec],
    context: Mapping[str, str],
    order_key: str,
    artwork_pool: ArtworkPool,
) -> tuple[list[SimLine], Address, dict[str, ArtworkSpec], Expectation]:
    """Introduce exactly one known defect, and say which field and code the API must refuse it with."""
    lines = list(lines)
    i = rng.randrange(len(lines))
    line = lines[i]
    product = catalogue.product(line.product_id)

    if kind is InvalidKind.ADDRESS_INCOMPLETE:
        missing = rng.choice(("city", "postal_code"))
        # A blank form field, as a checkout without required-field checks would post it.
        address = replace(address, **{missing: ""})
        return lines, address, artworks, Expectation(stage=Stage.ORDER, field=f"shipping_address.{missing}",
                                                     code=kind.value)
    if kind is InvalidKind.UNKNOWN_SKU:
        sku = rng.choice([s for s in data.UNKNOWN_SKUS if s not in catalogue.skus])
        lines[i] = replace(line, sku=sku)
        return lines, address, artworks, Expectation(stage=Stage.ORDER, field=f"lines[{i}].sku",
                                                     code=kind.value)
    if kind is InvalidKind.QUANTITY_OUT_OF_RANGE:
        lines[i] = replace(line, quantity=rng.choice((0, 1000)))
        return lines, address, artworks, Expectation(stage=Stage.ORDER, field=f"lines[{i}].quantity",
                                                     code=kind.value)
    if kind in (InvalidKind.ARTWORK_RESOLUTION_TOO_LOW, InvalidKind.UNSUPPORTED_FORMAT):
        artworks = dict(artworks)
        if kind is InvalidKind.ARTWORK_RESOLUTION_TOO_LOW:
            width, height = too_small_size_for(rng, product)
            style = rng.choice((ArtworkStyle.PHOTO, ArtworkStyle.FLAT))
            art = ArtworkSpec(key=f"thumb-{order_key}", width=width, height=height, style=style,
                              seed=rng.getrandbits(63))
            expectation = Expectation(stage=Stage.ORDER, field=f"lines[{i}].artwork_id", code=kind.value)
        else:
            art = ArtworkSpec(key=f"upload-{order_key}", width=4000, height=4000,
                              style=ArtworkStyle.HOSTILE_SVG, seed=0)
            expectation = Expectation(stage=Stage.UPLOAD, field="file", code=kind.value)
        lines[i] = replace(line, artwork_key=art.key)
        artworks = {s.key: s for s in artworks.values() if any(ln.artwork_key == s.key for ln in lines)}
        artworks[art.key] = art
        return lines, address, artworks, expectation

    # Text defects: pick a slot on the chosen line that can show the defect, or swap in a product that can.
    choices = [(slot, text) for slot in product.slots
               if (text := _bad_text(rng, kind, slot, context)) is not None]
    if not choices:
        able = [p for p in catalogue.products
                if any(_bad_text(rng, kind, slot, context) is not None for slot in p.slots)]
        product = _pick_product(rng, able)
        new_line, art = _line(rng, product, artwork_pool, context, order_key=order_key)
        lines[i] = new_line
        artworks = {s.key: s for s in artworks.values() if any(ln.artwork_key == s.key for ln in lines)}
        artworks.setdefault(art.key, art)
        line = new_line
        choices = [(slot, text) for slot in product.slots
                   if (text := _bad_text(rng, kind, slot, context)) is not None]
    slot, text = rng.choice(choices)
    lines[i] = replace(line, texts={**line.texts, slot.name: text})
    return lines, address, artworks, Expectation(stage=Stage.ORDER, field=f"lines[{i}].texts.{slot.name}",
                                                 code=kind.value)


# --------------------------------------------------------------------------------------------------
# Payloads: the native contract (docs/API.md) and Shopify's orders/create webhook.


def native_payload(order: SimOrder, artwork_ids: Mapping[str, str]) -> dict[str, Any]:
    """Body of POST /v1/orders, field for field as docs/API.md shows it."""
    a, c = order.address, order.customer
    return {
        "external_id": order.external_id,
        "channel": Channel.STOREFRONT.value,
        "customer": {"name": c.name, "email": c.email, "phone": c.phone},
        "shipping_address": {"name": a.name, "line1": a.line1, "line2": a.line2, "city": a.city,
                             "region": a.region, "postal_code": a.postal_code, "country": a.country},
        "shipping_speed": "express" if order.express else "standard",
        "lines": [
            {"sku": ln.sku, "quantity": ln.quantity, "artwork_id": artwork_ids[ln.artwork_key],
             "texts": dict(ln.texts)}
            for ln in order.lines
        ],
    }


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def shopify_payload(order: SimOrder, artwork_ids: Mapping[str, str], *, express_cents: int = 1200,
                    currency: str = "USD") -> dict[str, Any]:
    """Shopify's orders/create body: the subset of the real shape a POD app reads, with real field names."""
    c, a = order.customer, order.address
    subtotal = sum(ln.price_cents * ln.quantity for ln in order.lines)
    shipping = express_cents if order.express else 0
    number = 1000 + order.sequence  # Shopify numbers a shop's orders from #1001
    address = {
        "first_name": a.first_name, "last_name": a.last_name, "name": a.name, "address1": a.line1,
        "address2": a.line2 or None, "city": a.city, "province_code": a.region, "zip": a.postal_code,
        "country_code": a.country, "phone": a.phone,
    }
    return {
        "id": order.shopify_id,
        "name": f"#{number}",
        "order_number": number,
        "email": c.email,
        "phone": c.phone,
        "created_at": order.created_at,
        "currency": currency,
        "financial_status": "paid",
        "subtotal_price": _money(subtotal),
        "total_shipping_price_set": {"shop_money": {"amount": _money(shipping), "currency_code": currency}},
        "total_tax": "0.00",
        "total_price": _money(subtotal + shipping),
        "customer": {"id": order.shopify_customer_id, "first_name": c.first_name, "last_name": c.last_name,
                     "email": c.email, "phone": c.phone},
        "shipping_address": address,
        "billing_address": {**address, "first_name": c.first_name, "last_name": c.last_name, "name": c.name},
        "shipping_lines": [
            {"code": "express", "title": "Express (2-3 business days)", "price": _money(shipping)}
            if order.express else {"code": "standard", "title": "Standard", "price": "0.00"}
        ],
        "line_items": [
            {
                "id": order.shopify_id * 10 + n,
                "sku": ln.sku,
                "quantity": ln.quantity,
                "title": ln.product_name,
                "variant_title": ln.variant_title,
                "name": f"{ln.product_name} - {ln.variant_title}",
                "price": _money(ln.price_cents),
                "requires_shipping": True,
                "fulfillment_service": "manual",
                "properties": [
                    {"name": "_artwork_id", "value": artwork_ids[ln.artwork_key]},
                    *({"name": f"text:{slot}", "value": text} for slot, text in ln.texts.items()),
                ],
            }
            for n, ln in enumerate(order.lines, start=1)
        ],
    }


def sign_shopify(body: bytes, secret: str) -> str:
    """Shopify's webhook signature: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def build_request(order: SimOrder, artwork_ids: Mapping[str, str], *, shopify_secret: str,
                  catalogue: Catalogue | None = None) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and exact body bytes for the order's channel (the signature covers these bytes)."""
    if order.channel is Channel.SHOPIFY:
        payload = shopify_payload(
            order, artwork_ids,
            express_cents=catalogue.express_surcharge_cents if catalogue else 1200,
            currency=catalogue.currency if catalogue else "USD",
        )
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": sign_shopify(body, shopify_secret),
            "X-Shopify-Webhook-Id": order.webhook_id,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": "2025-07",
        }
        return "/webhooks/shopify/orders-create", headers, body
    body = json.dumps(native_payload(order, artwork_ids), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json", "Idempotency-Key": order.idempotency_key}
    return "/v1/orders", headers, body


# --------------------------------------------------------------------------------------------------
# Judging responses: did the API answer the way an honest storefront expects?


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED_AS_EXPECTED = "rejected_as_expected"
    DEFERRED = "deferred"
    DECLINED = "declined"
    MISMATCH = "mismatch"


# Refusals that are business answers, not validation verdicts: a valid order can meet them honestly.
_BUSINESS_CODES = frozenset({"out_of_stock"})


def _field_matches(expected: str, actual: str) -> bool:
    # The API may point at the field or at its parent object ("shipping_address" for a blank city).
    return actual == expected or expected.startswith(actual + ".") or actual.startswith(expected + ".")


def problem_errors(problem: Any) -> list[dict[str, Any]]:
    if isinstance(problem, dict) and isinstance(problem.get("errors"), list):
        return [e for e in problem["errors"] if isinstance(e, dict)]
    return []


def judge(expected: Expectation | None, *, channel: Channel, status: int,
          problem: Any) -> tuple[Outcome, str]:
    """Classify one answer against the order's label; the reason explains any mismatch."""
    errors = problem_errors(problem)
    codes = [e.get("code") for e in errors]
    if expected is None:
        if 200 <= status < 300:
            return Outcome.ACCEPTED, ""
        if status == 402 or (status in (409, 422) and codes and set(codes) <= _BUSINESS_CODES):
            return Outcome.DECLINED, f"HTTP {status} {codes or ''}".strip()
        return Outcome.MISMATCH, f"valid order refused with HTTP {status} {codes}"
    if 200 <= status < 300:
        if channel is Channel.SHOPIFY and expected.stage is Stage.ORDER:
            # A webhook receiver may acknowledge first and validate later: the refusal is then out of sight.
            return Outcome.DEFERRED, ""
        return Outcome.MISMATCH, f"expected {expected.code} on {expected.field}, got HTTP {status}"
    hits = [e for e in errors if e.get("code") == expected.code
            and (channel is Channel.SHOPIFY or _field_matches(expected.field, str(e.get("field", ""))))]
    if status == 422 and hits:
        others = [e for e in errors if e not in hits]
        if others:
            extra = [e.get("code") for e in others]
            return Outcome.MISMATCH, f"expected only {expected.code}, also got {extra}"
        return Outcome.REJECTED_AS_EXPECTED, ""
    return Outcome.MISMATCH, f"expected 422 {expected.code} on {expected.field}, got HTTP {status} {codes}"


# --------------------------------------------------------------------------------------------------
# Sending over real HTTP with retries, backoff and Retry-After.


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Sender:
    """HTTP side of the storefront: retries what is safe to retry (every call carries its idempotency key)."""

    def __init__(self, client: httpx.AsyncClient, *, max_attempts: int = 6, max_delay: float = 30.0,
                 jitter: random.Random | None = None) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.max_delay = max_delay
        self.jitter = jitter or random.Random()

    def _backoff(self, attempt: int) -> float:
        return min(self.max_delay, 0.5 * 2 ** (attempt - 1)) * self.jitter.uniform(0.5, 1.0)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying connection errors and 5xx with backoff and 429/503 after their Retry-After."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.max_attempts:
                    raise
                delay = self._backoff(attempt)
                log.warning("storefront: %s %s failed (%s); retry %d in %.1fs", method, path,
                            type(exc).__name__, attempt, delay)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                if attempt == self.max_attempts:
                    return response
                hinted = retry_after_seconds(response.headers.get("Retry-After"))
                delay = min(self.max_delay, hinted) if hinted is not None else self._backoff(attempt)
                log.warning("storefront: %s %s answered %d; retry %d in %.1fs", method, path,
                            response.status_code, attempt, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def wait_healthy(self, timeout: float) -> bool:
        """Poll /healthz until it answers 200: under `make run` the API may still be starting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = await self.client.get("/healthz", timeout=2.0)
                if response.status_code == 200:
                    return True
            except httpx.TransportError:
                pass  # not listening yet; that is what we are waiting for
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)


@dataclass(slots=True, kw_only=True)
class Problem:
    order: str
    expected: Expectation | None
    reason: str
    status: int | None
    body: Any


@dataclass(slots=True)
class Tally:
    """Running counts for the progress bar and the closing summary."""

    sent: int = 0
    accepted: int = 0
    accepted_by_channel: Counter[str] = field(default_factory=Counter)
    rejected_as_expected: Counter[str] = field(default_factory=Counter)
    deferred: int = 0
    declined: int = 0
    uploads: int = 0
    reuses: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def unexpected(self) -> int:
        return len(self.problems)

    @property
    def finished(self) -> int:
        return (self.accepted + sum(self.rejected_as_expected.values()) + self.deferred + self.declined
                + self.unexpected)


def format_summary(tally: Tally, elapsed: float) -> str:
    """The closing report: what was sent, what the API said, and every mismatch with its problem JSON."""
    rate = tally.finished / elapsed if elapsed > 0 else 0.0
    by_channel = ", ".join(f"{k} {v}" for k, v in sorted(tally.accepted_by_channel.items())) or "none"
    by_code = ", ".join(f"{k} {v}" for k, v in sorted(tally.rejected_as_expected.items())) or "none"
    lines = [
        f"storefront sim: {tally.sent} orders sent in {elapsed:.1f} s ({rate:.2f} answered per second)",
        f"  accepted              {tally.accepted:6d}  ({by_channel})",
        f"  rejected as expected  {sum(tally.rejected_as_expected.values()):6d}  ({by_code})",
        f"  deferred by webhook   {tally.deferred:6d}  (invalid Shopify orders acknowledged with 2xx)",
        f"  declined/out of stock {tally.declined:6d}",
        f"  mismatches/failures   {tally.unexpected:6d}",
        f"  artworks uploaded     {tally.uploads:6d}  (popular designs reused {tally.reuses} times)",
    ]
    if tally.sent > tally.finished:
        lines.append(f"  cancelled in flight   {tally.sent - tally.finished:6d}")
    for p in tally.problems:
        label = f"{p.expected.code} on {p.expected.field}" if p.expected else "valid"
        lines.append(f"  ! {p.order} {label}: {p.reason}")
        if p.body is not None:
            lines.append("    " + json.dumps(p.body, ensure_ascii=False)[:2000])
    return "\n".join(lines)


class Storefront:
    """Runs planned orders against the API: uploads artwork once, sends the order, judges the answer."""

    def __init__(self, sender: Sender, catalogue: Catalogue, *, shopify_secret: str, tally: Tally,
                 on_done: Any = None) -> None:
        self.sender = sender
        self.catalogue = catalogue
        self.shopify_secret = shopify_secret
        self.tally = tally
        self.on_done = on_done or (lambda: None)
        self._artwork_ids: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def process(self, order: SimOrder) -> None:
        """Handle one order end to end; any surprise is recorded as a problem, never swallowed."""
        self.tally.sent += 1
        try:
            await self._process(order)
        except Exception as exc:  # noqa: BLE001 - a failed order is a finding for the summary, not a crash
            log.warning("storefront: order %s failed: %s", order.label, exc)
            self._problem(order, f"{type(exc).__name__}: {exc}", None, None)
        finally:
            self.on_done()

    async def _process(self, order: SimOrder) -> None:
        ids: dict[str, str] = {}
        for spec in order.artworks:
            response = await self._upload(spec)
            if isinstance(response, str):
                ids[spec.key] = response
                continue
            body = _json_or_text(response)
            expected = order.expected if order.expected and order.expected.stage is Stage.UPLOAD else None
            if expected is not None and spec.style is ArtworkStyle.HOSTILE_SVG:
                outcome, reason = judge(expected, channel=Channel.STOREFRONT, status=response.status_code,
                                        problem=body)
            else:
                outcome = Outcome.MISMATCH
                reason = f"artwork {spec.key} refused with HTTP {response.status_code}"
            self._record(order, outcome, reason, response.status_code, body)
            return  # a customer whose upload is refused does not reach checkout
        if order.expected is not None and order.expected.stage is Stage.UPLOAD:
            self._problem(order, "hostile upload accepted", None, None)
            return
        path, headers, body = build_request(order, ids, shopify_secret=self.shopify_secret,
                                            catalogue=self.catalogue)
        response = await self.sender.request("POST", path, content=body, headers=headers)
        problem = _json_or_text(response)
        outcome, reason = judge(order.expected, channel=order.channel, status=response.status_code,
                                problem=problem)
        self._record(order, outcome, reason, response.status_code, problem)

    async def _upload(self, spec: ArtworkSpec) -> str | httpx.Response:
        """The artwork id (uploading once per design), or the refusing response."""
        lock = self._locks.setdefault(spec.key, asyncio.Lock())
        async with lock:
            if spec.key in self._artwork_ids:
                self.tally.reuses += 1
                return self._artwork_ids[spec.key]
            content = await asyncio.to_thread(spec.render)
            response = await self.sender.request(
                "POST", "/v1/artwork", files={"file": (spec.filename, content, spec.content_type)},
            )
            if response.status_code != 201:
                return response
            artwork_id = response.json()["id"]
            self.tally.uploads += 1
            if spec.popular:
                self._artwork_ids[spec.key] = artwork_id
            else:
                self._locks.pop(spec.key, None)
            return artwork_id

    def _record(self, order: SimOrder, outcome: Outcome, reason: str, status: int, body: Any) -> None:
        if outcome is Outcome.ACCEPTED:
            self.tally.accepted += 1
            self.tally.accepted_by_channel[order.channel.value] += 1
        elif outcome is Outcome.REJECTED_AS_EXPECTED:
            self.tally.rejected_as_expected[order.expected.code if order.expected else "?"] += 1
        elif outcome is Outcome.DEFERRED:
            self.tally.deferred += 1
        elif outcome is Outcome.DECLINED:
            self.tally.declined += 1
        else:
            self._problem(order, reason, status, body)

    def _problem(self, order: SimOrder, reason: str, status: int | None, body: Any) -> None:
        log.warning("storefront: order %s mismatch: %s", order.label, reason)
        self.tally.problems.append(Problem(order=order.label, expected=order.expected, reason=reason,
                                           status=status, body=body))


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


# --------------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sims.storefront",
                                     description="Send realistic storefront orders to Pressroom's API.")
    parser.add_argument("--url", default=DEFAULT_URL, help="API base URL (default %(default)s)")
    parser.add_argument("--count", type=int, default=None,
                        help="orders to send (default 20, or unlimited when --rate is given)")
    parser.add_argument("--rate", type=float, default=None,
                        help="orders per second (default: as fast as concurrency allows)")
    parser.add_argument("--concurrency", type=int, default=4, help="orders in flight at once (default 4)")
    parser.add_argument("--invalid-rate", type=float, default=0.03,
                        help="share of deliberately invalid orders (default 0.03)")
    parser.add_argument("--shopify-share", type=float, default=0.3,
                        help="share sent as Shopify orders/create webhooks (default 0.3)")
    parser.add_argument("--shopify-secret",
                        default=os.environ.get("SHOPIFY_WEBHOOK_SECRET", DEFAULT_SHOPIFY_SECRET),
                        help="webhook signing secret (default $SHOPIFY_WEBHOOK_SECRET or a dev secret)")
    parser.add_argument("--express-share", type=float, default=0.15, help="share of express orders")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible run")
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE_PATH, help="catalogue JSON file")
    parser.add_argument("--no-hostile", action="store_true", help="never send the hostile SVG upload")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /healthz (default 60)")
    parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout per request in seconds")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any mismatch or failure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log retries and mismatches as they happen")
    args = parser.parse_args(argv)
    if args.count is None and args.rate is None:
        args.count = 20
    for name in ("invalid_rate", "shopify_share", "express_share"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


async def run(args: argparse.Namespace) -> int:
    """Wait for the API, then send orders at the asked pace and print the summary (also on Ctrl-C)."""
    catalogue = load_catalogue(args.catalogue)
    options = GenerationOptions(invalid_rate=args.invalid_rate, shopify_share=args.shopify_share,
                                express_share=args.express_share, hostile_uploads=not args.no_hostile)
    planner = OrderPlanner(catalogue, seed=args.seed, options=options)
    tally = Tally()
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        sender = Sender(client)
        if not await sender.wait_healthy(args.wait):
            print(f"storefront sim: {args.url}/healthz did not answer 200 within {args.wait:.0f} s",
                  file=sys.stderr)
            return 2
        # disable=None: a bar on a terminal, none in a Procfile's log.
        bar = tqdm(total=args.count, unit="order", desc="storefront",
                   disable=True if args.no_progress else None)

        def progress() -> None:
            bar.update(1)
            bar.set_postfix(accepted=tally.accepted, expected=sum(tally.rejected_as_expected.values()),
                            unexpected=tally.unexpected, refresh=False)

        shop = Storefront(sender, catalogue, shopify_secret=args.shopify_secret, tally=tally,
                          on_done=progress)
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers on Windows
            # A Procfile stops processes with SIGTERM: finish like Ctrl-C, with the summary printed.
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
        gate = asyncio.Semaphore(args.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        started = loop.time()
        try:
            sent = 0
            while args.count is None or sent < args.count:
                if args.rate:
                    await asyncio.sleep(max(0.0, started + sent / args.rate - loop.time()))
                # Back-pressure: a slow API slows the storefront down instead of piling up tasks.
                await gate.acquire()
                order = planner.next_order(now=datetime.now(UTC))
                task = asyncio.create_task(shop.process(order))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), gate.release()))
                sent += 1
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            bar.close()
            print(format_summary(tally, loop.time() - started))
    return 1 if args.strict and tally.unexpected else 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: `python -m sims.storefront --count 50 --rate 2`."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143


if __name__ == "__main__":
    sys.exit(main())
