"""Turn a template, an artwork and customer texts into a print file, a PDF where wanted, and a preview."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from core.errors import PressroomError
from core.states import PrintMethod

if TYPE_CHECKING:
    from core.qa import PreparedReference

logger = logging.getLogger(__name__)

# Part of every asset key: bump it whenever the same inputs would now give different pixels or bytes.
RENDERER_VERSION = 1
COLOUR_PROFILE = "sRGB IEC61966-2.1"
PREVIEW_LONG_SIDE = 800
PREVIEW_CONTENT_TYPE = "image/jpeg"
FONTS_DIR = Path(__file__).with_name("fonts")
# Twice the biggest catalogue poster (24x36 in at 300 DPI, 78 MP); beyond it a spec is a typo, not a product.
MAX_CANVAS_PIXELS = 160_000_000

# DTG, UV and embroidery put ink only where the design is, so a transparent pixel means "no ink" and the
# alpha channel is kept. Sublimation and inkjet print every pixel of the sheet, so they get a white page.
TRANSPARENT_METHODS = frozenset({PrintMethod.DTG, PrintMethod.UV, PrintMethod.EMBROIDERY})
PDF_METHODS = frozenset({PrintMethod.INKJET})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_RGB, _IHDR_RGBA = 2, 6  # the IHDR colour types `encode_png` writes, always at 8 bits
_STRIPE_ROWS = 256  # fixed, so the PNG bytes never depend on how many threads encoded them
_PNG_UP_FILTER = 2
_ADLER_BASE = 65521
_FONT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.(?:ttf|otf)")
_PROFILE_DATE = (2000, 1, 1, 0, 0, 0)  # LittleCMS stamps "now" in the header; a fixed date keeps bytes stable
_DEFAULT_ARC_DEG = 90.0
_PREVIEW_BACKDROP = (242, 242, 240)
_PREVIEW_SUPERSAMPLE = 2  # ImageDraw shapes are aliased; drawing at 2x and halving smooths the silhouette
_PREVIEW_QUALITY = 85

_PRODUCT_COLOURS = {
    "black": (29, 29, 31),
    "white": (250, 250, 250),
    "navy": (31, 42, 68),
    "heather grey": (167, 169, 172),
    "matte": (251, 250, 247),
    "clear": (223, 231, 236),
}
_NEUTRAL_PRODUCT = (200, 200, 200)


class RenderErrorCode(StrEnum):
    """Why a render was refused; the order's timeline shows these words, so they never change once shipped."""

    BAD_TEMPLATE = "bad_template"
    FONT_MISSING = "font_missing"
    UNKNOWN_TEXT_SLOT = "unknown_text_slot"
    TEXT_TOO_LONG = "text_too_long"
    TEXT_DOES_NOT_FIT = "text_does_not_fit"
    BAD_ARTWORK = "bad_artwork"


class RenderError(PressroomError):
    """The template, its font or the inputs cannot make a print file; the message says what to fix."""

    code = "render_failed"

    def __init__(self, message: str, *, code: RenderErrorCode) -> None:
        super().__init__(message, code=code)


class Fit(StrEnum):
    """How artwork meets its box: inside it, covering it (cropped), or pixel for pixel in its centre."""

    FIT = "fit"
    FILL = "fill"
    CENTRE = "centre"


class Align(StrEnum):
    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedAsset:
    """Everything the render stage stores: the files and the metadata production reads without looking."""

    print_png: bytes = field(repr=False)
    pdf: bytes | None = field(repr=False)
    preview: bytes = field(repr=False)
    preview_content_type: str
    width: int
    height: int
    dpi: int
    mode: str
    colour_profile: str
    sha256: str
    size_bytes: int
    trim_px: tuple[int, int, int, int]
    safe_area_px: tuple[int, int, int, int]
    effective_dpi: float | None
    text_sizes_pt: Mapping[str, float]
    render_ms: float
    qa_reference: PreparedReference | None = field(default=None, repr=False)
    """The print file prepared for QA's inspections, when asked for: made from the canvas, the same as QA would
    make from the decoded file, without decoding it."""


@dataclass(frozen=True, slots=True)
class _Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _TextSlot:
    name: str
    max_chars: int
    box: _Box
    font: str
    size_pt: tuple[float, float]
    colour: tuple[int, int, int]
    align: Align
    curved: bool
    arc_deg: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _Layout:
    key: str
    dpi: int
    width: int
    height: int
    trim: tuple[int, int, int, int]
    safe: tuple[int, int, int, int]
    artwork_box: _Box
    fit: Fit
    background: tuple[int, int, int] | None
    texts: tuple[_TextSlot, ...]


@dataclass(frozen=True, slots=True)
class _Glyph:
    char: str
    x: float  # baseline centre, relative to the arc's centre
    y: float
    turn_deg: float  # clockwise


# --------------------------------------------------------------------------------------------------- public


