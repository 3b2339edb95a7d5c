"""The renderer turns a template, an artwork and texts into print files that match the template exactly."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFont

from core.catalogue import TemplateSpec
from core.render import (
    FONTS_DIR,
    RenderError,
    RenderErrorCode,
    _adler32_combine,
    asset_key,
    encode_png,
    points_to_pixels,
    product_colour,
    render_asset,
    srgb_profile_bytes,
)

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = json.loads((REPO / "db" / "seed_data" / "catalogue.json").read_text())
RED = (220, 20, 30)


def product(template_key: str) -> dict[str, Any]:
    return next(p for p in CATALOGUE["products"] if p["template"]["key"] == template_key)


def template(template_key: str) -> dict[str, Any]:
    return copy.deepcopy(product(template_key)["template"])


def render_catalogue(template_key: str, **overrides: Any):
    item = product(template_key)
    arguments: dict[str, Any] = {
        "artwork": None, "texts": {}, "product_type": item["product_type"],
        "print_method": item["print_method"], "colour": item["variants"][0]["colour"],
    }
    arguments.update(overrides)
    return render_asset(template(template_key), **arguments)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """A gradient with noise: resamples and compresses like a photograph, unlike a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = (np.sin(x / 40) + np.cos(y / 30) + 2) * 60
    pixels = np.stack([x / width * 255, y / height * 255, waves], axis=-1)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def card_spec(*, fit: str = "fit", print_area_in: tuple[float, float] = (5, 4), dpi: int = 100,
              box_in: tuple[float, float, float, float] = (1, 0.5, 3, 3), texts: list | None = None) -> dict:
    """A small template built here, so placement can be checked pixel by pixel in milliseconds."""
    return {"key": "test-card", "print_area_in": list(print_area_in), "dpi": dpi, "min_effective_dpi": 50,
            "colour_profile": "sRGB", "bleed_in": 0, "safe_in": 0.25,
            "artwork": {"box_in": list(box_in), "fit": fit}, "texts": texts or []}


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    image.load()
    return image


