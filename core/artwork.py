"""Turn an uploaded artwork file into a safe, normalised sRGB PNG, or refuse it with a reason to show."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import numpy as np
from PIL import ExifTags, Image, ImageCms

from core.errors import PressroomError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class RefusalCode(StrEnum):
    """Why an upload was refused; the API returns these words, so they never change once shipped."""

    EMPTY_FILE = "empty_file"
    TOO_LARGE = "too_large"
    UNSUPPORTED_FORMAT = "unsupported_format"
    POLYGLOT = "polyglot"
    TRUNCATED = "truncated"
    TOO_MANY_PIXELS = "too_many_pixels"


class SourceFormat(StrEnum):
    """The only upload formats we print from; decided by magic bytes, never by the file name."""

    PNG = "PNG"
    JPEG = "JPEG"
    TIFF = "TIFF"


class ArtworkRefused(PressroomError):
    """The upload cannot become print artwork; `code` is a RefusalCode, `message` says what to do instead."""

    code = "artwork_refused"

    def __init__(self, message: str, *, code: RefusalCode) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalisedArtwork:
    """The only form of an upload that leaves this module: re-encoded pixels, nothing of the original file."""

    data: bytes
    sha256: str
    width: int
    height: int
    source_format: str
    mode: str


# --- sniffing -----------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_SNIFF_BYTES = 4096

# Magic bytes of things people upload by mistake (or on purpose), so the refusal can say what the file is.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xc5\xd0\xd3\xc6", "an EPS file"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"BM", "a BMP image"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<?php")


def sniff_format(head: bytes) -> str | None:
    """Name the upload format from its first bytes, because file names and browser MIME types are untrusted.

    Returns:
        "PNG", "JPEG" or "TIFF" (a SourceFormat), or None for anything else.
    """
    if head.startswith(_PNG_SIGNATURE):
        return SourceFormat.PNG
    if head.startswith(_JPEG_SOI):
        return SourceFormat.JPEG
    if head[:4] in _TIFF_SIGNATURES:
        return SourceFormat.TIFF
    return None


def _describe_unsupported(head: bytes) -> str | None:
    """Say what a refused file looks like ("an SVG drawing"), so the customer knows what to export instead."""
    for signature, description in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return description
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "a HEIC photo"
        return "an AVIF image" if brand in (b"avif", b"avis") else "a video or ISO media file"
    if b"%PDF-" in head[:1024]:  # PDF readers accept junk before the header, so attackers put some there
        return "a PDF"
    # Text formats: drop UTF-16 NULs and leading BOM/whitespace, compare case-insensitively.
    text = head.replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xfe\xff \t\r\n").lower()
    if text.startswith(b"%!ps"):
        return "an EPS file" if b"epsf" in text.split(b"\n", 1)[0] else "a PostScript file"
    if text.startswith(b"<"):
        svg_at = text.find(b"<svg")
        html_at = min((at for marker in _HTML_MARKERS if (at := text.find(marker)) >= 0), default=-1)
        if svg_at >= 0 and (html_at < 0 or svg_at < html_at):
            return "an SVG drawing"
        if html_at >= 0:
            return "a web page (HTML)"
        return "an XML document" if text.startswith(b"<?xml") else "a text document"
    return None


# --- structure checks: end of image, trailing data, header sizes --------------------------------------------

_PNG_CHUNK_HEAD = struct.Struct(">I4s")
# Text chunks are metadata we strip anyway, and zTXt/iTXt are zlib streams that inflate 1000x: we cut them
# out before Pillow parses the file, so a text bomb costs nothing instead of Pillow's 1 MB-per-chunk cap.
_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_MAX_PNG_CHUNKS = 200_000  # real encoders write a few thousand at most; this bounds the walk to ~0.1 s
_MAX_JPEG_SEGMENTS = 50_000
_MAX_JPEG_IMAGES = 32  # MPF / gain-map JPEGs chain a few secondary images after the primary one
# libjpeg makes a pass over the whole image per progressive scan, so a few kB of extra scans cost seconds of
# CPU (a 9 MP image with 2,000 scans took 23 s here). Encoders write about 10; 64 is far beyond any of them.
_MAX_JPEG_SCANS = 64
# A marker is 0xFF followed by anything but a stuffed 0x00, a fill 0xFF or a restart marker (RST0-7).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_JPEG_EOI, _JPEG_SOI_MARKER, _JPEG_TEM, _JPEG_SOS = 0xD9, 0xD8, 0x01, 0xDA
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markup we look for, lower-cased, in data appended after an image. Each is long enough, or ends in a
# delimiter, so that compressed bytes (a phone's appended motion-photo video) almost never match by chance.
_APPENDED_MARKUP: tuple[tuple[bytes, str], ...] = (
    *((marker, "web page or script code") for marker in (
        b"<script", b"<html", b"<!doctype html", b"<body", b"<iframe", b"<?php", b"javascript:")),
    *((b"<svg" + delimiter, "an SVG drawing") for delimiter in (b" ", b">", b"/", b"\n", b"\r", b"\t")),
    (b"http://www.w3.org/2000/svg", "an SVG drawing"),
    (b"%pdf-", "a PDF"),
)
# bytes.find runs at ~0.5 GB/s per marker here, so appended data is scanned at its start and its end only:
# that bounds the cost on a 50 MB file, and we never serve the original bytes, so a payload hidden deeper
# in the middle reaches no one.
_APPENDED_HEAD_BYTES = 1024 * 1024
_APPENDED_TAIL_BYTES = 64 * 1024
_ZIP_LOCAL_HEADER = re.compile(rb"\x00*PK\x03\x04")
_ZIP_END_RECORD = b"PK\x05\x06"
_ZIP_END_SEARCH_BYTES = 22 + 0xFFFF  # the end-of-central-directory record plus its longest comment

_TRUNCATED_MESSAGE = "The file is damaged or incomplete; export the image again and upload the new file."


def _truncated() -> ArtworkRefused:
    return ArtworkRefused(_TRUNCATED_MESSAGE, code=RefusalCode.TRUNCATED)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ArtworkRefused:
    return ArtworkRefused(
        f"The image is {width} x {height} pixels, more than the {max_pixels:,} pixels this product allows; "
        "scale it down and upload it again.",
        code=RefusalCode.TOO_MANY_PIXELS,
    )


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse from header numbers alone, so a pixel bomb is never allocated."""
    if width <= 0 or height <= 0:
        raise _truncated()
    if width * height > max_pixels:
        raise _too_many_pixels(width, height, max_pixels)