def render_asset(
    spec: Mapping[str, Any],
    *,
    artwork: Image.Image | None,
    texts: Mapping[str, str],
    product_type: str,
    print_method: str,
    colour: str | None = None,
    compress_level: int = 1,
    make_pdf: bool | None = None,
    encode_threads: int = 2,
    clock: Callable[[], float] | None = None,
    prepare_qa_reference: bool = False,
) -> RenderedAsset:
    """Compose one design at full print resolution into a single canvas and encode it once.

    Args:
        spec: the stored template document (`TemplateSpec.spec`).
        artwork: the normalised sRGB upload, never resampled more than once; None for text-only designs.
        texts: slot name to customer text, already validated by `core.text`.
        product_type, colour: pick the preview silhouette and its colour.
        print_method: a `PrintMethod` value; decides transparency and whether a PDF is made.
        compress_level: zlib level for the PNG. 0 stores (fastest, ~3x the bytes); with the run-length
            matching `encode_png` uses, every level from 1 up gives the same bytes, so 1 is the default.
        make_pdf: None means "if the print method wants one" (inkjet).
        encode_threads: stripes compressed in parallel; the bytes are the same for any number.
        clock: e.g. `time.perf_counter`; without it `render_ms` is 0.
        prepare_qa_reference: also prepare the print file for QA on the product's blank (`qa_reference`).

    Raises:
        RenderError: the spec, its font, or the texts cannot be rendered as asked.
    """
    started = clock() if clock else 0.0
    layout = _parse_layout(spec)
    try:
        method = PrintMethod(print_method)
    except ValueError:
        known = ", ".join(PrintMethod)
        raise _bad(layout.key, "print_method", f"{print_method!r} is not one of {known}") from None
    keep_alpha = method in TRANSPARENT_METHODS
    canvas = _new_canvas(layout, keep_alpha=keep_alpha)
    effective_dpi = _place_artwork(canvas, artwork, layout) if artwork is not None else None
    sizes = _draw_texts(canvas, layout, texts)
    preview = _preview(canvas, product_type=product_type, colour=colour)
    icc = srgb_profile_bytes()
    png = encode_png(canvas, dpi=layout.dpi, icc_profile=icc, compress_level=compress_level,
                     threads=encode_threads)
    mode = canvas.mode
    qa_reference = _qa_reference(canvas, colour) if prepare_qa_reference else None
    del canvas  # the PDF is made from the PNG bytes; the 300 MB canvas of a big poster can go now
    wants_pdf = method in PDF_METHODS if make_pdf is None else make_pdf
    pdf = _pdf(png, layout.dpi) if wants_pdf else None
    return RenderedAsset(
        print_png=png, pdf=pdf, preview=preview, preview_content_type=PREVIEW_CONTENT_TYPE,
        width=layout.width, height=layout.height, dpi=layout.dpi, mode=mode, colour_profile=COLOUR_PROFILE,
        sha256=hashlib.sha256(png).hexdigest(), size_bytes=len(png), trim_px=layout.trim,
        safe_area_px=layout.safe, effective_dpi=effective_dpi, text_sizes_pt=sizes,
        render_ms=(clock() - started) * 1000 if clock else 0.0, qa_reference=qa_reference,
    )


def _qa_reference(canvas: Image.Image, colour: str | None) -> PreparedReference | None:
    """What QA prepares from this print file (`core.qa.prepare_reference`), from the pixels the PNG holds; None
    when QA cannot use it (it says so itself when it inspects: the print file is no worse for it).

    Decoding a 4500x5400 print file was half of a unique design's first inspection; the canvas is already here.
    """
    from core.qa import InspectionError, prepare_reference  # OpenCV loads in the render workers, not the API

    try:
        # a variant without a colour is judged on white, as QA reads it (None), not on the preview's grey
        return prepare_reference(np.asarray(canvas), substrate=product_colour(colour or None))
    except InspectionError as unusable:
        logger.warning("print file not prepared for QA: %s", unusable)
        return None


def asset_key(template_key: str, template_version: int, artwork_sha256: str | None,
              texts: Mapping[str, str], options: Mapping[str, Any]) -> str:
    """Content hash of a design, so an identical design is rendered once and reused.

    Dict order never matters and every string is NFC-normalised, so "é" typed either way is one design.
    `options` holds whatever else changes the bytes (print method, colour, compress level...).
    """
    document = {
        "renderer": RENDERER_VERSION,
        "template": _nfc(template_key),
        "version": int(template_version),
        "artwork": artwork_sha256,
        "texts": _canonical(texts),
        "options": _canonical(options),
    }
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def text_fits(spec: Mapping[str, Any], slot_name: str, text: str) -> bool:
    """Whether `text` can be printed in the slot at its smallest size — intake refuses it otherwise, so an
    accepted order never reaches the renderer with text that would be clipped.

    Raises:
        RenderError: the template document is malformed.
    """
    layout = _parse_layout(spec)
    slot = next((s for s in layout.texts if s.name == slot_name), None)
    text = unicodedata.normalize("NFC", text).strip()
    if slot is None or not text:
        return slot is not None
    attempts = (_arc_fits,) if slot.curved else (_whole_words_fit, _split_words_fit)
    return any(fits(text, slot, layout.dpi, slot.size_pt[0]) is not None for fits in attempts)