def ink_box(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (in the print file) of every non-white, non-transparent pixel inside `box`."""
    region = image.crop(box).convert("RGBA")
    pixels = np.asarray(region)
    inked = (pixels[..., 3] > 0) & (pixels[..., :3].min(axis=-1) < 250)
    rows, cols = np.nonzero(inked)
    if rows.size == 0:
        return None
    return box[0] + cols.min(), box[1] + rows.min(), box[0] + cols.max() + 1, box[1] + rows.max() + 1


def red_box(image: Image.Image) -> tuple[int, int, int, int]:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = (np.abs(pixels - np.array(RED)).sum(axis=-1) < 12)
    rows, cols = np.nonzero(red)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def px_box(box_in: list[float], dpi: int) -> tuple[int, int, int, int]:
    x, y, w, h = (round(v * dpi) for v in box_in)
    return x, y, x + w, y + h


@pytest.fixture(scope="module")
def tee_asset():
    """One full-size DTG render, shared: 4500x5400 is the size most orders print at."""
    return render_catalogue("tee-front", artwork=photo(2100, 2000), texts={"headline": "HELLO WORLD"})


# ---------------------------------------------------------------------------------------- print file


def test_tee_print_file_has_the_template_pixel_size_dpi_and_srgb_profile(tee_asset):
    # given the catalogue's tee template, when rendered, then the stored PNG says what the template says
    image = Image.open(io.BytesIO(tee_asset.print_png))
    spec = TemplateSpec.from_spec("tee-front", 1, template("tee-front"))
    assert image.size == spec.print_pixels == (4500, 5400) == (tee_asset.width, tee_asset.height)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert tee_asset.colour_profile == "sRGB IEC61966-2.1"
    assert image.mode == tee_asset.mode == "RGBA"  # DTG: transparent means no ink


@pytest.mark.parametrize("template_key", ["mug-wrap", "case-back", "cap-front", "hoodie-front"])
def test_every_catalogue_template_renders_at_its_print_pixels_and_dpi(template_key):
    # given a catalogue template with its first text slot filled
    slot = template(template_key)["texts"][0]["name"]
    # when it is rendered
    asset = render_catalogue(template_key, artwork=photo(900, 700), texts={slot: "AB"})
    # then the file opens at the template's size and resolution
    image = open_png(asset.print_png)
    assert image.size == TemplateSpec.from_spec(template_key, 1, template(template_key)).print_pixels
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert image.info["icc_profile"] == srgb_profile_bytes()
    assert asset.size_bytes == len(asset.print_png)


def test_sheet_methods_print_on_white_and_ink_only_methods_keep_transparency():
    # given a sublimation mug and an embroidered cap, when rendered without artwork
    mug = open_png(render_catalogue("mug-wrap", texts={"name": "ANA"}).print_png)
    cap = open_png(render_catalogue("cap-front", texts={"text": "ANA"}).print_png)
    # then the mug's untouched paper is white and the cap's untouched cloth gets no ink at all
    assert mug.mode == "RGB" and mug.getpixel((0, 0)) == (255, 255, 255)
    assert cap.mode == "RGBA" and cap.getpixel((0, 0))[3] == 0


def test_safe_area_and_trim_are_exported_in_pixels():
    # given the mug: 1/8 in bleed and 1/4 in safe margin at 300 DPI
    asset = render_catalogue("mug-wrap")
    # then both are reported as pixel boxes on the 2550x1050 canvas
    assert asset.trim_px == (38, 38, 2512, 1012)
    assert asset.safe_area_px == (75, 75, 2475, 975)


# ---------------------------------------------------------------------------------------------- text


def test_text_is_drawn_at_print_resolution_not_scaled_up():
    # given the mug's name slot (24-80 pt) and a short name that fits at the largest size
    asset = render_catalogue("mug-wrap", texts={"name": "HI"})
    image = open_png(asset.print_png)
    slot = template("mug-wrap")["texts"][0]
    assert asset.text_sizes_pt["name"] == 80
    # then the capitals are as tall as 80 pt is at 300 DPI (DejaVu's cap height is 0.729 em)
    reference = ImageFont.truetype(str(FONTS_DIR / "DejaVuSans-Bold.ttf"), 1000)
    cap_height_em = (reference.getbbox("H")[3] - reference.getbbox("H")[1]) / 1000
    left, top, right, bottom = ink_box(image, px_box(slot["box_in"], 300))
    assert bottom - top == pytest.approx(cap_height_em * points_to_pixels(80, 300), abs=2)
    # and the stems have crisp edges: at most one grey pixel between paper and ink, as FreeType draws
    # them at that size (a small render scaled up 4x would show a ramp of 4 or more)
    row = np.asarray(image.convert("L"))[(top + bottom) // 2, left - 5:right + 5]
    greys = np.flatnonzero((row > 40) & (row < 215))
    runs = np.split(greys, np.flatnonzero(np.diff(greys) > 1) + 1)
    assert max(len(run) for run in runs) <= 2
    # and the ink is the slot's colour
    assert (17, 17, 17) in {pixel for _, pixel in image.crop((left, top, right, bottom)).getcolors(1 << 16)}


def test_long_text_wraps_onto_lines_and_shrinks_within_its_size_range():
    # given a headline that cannot fit one line at the largest size
    asset = render_catalogue("mug-wrap", texts={"name": "HAPPY BIRTHDAY ANNA"})
    slot = template("mug-wrap")["texts"][0]
    image = open_png(asset.print_png)
    # then it is set smaller than the maximum, not below the minimum, on several lines inside its box
    assert slot["size_pt"][0] <= asset.text_sizes_pt["name"] < slot["size_pt"][1]
    box = px_box(slot["box_in"], 300)
    left, top, right, bottom = ink_box(image, box)
    assert box[0] <= left and right <= box[2] and box[1] <= top and bottom <= box[3]
    inked_rows = np.asarray(image.crop(box).convert("L")).min(axis=1) < 128
    line_starts = np.flatnonzero(np.diff(inked_rows.astype(int)) == 1)
    assert len(line_starts) >= 2


def test_text_that_cannot_fit_even_at_the_minimum_size_is_refused():
    # given twelve of the widest capital on a cap's 0.6 in tall text box
    with pytest.raises(RenderError) as refused:
        render_catalogue("cap-front", texts={"text": "W" * 12})
    # then the renderer says so instead of printing clipped text
    assert refused.value.code == RenderErrorCode.TEXT_DOES_NOT_FIT


def test_curved_text_bends_along_an_arch_and_stays_inside_its_box():
    # given the mug's name slot made curved (a spec built here; the catalogue's mug stays straight)
    spec = template("mug-wrap")
    spec["texts"][0].update(curved=True, arc_deg=150)
    # when rendered
    asset = render_asset(spec, artwork=None, texts={"name": "HAPPY DAY"}, product_type="mug",
                         print_method="sublimation")
    image = open_png(asset.print_png)
    box = px_box(spec["texts"][0]["box_in"], 300)
    left, top, right, bottom = ink_box(image, box)
    # then no glyph is clipped by the box edges
    assert box[0] < left and right < box[2] and box[1] < top and bottom < box[3]
    # and the middle of the text rides higher than its ends: an arch, not a line
    ink = np.asarray(image.convert("L").crop((left, top, right, bottom))) < 128
    tops = np.array([np.argmax(column) if column.any() else ink.shape[0] for column in ink.T])
    sixth = len(tops) // 6
    middle, left_end, right_end = tops[2 * sixth:4 * sixth].min(), tops[:sixth].min(), tops[-sixth:].min()
    assert middle + 50 < left_end and middle + 50 < right_end


def test_a_text_slot_the_template_lacks_is_a_render_error():
    with pytest.raises(RenderError) as refused:
        render_catalogue("mug-wrap", texts={"headline": "HI"})
    assert refused.value.code == RenderErrorCode.UNKNOWN_TEXT_SLOT


@pytest.mark.parametrize("font", ["NoSuchFont.ttf", "../../../etc/passwd", "/usr/share/fonts/x.ttf"])
def test_a_font_not_bundled_in_core_fonts_is_a_render_error(font):
    spec = template("mug-wrap")
    spec["texts"][0]["font"] = font
    with pytest.raises(RenderError) as refused:
        render_asset(spec, artwork=None, texts={}, product_type="mug", print_method="sublimation")
    assert refused.value.code == RenderErrorCode.FONT_MISSING


def test_a_box_outside_the_print_area_is_a_render_error_naming_the_field():
    spec = template("mug-wrap")
    spec["artwork"]["box_in"] = [0, 0, 9, 3]
    with pytest.raises(RenderError, match=r"artwork\.box_in") as refused:
        render_asset(spec, artwork=None, texts={}, product_type="mug", print_method="sublimation")
    assert refused.value.code == RenderErrorCode.BAD_TEMPLATE


# ------------------------------------------------------------------------------------------- artwork


def test_fit_keeps_the_whole_artwork_inside_its_box_with_its_aspect():
    # given a 2:1 artwork and a 3x3 in box at 100 DPI
    asset = render_asset(card_spec(fit="fit"), artwork=Image.new("RGB", (400, 200), RED), texts={},
                         product_type="poster", print_method="inkjet", make_pdf=False)
    # then it is 300x150 px, centred in the box (100..400, 50..350)
    assert red_box(open_png(asset.print_png)) == (100, 125, 400, 275)
    assert asset.effective_dpi == pytest.approx(400 / 3)


def test_fill_covers_the_whole_box_and_crops_the_overflow():
    asset = render_asset(card_spec(fit="fill"), artwork=Image.new("RGB", (400, 200), RED), texts={},
                         product_type="poster", print_method="inkjet", make_pdf=False)
    assert red_box(open_png(asset.print_png)) == (100, 50, 400, 350)
    assert asset.effective_dpi == pytest.approx(200 / 3)  # the short side sets the resolution


def test_centre_places_the_artwork_pixel_for_pixel_in_the_middle_of_its_box():
    artwork = photo(120, 80)
    asset = render_asset(card_spec(fit="centre"), artwork=artwork, texts={}, product_type="poster",
                         print_method="inkjet", make_pdf=False)
    placed = open_png(asset.print_png).crop((190, 160, 310, 240))
    assert placed.tobytes() == artwork.tobytes()


def test_artwork_is_resampled_once_from_the_original_with_lanczos():
    # given a photo-like artwork that has to be enlarged into its box
    artwork = photo(250, 180)
    asset = render_asset(card_spec(fit="fit"), artwork=artwork, texts={}, product_type="poster",
                         print_method="inkjet", make_pdf=False)
    # then the placed pixels are exactly one LANCZOS resize of the original, nothing in between
    expected = artwork.resize((300, 216), Image.Resampling.LANCZOS)
    assert open_png(asset.print_png).crop((100, 92, 400, 308)).tobytes() == expected.tobytes()


def test_see_through_artwork_on_a_dtg_print_stays_see_through():
    artwork = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    artwork.paste(Image.new("RGBA", (100, 100), (*RED, 255)), (100, 100))
    asset = render_asset(card_spec(fit="fit"), artwork=artwork, texts={}, product_type="tshirt",
                         print_method="dtg")
    image = open_png(asset.print_png)
    assert image.getpixel((110, 60))[3] == 0  # inside the box, outside the motif: no ink
    assert image.getpixel((250, 200)) == (*RED, 255)


# ------------------------------------------------------------------------------------ determinism, keys


def test_the_same_design_gives_identical_files_and_an_identical_key():
    # given one design rendered twice
    first, second = (render_asset(card_spec(fit="fill", texts=[_text_slot()]), artwork=photo(300, 300),
                                  texts={"caption": "SAME"}, product_type="poster", print_method="inkjet")
                     for _ in range(2))
    # then every byte is the same: the PNG, the preview and the PDF (no clock or random id inside)
    assert first.print_png == second.print_png and first.sha256 == second.sha256
    assert first.preview == second.preview and first.pdf == second.pdf
    key = asset_key("test-card", 3, "ab" * 32, {"caption": "SAME"}, {"print_method": "inkjet"})
    assert key == asset_key("test-card", 3, "ab" * 32, {"caption": "SAME"}, {"print_method": "inkjet"})


@pytest.mark.parametrize("change", ["text", "version", "artwork", "option"])
def test_changing_a_text_the_template_version_the_artwork_or_an_option_changes_the_key(change):
    base = {"template_key": "tee-front", "template_version": 2, "artwork_sha256": "a" * 64,
            "texts": {"headline": "HELLO"}, "options": {"colour": "black"}}
    changed = {**base, **{
        "text": {"texts": {"headline": "HELLO!"}}, "version": {"template_version": 3},
        "artwork": {"artwork_sha256": "b" * 64}, "option": {"options": {"colour": "navy"}},
    }[change]}
    assert asset_key(**base) != asset_key(**changed)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=6),
       st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=4))
def test_asset_key_ignores_dict_order(texts, options):
    texts = {unicodedata.normalize("NFC", k): v for k, v in texts.items()}
    options = {unicodedata.normalize("NFC", k): v for k, v in options.items()}
    shuffled = asset_key("t", 1, None, dict(reversed(texts.items())), dict(reversed(options.items())))
    assert asset_key("t", 1, None, texts, options) == shuffled


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_asset_key_treats_nfc_and_nfd_spellings_of_a_text_as_one_design(text):
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    assert asset_key("t", 1, "c" * 64, {"name": nfc}, {}) == asset_key("t", 1, "c" * 64, {"name": nfd}, {})


# --------------------------------------------------------------------------------------- PDF, preview


def test_inkjet_gets_a_pdf_whose_page_is_the_print_size_in_points():
    pikepdf = pytest.importorskip("pikepdf")
    # given a 5x4 in inkjet print at 100 DPI
    asset = render_asset(card_spec(), artwork=photo(200, 200), texts={}, product_type="poster",
                         print_method="inkjet")
    # then the PDF page is 360x288 pt and holds the print file's pixels
    with pikepdf.open(io.BytesIO(asset.pdf)) as pdf:
        page = pdf.pages[0]
        assert [float(v) for v in page.mediabox] == [0, 0, 360, 288]
        (image,) = page.get_images().values()
        assert (int(image.Width), int(image.Height)) == (500, 400)


def test_dtg_gets_no_pdf_unless_asked():
    spec = card_spec()
    assert render_asset(spec, artwork=None, texts={}, product_type="tshirt", print_method="dtg").pdf is None
    assert render_asset(spec, artwork=None, texts={}, product_type="tshirt", print_method="dtg",
                        make_pdf=True).pdf.startswith(b"%PDF")


@pytest.mark.parametrize("product_type", ["tshirt", "hoodie", "mug", "poster", "phone_case", "cap", "tote"])
def test_preview_is_a_web_sized_jpeg_showing_the_design(product_type):
    asset = render_asset(card_spec(), artwork=Image.new("RGB", (300, 300), RED), texts={},
                         product_type=product_type, print_method="dtg", colour="heather grey")
    preview = Image.open(io.BytesIO(asset.preview), formats=["JPEG"])
    assert asset.preview_content_type == "image/jpeg"
    assert max(preview.size) <= 800
    assert red_box(preview)  # the design is on the mock-up


# ---------------------------------------------------------------------------------------- PNG encoder


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_encoder_round_trips_pixels_exactly_whatever_the_thread_count(mode):
    # given an image taller than one 256-row stripe
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (700, 333, len(mode)), dtype=np.uint8), mode)
    # when encoded on one thread and on three
    one, three = (encode_png(image, dpi=300, icc_profile=srgb_profile_bytes(), threads=n) for n in (1, 3))
    # then the bytes are the same, the zlib stream checks out, and Pillow reads back every pixel
    assert one == three
    assert len(zlib.decompress(_idat(one))) == 700 * (333 * len(mode) + 1)
    assert open_png(one).tobytes() == image.tobytes()


@given(st.binary(max_size=300), st.binary(max_size=70000))
def test_adler32_combine_matches_zlib_over_the_joined_bytes(first, second):
    combined = _adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


def test_render_ms_comes_from_the_clock_the_caller_passes():
    ticks = iter([10.0, 10.25])
    timed = render_asset(card_spec(), artwork=None, texts={}, product_type="poster", print_method="inkjet",
                         make_pdf=False, clock=lambda: next(ticks))
    untimed = render_asset(card_spec(), artwork=None, texts={}, product_type="poster", print_method="inkjet",
                           make_pdf=False)
    assert timed.render_ms == pytest.approx(250)
    assert untimed.render_ms == 0


# ------------------------------------------------------------------------------------------- memory

_PEAK_RSS_SCRIPT = """
import json, resource, sys, time
from PIL import Image
from core.render import render_asset

def peak_mb():
    # VmHWM belongs to this process image alone; ru_maxrss carries the parent's peak across fork and exec
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

catalogue = json.load(open("db/seed_data/catalogue.json"))
item = next(p for p in catalogue["products"] if p["template"]["key"] == sys.argv[1])
artwork = Image.open(sys.argv[2], formats=["PNG"])
artwork.load()
before = peak_mb()
texts = {item["template"]["texts"][0]["name"]: "BIG POSTER"}
asset = render_asset(item["template"], artwork=artwork, texts=texts, product_type=item["product_type"],
                     print_method=item["print_method"], clock=time.perf_counter)
peak = peak_mb()
print(json.dumps({"before_mb": before, "peak_mb": peak, "width": asset.width,
                  "height": asset.height, "png_mb": asset.size_bytes / 1e6, "pdf_mb": len(asset.pdf) / 1e6,
                  "render_s": asset.render_ms / 1000}))
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("template_key, pixels",
                         [("poster-18x24", (5400, 7200)), ("poster-24x36", (7200, 10800))])
def test_big_posters_render_with_bounded_peak_memory(template_key, pixels, tmp_path):
    # given a 2400x3000 photo on disk and a fresh process, so the peak measured is the render's own
    artwork = tmp_path / "artwork.png"
    photo(2400, 3000).save(artwork, compress_level=1)
    # when that process renders a 39 MP or 78 MP poster
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, template_key, str(artwork)], cwd=REPO,
                          capture_output=True, text=True, timeout=110, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{template_key}: {report}")
    # then the canvas, one resampled artwork and the encoded files fit well inside a worker's memory
    assert (report["width"], report["height"]) == pixels
    assert report["peak_mb"] < 2500