def _ends_with_zip_directory(data: bytes) -> bool:
    """Tell whether unzip tools would open the file: they look for the end-of-central-directory record."""
    floor = max(0, len(data) - _ZIP_END_SEARCH_BYTES)
    at = data.rfind(_ZIP_END_RECORD, floor)
    while at >= 0:
        if at + 22 + int.from_bytes(data[at + 20 : at + 22], "little") == len(data):
            return True
        at = data.rfind(_ZIP_END_RECORD, floor, at)
    return False


def _appended_payload(data: bytes, end: int) -> str | None:
    """Name what is appended after the image's end marker that another program would open or run."""
    if _ZIP_LOCAL_HEADER.match(data, end) or _ends_with_zip_directory(data):
        return "a ZIP archive"
    tail_from = max(end + _APPENDED_HEAD_BYTES, len(data) - _APPENDED_TAIL_BYTES)
    for window in (data[end : end + _APPENDED_HEAD_BYTES].lower(), data[tail_from:].lower()):
        found = [(at, kind) for marker, kind in _APPENDED_MARKUP if (at := window.find(marker)) >= 0]
        if found:
            return min(found)[1]  # the first thing appended names the file best
    return None


def _refuse_trailing_data(data: bytes, end: int, *, tolerate_unrecognised: bool) -> None:
    """Refuse code, markup or archives appended after the image: that is how polyglot files are built.

    A browser or unzip tool reading the original bytes would run or open what is appended. We never serve the
    original, but a file built that way is hostile, so we say no rather than quietly clean it. Zero padding
    is harmless. Other data is refused after a PNG (no PNG writer appends anything) but tolerated after a
    JPEG, because phones append their own trailers there (Samsung's, motion-photo videos).
    """
    extra = len(data) - end
    if extra <= 0 or data.count(0, end) == extra:
        return
    what = _appended_payload(data, end)
    if what is None:
        if tolerate_unrecognised:
            logger.info("artwork has %d bytes of unrecognised data after the image; ignoring them", extra)
            return
        what = "unrecognised data"
    raise ArtworkRefused(
        f"The file has {what} hidden after the end of the image; "
        "export the image again as a plain PNG, JPEG or TIFF and upload that.",
        code=RefusalCode.POLYGLOT,
    )