def points_to_pixels(points: float, dpi: int) -> float:
    """A point is 1/72 inch, so type keeps its printed size whatever the template's DPI."""
    return points / 72 * dpi


@cache
def srgb_profile_bytes() -> bytes:
    """LittleCMS's built-in sRGB profile with a fixed creation date, so equal designs give equal bytes."""
    from PIL import ImageCms  # a worker's boot need not load LittleCMS

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = struct.pack(">6H", *_PROFILE_DATE)
    return bytes(profile)


def encoded_channels(data: bytes) -> int | None:
    """3 or 4 when `data` begins as a PNG `encode_png` writes (8-bit RGB or RGBA), else None."""
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    return {_IHDR_RGB: 3, _IHDR_RGBA: 4}.get(data[25])


def encode_png(image: Image.Image, *, dpi: int, icc_profile: bytes, compress_level: int = 1,
               strategy: int = zlib.Z_RLE, threads: int = 1) -> bytes:
    """Write an RGB or RGBA PNG faster than Pillow: one cheap filter, stripes compressed in parallel.

    Pillow tries five filters on every row and compresses on one core; at 300 DPI that is most of a
    render. The "Up" filter with zlib's run-length strategy gives photo-like designs within ~10 % of
    Pillow's level 6 (smaller than zlib's default strategy would) at a fraction of the time. Stripes are
    independent deflate streams joined by sync flushes, so the output is one valid zlib stream whose
    bytes do not depend on `threads`; zlib releases the GIL, so threads do run in parallel.
    """
    if image.mode not in ("RGB", "RGBA"):
        raise ValueError(f"encode_png takes RGB or RGBA, not {image.mode}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, not {compress_level}")
    width, height = image.size
    image.load()
    out = io.BytesIO()
    out.write(_PNG_SIGNATURE)
    colour_type = _IHDR_RGB if image.mode == "RGB" else _IHDR_RGBA
    _write_chunk(out, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
    _write_chunk(out, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile, 9))
    pixels_per_metre = round(dpi / 0.0254)
    _write_chunk(out, b"pHYs", struct.pack(">IIB", pixels_per_metre, pixels_per_metre, 1))
    tops = range(0, height, _STRIPE_ROWS)

    def stripe(top: int) -> tuple[bytes, int, int]:
        return _deflate_stripe(image, top, min(top + _STRIPE_ROWS, height), compress_level, strategy)

    adler = 1
    with ThreadPoolExecutor(max_workers=threads) if threads > 1 else _Serial() as pool:
        for index, (deflated, stripe_adler, length) in enumerate(pool.map(stripe, tops)):
            adler = _adler32_combine(adler, stripe_adler, length)
            head = b"\x78\x01" if index == 0 else b""
            tail = struct.pack(">I", adler) if index == len(tops) - 1 else b""
            _write_chunk(out, b"IDAT", head + deflated + tail)
    _write_chunk(out, b"IEND", b"")
    return out.getvalue()


# ----------------------------------------------------------------------------------------------- template


def _parse_layout(spec: Mapping[str, Any]) -> _Layout:
    """Read the stored template once, in pixels, with an error that names the field a person must fix."""
    key = str(spec.get("key", "?"))
    dpi = int(_number(spec.get("dpi"), key, "dpi"))
    if dpi <= 0:
        raise _bad(key, "dpi", "must be positive")
    profile = str(spec.get("colour_profile", "sRGB"))
    if profile != "sRGB":
        raise _bad(key, "colour_profile", f"is {profile!r}; the renderer only writes sRGB")
    area = _numbers(spec.get("print_area_in"), 2, key, "print_area_in")
    width, height = round(area[0] * dpi), round(area[1] * dpi)
    if width <= 0 or height <= 0 or width * height > MAX_CANVAS_PIXELS:
        raise _bad(key, "print_area_in", f"gives {width}x{height} px; at most {MAX_CANVAS_PIXELS:,} px fit")
    bleed = round(float(spec.get("bleed_in", 0)) * dpi)
    safe = max(bleed, round(float(spec.get("safe_in", 0)) * dpi))
    artwork = spec.get("artwork") or {}
    fit_word = str(artwork.get("fit", "fit")).replace("center", "centre")
    if fit_word not in Fit.__members__.values():
        raise _bad(key, "artwork.fit", f"is {fit_word!r}; use fit, fill or centre")
    whole = _Box(0, 0, width, height)
    box = _box(artwork, "artwork", key, dpi, width, height) if "box_in" in artwork else whole
    background = spec.get("background")
    texts = tuple(_text_slot(slot, f"texts[{i}]", key, dpi, width, height)
                  for i, slot in enumerate(spec.get("texts", ())))
    return _Layout(key=key, dpi=dpi, width=width, height=height,
                   trim=(bleed, bleed, width - bleed, height - bleed),
                   safe=(safe, safe, width - safe, height - safe),
                   artwork_box=box, fit=Fit(fit_word), texts=texts,
                   background=_colour(background, "background", key) if background else None)


