"""Render benchmark: core.render against a bare Pillow compose-and-save, measured in the same run."""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.render import FONTS_DIR, asset_key, encode_png, points_to_pixels, render_asset, srgb_profile_bytes

CATALOGUE = Path(__file__).resolve().parents[1] / "db" / "seed_data" / "catalogue.json"
TEMPLATES = ("tee-front", "poster-18x24", "poster-24x36")
TEXT = "PRESSROOM"  # one line at every template's chosen size, so the baseline draws it the same way
# Artwork a customer would upload for each template: enough pixels for the minimum effective DPI, ~2-3k px.
ARTWORK_PX = {"tee-front": (2400, 2300), "poster-18x24": (2400, 2900), "poster-24x36": (2200, 3080)}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Gradient, waves and sensor-like noise: compresses like a photograph, not like a flat test card."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = (np.sin(x / 90) + np.cos(y / 70) + 2) * 60
    pixels = np.stack([x / width * 255, y / height * 255, waves], axis=-1)
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def baseline(spec: dict[str, Any], artwork: Image.Image, text: str, size_pt: float, mode: str) -> bytes:
    """What a first version would do: default resize, paste, draw, `save(format="PNG")` with defaults."""
    dpi = spec["dpi"]
    width, height = round(spec["print_area_in"][0] * dpi), round(spec["print_area_in"][1] * dpi)
    canvas = Image.new(mode, (width, height), (0, 0, 0, 0) if mode == "RGBA" else "white")
    x, y, w, h = (round(v * dpi) for v in spec["artwork"]["box_in"])
    if spec["artwork"]["fit"] == "fill":
        scale = max(w / artwork.width, h / artwork.height)
        resized = artwork.resize((round(artwork.width * scale), round(artwork.height * scale)))
        left, top = (resized.width - w) // 2, (resized.height - h) // 2
        resized = resized.crop((left, top, left + w, top + h))
    else:
        scale = min(w / artwork.width, h / artwork.height)
        resized = artwork.resize((round(artwork.width * scale), round(artwork.height * scale)))
    canvas.paste(resized, (x + (w - resized.width) // 2, y + (h - resized.height) // 2))
    slot = spec["texts"][0]
    font = ImageFont.truetype(str(FONTS_DIR / slot["font"]), points_to_pixels(size_pt, dpi))
    tx, ty, tw, th = (round(v * dpi) for v in slot["box_in"])
    ImageDraw.Draw(canvas).text((tx + tw / 2, ty + th / 2), text, fill=slot["colour"], font=font, anchor="mm")
    out = io.BytesIO()
    canvas.save(out, format="PNG", dpi=(dpi, dpi), icc_profile=srgb_profile_bytes())
    return out.getvalue()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.2f} s (min {min(samples):.2f}, max {max(samples):.2f})"


def bench_template(product: dict[str, Any], runs: int) -> tuple[dict[str, Any], Any]:
    """Warm up once, then alternate ours and the baseline so a busy machine slows both alike."""
    spec = product["template"]
    key = spec["key"]
    slot = spec["texts"][0]["name"]
    artwork = photo(*ARTWORK_PX[key])

    def ours() -> Any:
        return render_asset(spec, artwork=artwork, texts={slot: TEXT}, product_type=product["product_type"],
                            print_method=product["print_method"], colour=product["variants"][0]["colour"])

    progress(f"[{key}] warm-up")
    asset = ours()
    size_pt, mode = asset.text_sizes_pt[slot], asset.mode
    reference = baseline(spec, artwork, TEXT, size_pt, mode)
    ours_s, base_s = [], []
    for run in range(1, runs + 1):
        seconds, asset = timed(ours)
        ours_s.append(seconds)
        progress(f"[{key}] run {run}/{runs}: ours {seconds:.2f} s")
        seconds, reference = timed(lambda: baseline(spec, artwork, TEXT, size_pt, mode))
        base_s.append(seconds)
        progress(f"[{key}] run {run}/{runs}: baseline {seconds:.2f} s")
    options = {"print_method": product["print_method"], "colour": product["variants"][0]["colour"]}
    started = time.perf_counter()
    for _ in range(1000):
        asset_key(key, 1, "a" * 64, {slot: TEXT}, options)
    key_us = (time.perf_counter() - started) * 1000
    ratio = statistics.median(ours_s) / statistics.median(base_s)
    bytes_ratio = len(asset.print_png) / len(reference)
    print(f"\n{key}: {asset.width}x{asset.height} {asset.mode}, artwork {artwork.width}x{artwork.height}, "
          f"{runs} runs after a warm-up")
    print(f"  ours      {spread(ours_s)}  {len(asset.print_png) / 1e6:7.1f} MB  (PNG + preview + sha256"
          f"{' + PDF' if asset.pdf else ''})")
    print(f"  baseline  {spread(base_s)}  {len(reference) / 1e6:7.1f} MB  (resize default, save defaults)")
    print(f"  ratio     time {ratio:.2f} (goal <= 0.30)   bytes {bytes_ratio:.2f} (goal <= 1.30)")
    print(f"  cache hit {key_us:.1f} us per asset_key (a hit skips the render entirely)")
    return {"bench": "render", "template": key, "ours": round(statistics.median(ours_s), 3),
            "baseline": round(statistics.median(base_s), 3), "ratio": round(ratio, 3), "unit": "s",
            "bytes_ratio": round(bytes_ratio, 3), "cache_hit_us": round(key_us, 2),
            "ours_bytes": len(asset.print_png), "baseline_bytes": len(reference), "runs": runs}, asset


def compression_table(png: bytes, dpi: int, *, with_optimize: bool) -> None:
    """Encode the same composed canvas every way worth considering, to show what each setting costs."""
    canvas = Image.open(io.BytesIO(png))
    canvas.load()
    icc = srgb_profile_bytes()
    rows: list[tuple[str, Callable[[], bytes]]] = [
        (f"ours level {level}, Up + Z_RLE, 2 threads",
         lambda level=level: encode_png(canvas, dpi=dpi, icc_profile=icc, compress_level=level, threads=2))
        for level in (0, 1, 3, 6)
    ]
    rows += [
        ("ours level 1, Up + Z_RLE, 1 thread",
         lambda: encode_png(canvas, dpi=dpi, icc_profile=icc, compress_level=1, threads=1)),
        ("ours level 1, Up + default strategy",
         lambda: encode_png(canvas, dpi=dpi, icc_profile=icc, compress_level=1,
                            strategy=zlib.Z_DEFAULT_STRATEGY, threads=2)),
    ]

    def pillow(**options: Any) -> Callable[[], bytes]:
        def save() -> bytes:
            out = io.BytesIO()
            canvas.save(out, format="PNG", icc_profile=icc, dpi=(dpi, dpi), **options)
            return out.getvalue()
        return save

    rows += [(f"Pillow compress_level={level}", pillow(compress_level=level)) for level in (1, 6)]
    rows.append(("Pillow compress_level=1, Z_RLE", pillow(compress_level=1, compress_type=zlib.Z_RLE)))
    if with_optimize:
        rows.append(("Pillow optimize=True", pillow(optimize=True)))
    print(f"\nPNG encoding of a {canvas.width}x{canvas.height} {canvas.mode} canvas, encode only, 1 run each")
    print(f"  {'setting':48} {'seconds':>8} {'MB':>8}")
    for name, encode in rows:
        progress(f"[encode] {name}")
        seconds, data = timed(encode)
        print(f"  {name:48} {seconds:8.2f} {len(data) / 1e6:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per template, after one warm-up")
    parser.add_argument("--templates", default=",".join(TEMPLATES), help="comma-separated template keys")
    parser.add_argument("--no-optimize", action="store_true", help="skip Pillow optimize=True (slowest row)")
    args = parser.parse_args(argv)
    catalogue = json.loads(CATALOGUE.read_text())
    products = {p["template"]["key"]: p for p in catalogue["products"]}
    results, first = [], None
    for key in args.templates.split(","):
        result, asset = bench_template(products[key], args.runs)
        results.append(result)
        first = first or asset  # keep one composed design for the encoding table, let the big ones go
    assert first is not None
    compression_table(first.print_png, first.dpi, with_optimize=not args.no_optimize)
    print()
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