def _text_slot() -> dict:
    return {"name": "caption", "max_chars": 20, "box_in": [0.5, 3.55, 4, 0.4], "font": "DejaVuSans-Bold.ttf",
            "size_pt": [10, 24], "colour": "#111111", "align": "center", "curved": False}


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT payloads: one zlib stream, whatever the number of chunks."""
    position, data = 8, []
    while position < len(png):
        (length,) = np.frombuffer(png[position:position + 4], dtype=">u4")
        tag = png[position + 4:position + 8]
        if tag == b"IDAT":
            data.append(png[position + 8:position + 8 + int(length)])
        position += 12 + int(length)
    return b"".join(data)


@settings(max_examples=60, deadline=None)
@given(width=st.integers(min_value=40, max_value=900), height=st.integers(min_value=40, max_value=900))
def test_any_artwork_size_fills_its_box_without_float_noise_breaking_the_resample(width, height):
    # found end to end: a 1-ulp negative crop offset made Pillow refuse to resample ("box offset can't be negative")
    spec = {"print_area_in": [2.5, 1.0], "dpi": 100, "min_effective_dpi": 1, "colour_profile": "sRGB",
            "bleed_in": 0, "safe_in": 0, "artwork": {"box_in": [0.1, 0.1, 2.3, 0.8], "fit": "fill"}, "texts": []}
    artwork = Image.new("RGB", (width, height), (10, 120, 200))
    rendered = render_asset(spec, artwork=artwork, texts={}, product_type="mug", print_method="sublimation")
    assert (rendered.width, rendered.height) == (250, 100)


@pytest.mark.parametrize("template_key", ["mug-wrap", "cap-front"])
def test_a_print_file_prepared_for_qa_as_it_renders_is_what_qa_makes_from_the_file(template_key):
    from core.qa import prepare_reference
    from core.services.qa import print_file_pixels
    from tests.unit.test_qa_prepared import assert_same_preparation

    # given a print file on white paper (RGB) and one for an ink-only method (transparent, RGBA)
    item = product(template_key)
    colour = item["variants"][0]["colour"]
    # when it is rendered with its QA reference prepared from the canvas
    rendered = render_catalogue(template_key, texts={}, artwork=photo(600, 400), prepare_qa_reference=True)
    # then that reference is, array for array, what QA prepares from the decoded file on the product's blank
    from_file = prepare_reference(print_file_pixels(rendered.print_png), substrate=product_colour(colour))
    assert_same_preparation(rendered.qa_reference, from_file)


def test_a_variant_without_a_colour_is_prepared_for_qa_on_the_blank_qa_judges_it_on():
    # given a variant with no colour (QA reads it as None and judges on white) / when rendered for QA
    rendered = render_catalogue("mug-wrap", colour="", prepare_qa_reference=True)
    # then its reference is on that same blank, so QA finds it under the name it looks for
    assert rendered.qa_reference.substrate == product_colour(None)


def test_a_print_file_qa_cannot_use_still_renders_without_a_qa_reference():
    # given a template too small for QA to register a photo against (20 x 20 px)
    spec = card_spec(print_area_in=(0.2, 0.2), box_in=(0, 0, 0.2, 0.2))
    # when it is rendered with its QA reference asked for
    rendered = render_asset(spec, artwork=photo(40, 40), texts={}, product_type="card", print_method="inkjet",
                            prepare_qa_reference=True)
    # then the print file is made, and QA will prepare (and refuse) it itself when it inspects
    assert (rendered.width, rendered.height) == (20, 20) and rendered.qa_reference is None