def _text_slot(slot: Mapping[str, Any], path: str, key: str, dpi: int, width: int, height: int) -> _TextSlot:
    sizes = _numbers(slot.get("size_pt"), 2, key, f"{path}.size_pt")
    if not 0 < sizes[0] <= sizes[1]:
        raise _bad(key, f"{path}.size_pt", "must be [min, max] points with 0 < min <= max")
    align = str(slot.get("align", "center")).replace("centre", "center")
    if align not in Align.__members__.values():
        raise _bad(key, f"{path}.align", f"is {align!r}; use left, center or right")
    arc_deg = float(slot.get("arc_deg", _DEFAULT_ARC_DEG))
    if not 0 < abs(arc_deg) <= 270:
        raise _bad(key, f"{path}.arc_deg", "must be between -270 and 270 degrees, and not 0")
    name, font = slot.get("name"), str(slot.get("font", ""))
    if not isinstance(name, str) or not name:
        raise _bad(key, f"{path}.name", "must be the slot's name")
    _font_data(font)  # a missing font is a template error: fail now, not at the first long text
    return _TextSlot(name=name, max_chars=int(slot.get("max_chars", 0)),
                     box=_box(slot, path, key, dpi, width, height), font=font,
                     size_pt=(sizes[0], sizes[1]), colour=_colour(slot.get("colour", "#000000"),
                                                                  f"{path}.colour", key),
                     align=Align(align), curved=bool(slot.get("curved", False)), arc_deg=arc_deg)


def _box(holder: Mapping[str, Any], prefix: str, key: str, dpi: int, width: int, height: int) -> _Box:
    where = f"{prefix}.box_in"
    x, y, w, h = _numbers(holder.get("box_in"), 4, key, where)
    box = _Box(round(x * dpi), round(y * dpi), round(w * dpi), round(h * dpi))
    if box.w <= 0 or box.h <= 0 or box.x < 0 or box.y < 0 or box.x + box.w > width or box.y + box.h > height:
        raise _bad(key, where, f"{[x, y, w, h]} in is not inside the {width}x{height} px print area")
    return box


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(key, where, f"must be a number, not {value!r}")
    return float(value)


def _numbers(values: Any, count: int, key: str, where: str) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise _bad(key, where, f"must be a list of {count} numbers, not {values!r}")
    return [_number(value, key, where) for value in values]


def _colour(value: Any, path: str, key: str) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(str(value))
    except ValueError:
        raise _bad(key, path, f"{value!r} is not a colour; use #rrggbb") from None
    return rgb[0], rgb[1], rgb[2]


def _bad(key: str, path: str, problem: str) -> RenderError:
    return RenderError(f"Template {key}: {path} {problem}.", code=RenderErrorCode.BAD_TEMPLATE)


# ---------------------------------------------------------------------------------------------- compose


def _new_canvas(layout: _Layout, *, keep_alpha: bool) -> Image.Image:
    """One canvas per render: artwork and text are pasted into it, never into full-size intermediates."""
    if keep_alpha:
        fill = (*layout.background, 255) if layout.background else (0, 0, 0, 0)
        return Image.new("RGBA", (layout.width, layout.height), fill)
    return Image.new("RGB", (layout.width, layout.height), layout.background or (255, 255, 255))


