"""QA reads a print file's pixels exactly as Pillow did, whichever decoder it takes for the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.render import encode_png, srgb_profile_bytes
from core.services.qa import print_file_pixels


def pillow_pixels(data: bytes) -> np.ndarray:
    """What the QA stage read before: RGBA for files with transparency, else RGB, through Pillow."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))


def saved(image: Image.Image, file_format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=file_format, **options)
    return out.getvalue()


@settings(max_examples=30, deadline=None)
@given(width=st.integers(32, 300), height=st.integers(32, 300), alpha=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_a_rendered_print_file_reads_as_pillow_read_it(width, height, alpha, seed):
    # given a print file as the render stage writes it (8-bit RGB or RGBA, sRGB profile, 300 DPI)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4 if alpha else 3), np.uint8)
    data = encode_png(Image.fromarray(pixels), dpi=300, icc_profile=srgb_profile_bytes())
    # when QA reads it
    read = print_file_pixels(data)
    # then it has the same pixels and channels, alpha kept
    assert read.dtype == np.uint8 and read.flags.c_contiguous
    np.testing.assert_array_equal(read, pillow_pixels(data))
    np.testing.assert_array_equal(read, pixels)


RGB = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
OTHER_FILES = {
    "palette": lambda: saved(Image.fromarray(RGB).quantize(16)),
    "palette with a transparent entry": lambda: saved(Image.fromarray(RGB).quantize(16), transparency=3),
    "RGB with a transparent colour key": lambda: saved(Image.fromarray(RGB), transparency=(7, 8, 9)),
    "gray": lambda: saved(Image.fromarray(RGB[:, :, 0])),
    "gray with alpha": lambda: saved(Image.fromarray(RGB[:, :, :2].copy(), mode="LA")),
    "16-bit gray": lambda: saved(Image.fromarray(RGB[:, :, 0].astype(np.uint16) * 257)),
    "interlaced RGB": lambda: saved(Image.fromarray(RGB), interlace=1),
    "JPEG": lambda: saved(Image.fromarray(RGB), "JPEG", quality=90),
}


@pytest.mark.parametrize("kind", OTHER_FILES)
def test_any_other_image_reads_as_pillow_read_it(kind):
    # given a print file the render stage would not write, but an older one or a hand-made one might be
    data = OTHER_FILES[kind]()
    # when QA reads it, then it has Pillow's pixels (transparency kept as alpha, as the inspection expects)
    np.testing.assert_array_equal(print_file_pixels(data), pillow_pixels(data))


CUT_SHORT = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", CUT_SHORT, b"not an image"])
def test_a_broken_print_file_is_refused_with_pillows_error(data):
    # given bytes that are no image, or a PNG cut short; when QA reads them, then Pillow's error says so
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError is an OSError
        print_file_pixels(data)