def _inspect_png(data: bytes, max_pixels: int) -> bytes:
    """Walk the PNG chunks to find IEND, check IHDR's size, and return the bytes Pillow may parse.

    Returns:
        The PNG up to IEND without text chunks (the same object when there was nothing to drop).
    """
    pos = len(_PNG_SIGNATURE)
    keep_from, pieces = 0, []
    for index in range(_MAX_PNG_CHUNKS):
        if pos + 12 > len(data):
            raise _truncated()
        length, kind = _PNG_CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if end > len(data) or not kind.isalpha():
            raise _truncated()
        if index == 0:
            if kind != b"IHDR" or length != 13:
                raise _truncated()
            _check_pixels(*struct.unpack_from(">II", data, pos + 8), max_pixels)
        if kind in _PNG_TEXT_CHUNKS:
            pieces.append(data[keep_from:pos])
            keep_from = end
        elif kind == b"IEND":
            _refuse_trailing_data(data, end, tolerate_unrecognised=False)
            if not pieces and end == len(data):
                return data
            pieces.append(data[keep_from:end])
            return b"".join(pieces)
        pos = end
    raise _truncated()


def _jpeg_image_end(data: bytes, start: int) -> tuple[int, int, int]:
    """Find the EOI of the JPEG starting at `start` by walking segments, so EOI bytes inside EXIF don't count.

    Returns:
        (offset just past EOI, width, height); width and height are 0 when no frame header was seen.
    """
    pos = start + 2
    width = height = scans = 0
    for _ in range(_MAX_JPEG_SEGMENTS):
        # search, not match: entropy-coded data and stray bytes between segments are skipped, as libjpeg does
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            raise _truncated()
        marker, pos = data[found.start() + 1], found.end()
        if marker == _JPEG_EOI:
            return pos, width, height
        if marker == _JPEG_SOI_MARKER:
            raise _truncated()
        if marker == _JPEG_TEM:
            continue
        if pos + 2 > len(data):
            raise _truncated()
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise _truncated()
        if marker in _JPEG_SOF and length >= 7 and not width:
            height, width = struct.unpack_from(">HH", data, pos + 3)
        elif marker == _JPEG_SOS and (scans := scans + 1) > _MAX_JPEG_SCANS:
            raise ArtworkRefused(
                f"The JPEG is split into more than {_MAX_JPEG_SCANS} progressive scans, far more than any "
                "camera or editor writes; export it again as a standard JPEG, PNG or TIFF.",
                code=RefusalCode.TRUNCATED,
            )
        pos += length
    raise _truncated()


def _inspect_jpeg(data: bytes, max_pixels: int) -> bytes:
    """Check the primary image's size, and what follows it once further JPEGs (MPF, gain maps) are skipped."""
    end, width, height = _jpeg_image_end(data, 0)
    if width or height:  # a frame height of 0 (DNL) is legal here; Pillow's size check covers it
        _check_pixels(width, max(height, 1), max_pixels)
    for _ in range(_MAX_JPEG_IMAGES):
        if not data.startswith(_JPEG_SOI, end):
            break
        end, _, _ = _jpeg_image_end(data, end)
    _refuse_trailing_data(data, end, tolerate_unrecognised=True)
    return data