def _place_artwork(canvas: Image.Image, artwork: Image.Image, layout: _Layout) -> float:
    """Resample the original once, straight to its final size, and paste it; return its effective DPI."""
    art = _printable(artwork)
    box, (src_w, src_h) = layout.artwork_box, art.size
    if layout.fit is Fit.CENTRE:
        crop_w, crop_h = min(src_w, box.w), min(src_h, box.h)
        left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
        placed = art.crop((left, top, left + crop_w, top + crop_h)) if (crop_w, crop_h) != art.size else art
        scale = 1.0
    elif layout.fit is Fit.FILL:
        scale = max(box.w / src_w, box.h / src_h)
        crop_w, crop_h = box.w / scale, box.h / scale  # the part of the original that covers the box
        left, top = max(0.0, (src_w - crop_w) / 2), max(0.0, (src_h - crop_h) / 2)  # float noise past the edges
        source = (left, top, min(src_w, left + crop_w), min(src_h, top + crop_h))
        placed = art.resize((box.w, box.h), Image.Resampling.LANCZOS, box=source)
    else:
        scale = min(box.w / src_w, box.h / src_h)
        size = (min(box.w, max(1, round(src_w * scale))), min(box.h, max(1, round(src_h * scale))))
        placed = art.resize(size, Image.Resampling.LANCZOS)
    origin = (box.x + (box.w - placed.width) // 2, box.y + (box.h - placed.height) // 2)
    if placed.mode != "RGBA":
        canvas.paste(placed, origin)
    elif canvas.mode == "RGBA":
        canvas.alpha_composite(placed, origin)
    else:
        canvas.paste(placed, origin, placed)
    return layout.dpi / scale


def _printable(artwork: Image.Image) -> Image.Image:
    """RGB, or RGBA only when some pixel is see-through: an opaque alpha channel only slows resampling."""
    if artwork.width < 1 or artwork.height < 1:
        raise RenderError("The artwork has no pixels; upload it again.", code=RenderErrorCode.BAD_ARTWORK)
    if artwork.mode == "RGB":
        return artwork
    if artwork.mode == "RGBA":
        return artwork.convert("RGB") if artwork.getextrema()[3][0] == 255 else artwork
    has_alpha = artwork.mode in ("LA", "PA", "La", "RGBa") or "transparency" in artwork.info
    return _printable(artwork.convert("RGBA" if has_alpha else "RGB"))


def _draw_texts(canvas: Image.Image, layout: _Layout, texts: Mapping[str, str]) -> dict[str, float]:
    """Draw each slot at print resolution through a box-sized mask; return the point size each one got."""
    slots = {slot.name: slot for slot in layout.texts}
    unknown = sorted(set(texts) - set(slots))
    if unknown:
        raise RenderError(f"Template {layout.key} has no text slot {', '.join(unknown)}.",
                          code=RenderErrorCode.UNKNOWN_TEXT_SLOT)
    sizes: dict[str, float] = {}
    for slot in layout.texts:
        text = unicodedata.normalize("NFC", texts.get(slot.name, "")).strip()
        if not text:
            continue
        if slot.max_chars and len(text) > slot.max_chars:
            raise RenderError(f"Text {slot.name} has {len(text)} characters; template {layout.key} allows "
                              f"{slot.max_chars}.", code=RenderErrorCode.TEXT_TOO_LONG)
        mask, sizes[slot.name] = _text_mask(text, slot, layout)
        box = slot.box
        if canvas.mode == "RGBA":
            layer = Image.new("RGBA", mask.size, (*slot.colour, 0))
            layer.putalpha(mask)
            canvas.alpha_composite(layer, (box.x, box.y))
        else:
            canvas.paste(slot.colour, (box.x, box.y, box.x + box.w, box.y + box.h), mask)
    return sizes


def _text_mask(text: str, slot: _TextSlot, layout: _Layout) -> tuple[Image.Image, float]:
    """Draw the text's coverage at the largest size that fits: whole words if any size allows, else split."""
    attempts = (_arc_fits,) if slot.curved else (_whole_words_fit, _split_words_fit)
    for fits in attempts:
        size_pt = _largest_fitting_size(text, slot, layout.dpi, fits)
        if size_pt is not None:
            break
    else:
        shape = "on its arc" if slot.curved else "on the lines its box holds"
        raise RenderError(f"Text {slot.name} {text!r} does not fit {shape} even at {slot.size_pt[0]} pt; "
                          "shorten it.", code=RenderErrorCode.TEXT_DOES_NOT_FIT)
    font = _font(slot.font, points_to_pixels(size_pt, layout.dpi))
    placed = fits(text, slot, layout.dpi, size_pt)
    mask = Image.new("L", (slot.box.w, slot.box.h), 0)
    if slot.curved:
        _draw_arc(mask, font, placed)
    else:
        lines = placed if fits is _split_words_fit else _balanced(text, font, slot.box.w, placed)
        _draw_lines(mask, font, lines, slot)
    return mask, size_pt


def _largest_fitting_size(text: str, slot: _TextSlot, dpi: int,
                          fits: Callable[[str, _TextSlot, int, float], Any]) -> float | None:
    """Binary search in half points between the slot's sizes; only a size seen to fit is returned."""
    low, high = round(slot.size_pt[0] * 2), round(slot.size_pt[1] * 2)
    if fits(text, slot, dpi, low / 2) is None:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text, slot, dpi, middle / 2) is not None:
            low = middle
        else:
            high = middle - 1
    return low / 2


def _whole_words_fit(text: str, slot: _TextSlot, dpi: int, size_pt: float) -> list[str] | None:
    return _lines_fit(text, slot, dpi, size_pt, split_words=False)


def _split_words_fit(text: str, slot: _TextSlot, dpi: int, size_pt: float) -> list[str] | None:
    """Last resort for a word wider than the box at the smallest size: break it between letters."""
    return _lines_fit(text, slot, dpi, size_pt, split_words=True)


def _lines_fit(text: str, slot: _TextSlot, dpi: int, size_pt: float, *,
               split_words: bool) -> list[str] | None:
    """The lines the text wraps to at this size, or None when they overflow the box."""
    font = _font(slot.font, points_to_pixels(size_pt, dpi))
    lines = _wrap(text, font, slot.box.w, split_words=split_words)
    ascent, descent = font.getmetrics()
    return lines if lines is not None and len(lines) * (ascent + descent) <= slot.box.h else None


def _balanced(text: str, font: ImageFont.FreeTypeFont, width: int, lines: list[str]) -> list[str]:
    """Rewrap at the narrowest width that keeps the line count, so lines are even rather than top-heavy."""
    low, high = 1, width
    while low < high:
        middle = (low + high) // 2
        candidate = _wrap(text, font, middle, split_words=False)
        if candidate is not None and len(candidate) <= len(lines):
            high = middle
        else:
            low = middle + 1
    return _wrap(text, font, low, split_words=False) or lines


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, *, split_words: bool) -> list[str] | None:
    """Greedy word wrap, or None when a word (or, when splitting, a letter) is wider than `width`."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if _ink_width(font, candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        if _ink_width(font, word) <= width:
            current = word
            continue
        if not split_words:
            return None
        current = ""
        for char in word:
            if _ink_width(font, current + char) <= width:
                current += char
            elif not current:
                return None
            else:
                lines.append(current)
                current = char
    if current:
        lines.append(current)
    return lines


def _ink_width(font: ImageFont.FreeTypeFont, line: str) -> float:
    left, _, right, _ = font.getbbox(line, anchor="ls")
    return right - left


def _draw_lines(mask: Image.Image, font: ImageFont.FreeTypeFont, lines: list[str], slot: _TextSlot) -> None:
    """Stack lines on font-metric baselines, centred vertically, each aligned by its ink."""
    ascent, descent = font.getmetrics()
    pitch = ascent + descent
    top = (mask.height - pitch * len(lines)) / 2
    draw = ImageDraw.Draw(mask)
    for index, line in enumerate(lines):
        left, _, right, _ = font.getbbox(line, anchor="ls")
        if slot.align is Align.LEFT:
            x = -left
        elif slot.align is Align.RIGHT:
            x = mask.width - right
        else:
            x = (mask.width - (right - left)) / 2 - left
        draw.text((x, top + ascent + index * pitch), line, fill=255, font=font, anchor="ls")


def _arc_fits(text: str, slot: _TextSlot, dpi: int, size_pt: float) -> list[_Glyph] | None:
    font = _font(slot.font, points_to_pixels(size_pt, dpi))
    glyphs = _arc_layout(" ".join(text.split()), font, slot.arc_deg)
    left, top, right, bottom = _arc_extent(glyphs, font)
    # one pixel of slack each side: glyph origins are rounded to whole pixels when pasted
    return glyphs if right - left <= slot.box.w - 2 and bottom - top <= slot.box.h - 2 else None


def _arc_layout(text: str, font: ImageFont.FreeTypeFont, arc_deg: float) -> list[_Glyph]:
    """Place each glyph on a circle whose arc spans `arc_deg`: positive arches up, negative smiles.

    Advances are measured at half the cap height, not on the baseline, so letters neither crowd at the top
    of a smile nor spread apart on an arch.
    """
    length = font.getlength(text)
    bend = 1 if arc_deg > 0 else -1
    radius = length / math.radians(abs(arc_deg))
    _, cap_top, _, _ = font.getbbox("H", anchor="ls")
    baseline_radius = max(radius + bend * cap_top / 2, radius / 2)  # cap_top is negative: above the baseline
    glyphs = []
    for index, char in enumerate(text):
        middle = font.getlength(text[:index]) + font.getlength(char) / 2 - length / 2
        angle = middle / radius
        x, y = baseline_radius * math.sin(angle), -bend * baseline_radius * math.cos(angle)
        glyphs.append(_Glyph(char, x, y, math.degrees(bend * angle)))
    return glyphs


def _arc_extent(glyphs: list[_Glyph], font: ImageFont.FreeTypeFont) -> tuple[float, float, float, float]:
    """Union of each glyph's rotated em box (advance x ascent+descent) around the arc."""
    ascent, descent = font.getmetrics()
    xs, ys = [], []
    for glyph in glyphs:
        if glyph.char.isspace():
            continue
        half = font.getlength(glyph.char) / 2
        turn = math.radians(glyph.turn_deg)
        cos, sin = math.cos(turn), math.sin(turn)
        for dx, dy in ((-half, -ascent), (half, -ascent), (half, descent), (-half, descent)):
            xs.append(glyph.x + dx * cos - dy * sin)
            ys.append(glyph.y + dx * sin + dy * cos)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else (0.0, 0.0, 0.0, 0.0)


def _draw_arc(mask: Image.Image, font: ImageFont.FreeTypeFont, glyphs: list[_Glyph]) -> None:
    """Draw each glyph upright at print size, turn it to the arc's tangent, and merge it into the mask."""
    left, top, right, bottom = _arc_extent(glyphs, font)
    offset_x = (mask.width - (right - left)) / 2 - left
    offset_y = (mask.height - (bottom - top)) / 2 - top
    ascent, descent = font.getmetrics()
    for glyph in glyphs:
        if glyph.char.isspace():
            continue
        reach = math.hypot(font.getlength(glyph.char) / 2, max(ascent, descent)) + 2
        side = 2 * math.ceil(reach)
        tile = Image.new("L", (side, side), 0)
        ImageDraw.Draw(tile).text((side / 2, side / 2), glyph.char, fill=255, font=font, anchor="ms")
        tile = tile.rotate(-glyph.turn_deg, resample=Image.Resampling.BICUBIC)
        origin = (round(offset_x + glyph.x - side / 2), round(offset_y + glyph.y - side / 2))
        mask.paste(255, (*origin, origin[0] + side, origin[1] + side), tile)