def _inspect_tiff(data: bytes) -> bytes:
    """Refuse a TIFF that is also a ZIP, found by the archive's end record.

    TIFF has no end marker (strips live wherever the directory points), so appended data can't be told apart.
    """
    if _ends_with_zip_directory(data):
        raise ArtworkRefused(
            "The file has a ZIP archive hidden inside the image; "
            "export the image again as a plain PNG, JPEG or TIFF and upload that.",
            code=RefusalCode.POLYGLOT,
        )
    return data


# --- decoding and normalising -------------------------------------------------------------------------------

# What Pillow's parsers raise on damaged or hostile input; anything else is logged as unexpected.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError, ImageCms.PyCMSError)

# EXIF orientation -> the transpose that makes the image upright (the table ImageOps.exif_transpose uses).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_GREY = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_SIMPLE_CONVERSIONS = {"1": "L", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "YCbCr": "RGB"}
_PROFILE_SPACE_MODE = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}


@cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _open_and_load(payload: bytes, source_format: str, max_pixels: int) -> Image.Image:
    """Decode only the first frame, and only after the header's size passed the product's pixel limit."""
    image = Image.open(io.BytesIO(payload), formats=[source_format])
    _check_pixels(image.width, image.height, max_pixels)
    # Multi-page TIFFs and MPO JPEGs: Pillow opens on frame 0 and load() decodes only that frame. That is the
    # artwork (later pages are thumbnails, layers' previews or gain maps), so we never seek further.
    image.load()
    return image


def _orientation_of(image: Image.Image) -> int:
    """Read EXIF orientation; damaged EXIF means "as stored": refusing a photo over its metadata is worse.

    We apply the transpose ourselves instead of calling ImageOps.exif_transpose because that function also
    rewrites the EXIF block, which raises on odd camera EXIF (Pillow #3973, #8965), and we drop EXIF anyway.
    Pillow's TIFF plugin already applies and removes the orientation tag on load, so TIFFs report 1 here.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS as exc:
        logger.info("artwork EXIF unreadable, keeping stored orientation: %s", exc)
        return 1
    return orientation if isinstance(orientation, int) and orientation in _UPRIGHT else 1


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Bring every mode Pillow decodes to L, LA, RGB, RGBA or CMYK, keeping transparency where it exists."""
    mode, has_key_colour = image.mode, "transparency" in image.info
    if mode in _SIXTEEN_BIT_GREY:
        return _grey_16_to_8(image)
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or has_key_colour else "RGB")
    if mode in _SIMPLE_CONVERSIONS:
        image, mode = image.convert(_SIMPLE_CONVERSIONS[mode]), _SIMPLE_CONVERSIONS[mode]
    if mode in ("L", "RGB") and has_key_colour:
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    raise ArtworkRefused(
        f"The image stores its pixels as {mode}, which we cannot print from; "
        "export it as an 8- or 16-bit RGB, CMYK or greyscale PNG, JPEG or TIFF.",
        code=RefusalCode.UNSUPPORTED_FORMAT,
    )


def _grey_16_to_8(image: Image.Image) -> Image.Image:
    """Scale 16-bit grey to 8 bits; Pillow's convert("L") clips at 255 and would turn the image white."""
    # Pillow's 32-bit "I" mode is clipped to 16 bits too: that is what PNG and TIFF grey data holds.
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    grey = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    key = image.info.get("transparency")
    if isinstance(key, int):
        alpha = Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8))
        grey.putalpha(alpha)
    return grey