@cache
def _font_data(name: str) -> bytes:
    """Fonts come only from core/fonts, by bare file name, so a template cannot point anywhere else."""
    path = FONTS_DIR / name
    if not _FONT_NAME.fullmatch(name) or not path.is_file():
        raise RenderError(f"Font {name!r} is not bundled in core/fonts; add the file and its licence there.",
                          code=RenderErrorCode.FONT_MISSING)
    return path.read_bytes()


@lru_cache(maxsize=128)
def _font(name: str, size_px: float) -> ImageFont.FreeTypeFont:
    # BASIC layout: Latin text needs no shaping, and it keeps glyph positions independent of libraqm.
    return ImageFont.truetype(io.BytesIO(_font_data(name)), size_px, layout_engine=ImageFont.Layout.BASIC)


# ------------------------------------------------------------------------------------------------ encode


class _Serial:
    """Stands in for a thread pool when one thread is asked for."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(function: Callable[[int], Any], items: Iterable[int]) -> Iterable[Any]:
        return map(function, items)


def _deflate_stripe(image: Image.Image, top: int, bottom: int, level: int,
                    strategy: int) -> tuple[bytes, int, int]:
    """Up-filter rows top..bottom (reading the row above), deflate them; return data, adler32, raw length."""
    width, bands = image.width, len(image.mode)
    above = max(top - 1, 0)
    rows = np.asarray(image.crop((0, above, width, bottom))).reshape(bottom - above, width * bands)
    filtered = np.empty((bottom - top, width * bands + 1), dtype=np.uint8)
    filtered[:, 0] = _PNG_UP_FILTER
    if top:
        np.subtract(rows[1:], rows[:-1], out=filtered[:, 1:])
    else:
        filtered[0, 1:] = rows[0]
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    del rows
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
    last = bottom == image.height
    deflated = compressor.compress(filtered) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return deflated, zlib.adler32(filtered), filtered.nbytes


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """adler32(a + b) from adler32(a), adler32(b) and len(b), as zlib's adler32_combine does."""
    remainder = second_length % _ADLER_BASE
    low_first, low_second = first & 0xFFFF, second & 0xFFFF
    low = (low_first + low_second + _ADLER_BASE - 1) % _ADLER_BASE
    high = (remainder * low_first + (first >> 16) + (second >> 16) + _ADLER_BASE - remainder) % _ADLER_BASE
    return low | (high << 16)


def _write_chunk(out: io.BytesIO, tag: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)))
    out.write(tag)
    out.write(data)
    out.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(tag))))


def _pdf(png: bytes, dpi: int) -> bytes:
    """Wrap the PNG losslessly; img2pdf copies its deflate data, and the page is the print size."""
    import img2pdf  # with pikepdf ≈ 0.1 s of CPU: loaded by the first PDF made, not at a worker's boot

    layout = img2pdf.get_fixed_dpi_layout_fun((dpi, dpi))
    # nodate and the internal engine: no timestamps or random IDs, so a re-render gives the same PDF
    return img2pdf.convert(png, layout_fun=layout, nodate=True, engine=img2pdf.Engine.internal)


# ----------------------------------------------------------------------------------------------- preview


def _preview(canvas: Image.Image, *, product_type: str, colour: str | None) -> bytes:
    """A JPEG mock-up: the design, reduced in bands from the canvas, on a drawn product silhouette."""
    fill = _product_colour(colour)
    mockup, (area_x, area_y, area_w, area_h) = _silhouette(product_type, fill)
    scale = min(area_w / canvas.width, area_h / canvas.height)
    size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
    design = _reduced(canvas, max(1, int(1 / scale))).resize(size, Image.Resampling.LANCZOS)
    origin = (area_x + (area_w - size[0]) // 2, area_y + (area_h - size[1]) // 2)
    mockup.paste(design, origin, design if design.mode == "RGBA" else None)
    out = io.BytesIO()
    mockup.save(out, format="JPEG", quality=_PREVIEW_QUALITY)
    return out.getvalue()


def _reduced(canvas: Image.Image, factor: int) -> Image.Image:
    """Box-reduce in bands: Image.reduce converts a whole RGBA image to premultiplied first, a full copy."""
    if factor == 1:
        return canvas  # only for canvases no bigger than the preview; the caller's resize makes the copy
    width, height = canvas.width // factor * factor, canvas.height // factor * factor
    out = Image.new(canvas.mode, (width // factor, height // factor))
    band = factor * 64
    for top in range(0, height, band):
        out.paste(canvas.crop((0, top, width, min(top + band, height))).reduce(factor), (0, top // factor))
    return out


def product_colour(colour: str | None) -> tuple[int, int, int]:
    """The blank's colour (garment, mug, paper) as RGB: what shows where no ink is, for previews and QA."""
    return _product_colour(colour)


def _product_colour(colour: str | None) -> tuple[int, int, int]:
    if colour is None:
        return _PRODUCT_COLOURS["white"]
    name = colour.strip().lower()
    if name in _PRODUCT_COLOURS:
        return _PRODUCT_COLOURS[name]
    try:
        rgb = ImageColor.getrgb(name)
    except ValueError:
        logger.warning("no preview colour for product colour %r; drawing it neutral grey", colour)
        return _NEUTRAL_PRODUCT
    return rgb[0], rgb[1], rgb[2]


def _silhouette(product_type: str,
                fill: tuple[int, int, int]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Draw the product in its colour; return the picture and where the print area sits on it (px)."""
    scale = PREVIEW_LONG_SIDE * _PREVIEW_SUPERSAMPLE
    image = Image.new("RGB", (scale, scale), _PREVIEW_BACKDROP)
    draw = ImageDraw.Draw(image)
    edge = tuple(round(c * 0.7) for c in fill)
    line = max(2, scale // 300)

    def pts(*xy: float) -> list[tuple[float, float]]:
        return [(xy[i] * scale, xy[i + 1] * scale) for i in range(0, len(xy), 2)]

    def rounded(x0: float, y0: float, x1: float, y1: float, radius: float, colour: Any = fill) -> None:
        draw.rounded_rectangle(pts(x0, y0, x1, y1), radius=radius * scale, fill=colour, outline=edge,
                               width=line)

    if product_type in ("tshirt", "hoodie"):
        hoodie = product_type == "hoodie"
        if hoodie:
            draw.ellipse(pts(0.37, 0.05, 0.63, 0.22), fill=fill, outline=edge, width=line)
        cuff_y = 0.78 if hoodie else 0.36
        draw.polygon(pts(0.40, 0.12, 0.27, 0.15, 0.09 if hoodie else 0.10, cuff_y - 0.10,
                         0.15 if hoodie else 0.19, cuff_y, 0.27, 0.34, 0.27, 0.90, 0.73, 0.90, 0.73, 0.34,
                         0.85 if hoodie else 0.81, cuff_y, 0.91 if hoodie else 0.90, cuff_y - 0.10,
                         0.73, 0.15, 0.60, 0.12), fill=fill, outline=edge, width=line)
        draw.chord(pts(0.40, 0.06, 0.60, 0.19), 0, 180, fill=edge)  # the inside of the back
        if hoodie:
            rounded(0.36, 0.66, 0.64, 0.80, 0.02)
            area = (0.35, 0.25, 0.30, 0.36)
        else:
            area = (0.33, 0.23, 0.34, 0.44)
    elif product_type == "mug":
        handle = round(0.045 * scale)
        draw.ellipse(pts(0.64, 0.34, 0.88, 0.66), outline=edge, width=handle)
        draw.ellipse(pts(0.64 + line / scale, 0.34 + line / scale, 0.88 - line / scale, 0.66 - line / scale),
                     outline=fill, width=handle - 2 * line)
        rounded(0.14, 0.24, 0.74, 0.78, 0.04)
        area = (0.16, 0.32, 0.56, 0.36)
    elif product_type == "poster":
        rounded(0.17, 0.04, 0.83, 0.96, 0.005, (43, 43, 43))
        rounded(0.20, 0.07, 0.80, 0.93, 0.0)
        area = (0.22, 0.09, 0.56, 0.82)
    elif product_type == "phone_case":
        rounded(0.31, 0.06, 0.69, 0.94, 0.05)
        rounded(0.34, 0.09, 0.45, 0.20, 0.02, tuple(round(c * 0.85) for c in fill))
        area = (0.33, 0.08, 0.34, 0.84)
    elif product_type == "cap":
        draw.pieslice(pts(0.20, 0.22, 0.80, 0.92), 180, 360, fill=fill, outline=edge, width=line)
        draw.chord(pts(0.12, 0.44, 0.88, 0.70), 0, 180, fill=edge, outline=edge, width=line)
        area = (0.35, 0.32, 0.30, 0.16)
    else:
        rounded(0.15, 0.15, 0.85, 0.85, 0.03)
        area = (0.20, 0.20, 0.60, 0.60)
    image = image.reduce(_PREVIEW_SUPERSAMPLE)
    side = PREVIEW_LONG_SIDE
    return image, (round(area[0] * side), round(area[1] * side), round(area[2] * side), round(area[3] * side))


# --------------------------------------------------------------------------------------------------- keys


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def _canonical(value: Any) -> Any:
    """JSON-ready copy with NFC strings and string keys; anything else would make the key ambiguous."""
    if isinstance(value, str):
        return _nfc(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"asset key mappings need string keys, not {key!r}")
            if _nfc(key) in out:
                raise ValueError(f"asset key mapping has {key!r} twice, in two Unicode forms")
            out[_nfc(key)] = _canonical(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"asset key values must be JSON data, not {type(value).__name__}")