def _apply_profile(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert through the embedded ICC profile to sRGB, because print colour starts from what the file means.

    An unreadable profile, or one that doesn't match the pixels (a CMYK profile on RGB data), is ignored with
    a warning: the image is then read as sRGB, which is what browsers do.
    """
    alpha = image.getchannel("A") if image.mode in ("LA", "RGBA") else None
    colour = image.convert(image.mode[:-1]) if alpha is not None else image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = source.profile.xcolor_space.strip()
        if _PROFILE_SPACE_MODE.get(space) != colour.mode:
            logger.warning("artwork ICC profile is %s, pixels %s; ignoring the profile", space, colour.mode)
            return image
        converted = ImageCms.profileToProfile(colour, source, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        logger.warning("artwork ICC profile unusable, reading pixels as sRGB: %s", exc)
        return image
    if converted is None:  # only happens with inPlace=True; keeps the type checker honest
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _to_srgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit sRGB image: RGBA only when some pixel is actually transparent."""
    icc = image.info.get("icc_profile")
    image = _to_eight_bit(image)
    if icc:
        image = _apply_profile(image, icc)
    if image.mode in ("CMYK", "L"):
        image = image.convert("RGB")
    elif image.mode == "LA":
        image = image.convert("RGBA")
    if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")
    return image


def _encode_png(image: Image.Image) -> bytes:
    """Re-encode without any metadata; level 1 because compression dominates the time (see GOTCHAS)."""
    image.info = {}  # Pillow's PNG writer copies icc_profile and transparency from info
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"


def normalise_artwork(
    data: bytes, *, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> NormalisedArtwork:
    """Turn uploaded bytes into a metadata-free, upright sRGB PNG, or refuse them before a bomb is allocated.

    Args:
        data: the uploaded file, exactly as received.
        max_pixels: the product's pixel limit; checked against the header before decoding.
        max_bytes: the upload size limit.

    Returns:
        The normalised artwork; width and height are after EXIF orientation was applied.

    Raises:
        ArtworkRefused: for every file we won't print from; no other exception escapes.
    """
    try:
        return _normalise(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except ArtworkRefused as refused:
        logger.info("artwork refused: %s (%d bytes)", refused.code, len(data))
        raise


def _normalise(data: bytes, *, max_pixels: int, max_bytes: int) -> NormalisedArtwork:
    if not data:
        raise ArtworkRefused("The file is empty; upload the image again.", code=RefusalCode.EMPTY_FILE)
    if len(data) > max_bytes:
        raise ArtworkRefused(
            f"The file is {_human_size(len(data))}, more than the {_human_size(max_bytes)} limit; "
            "export a smaller image and upload it again.",
            code=RefusalCode.TOO_LARGE,
        )
    head = data[:_SNIFF_BYTES]
    source_format = sniff_format(head)
    if source_format is None:
        what = _describe_unsupported(head)
        lead = f"The file is {what}" if what else "The file is not a PNG, JPEG or TIFF image"
        raise ArtworkRefused(f"{lead}; upload a PNG, JPEG or TIFF image.",
                             code=RefusalCode.UNSUPPORTED_FORMAT)
    try:
        if source_format == SourceFormat.PNG:
            payload = _inspect_png(data, max_pixels)
        elif source_format == SourceFormat.JPEG:
            payload = _inspect_jpeg(data, max_pixels)
        else:
            payload = _inspect_tiff(data)
        image = _open_and_load(payload, source_format, max_pixels)
        upright = _UPRIGHT.get(_orientation_of(image))
        image = _to_srgb(image)
        if upright is not None:
            image = image.transpose(upright)
        encoded = _encode_png(image)
    except ArtworkRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise ArtworkRefused(
            f"The image has more than the {max_pixels:,} pixels this product allows; "
            "scale it down and upload it again.",
            code=RefusalCode.TOO_MANY_PIXELS,
        ) from exc
    except _DECODE_ERRORS as exc:
        logger.info("artwork undecodable (%s): %r", source_format, exc)
        raise _truncated() from exc
    except Exception as exc:
        # Pillow's parsers raise a zoo of types on hostile input; the customer still gets a refusal and we
        # keep the traceback, because a type we didn't expect may be a Pillow bug worth reporting.
        logger.warning("artwork decoding failed unexpectedly (%s)", source_format, exc_info=True)
        raise _truncated() from exc
    return NormalisedArtwork(
        data=encoded,
        sha256=hashlib.sha256(encoded).hexdigest(),
        width=image.width,
        height=image.height,
        source_format=str(source_format),
        mode=image.mode,
    )
