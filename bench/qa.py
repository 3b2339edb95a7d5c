"""QA benchmark: accuracy of core.qa against the partner sim's ground truth, and speed next to odiff/pixelmatch.

    python -m bench.qa [--prints 500] [--defect-rate 0.3] [--speed-runs 5] [--skip-accuracy] [--skip-speed]

(1) Accuracy: N prints from varied synthetic designs at catalogue sizes, photographed by
    ``sims.camera.photograph`` with the default defect mix, inspected; recall on defective prints (auto-fail,
    and caught = fail or review), false fails on good ones, review share, per defect kind.
(2) Speed: one inspection per 4500x5400 and per 1500x1800 pair, PNG/JPEG decode included, next to odiff
    (``odiff-bin``) and pixelmatch on the same files when npm can install them (else reported absent).
Each part ends with one JSON line ``{"bench": "qa", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from core.qa import inspect, prepare_reference
from core.services.qa import print_file_pixels
from sims.camera import photograph as sim_photograph
from sims.camera import pick_defect

CATALOGUE = Path(__file__).resolve().parents[1] / "db" / "seed_data" / "catalogue.json"
# (template key, print size px, dpi, share of the prints): the tee's 15x18 in, the mug wrap, the phone case.
TEMPLATES = (("tee-front", (4500, 5400), 300, 0.5), ("mug-wrap", (2550, 1050), 300, 0.3),
             ("case-back", (900, 1830), 300, 0.2))
STYLES = ("photo", "graphic", "typographic", "gradient", "full_bleed")
WORDS = ("PRESSROOM", "Best Dad Ever", "SUMMER 2026", "Made with love", "Team Rocket", "hello", "OK!", "No 7",
         "Grandma's Kitchen", "Coffee first", "RUN CLUB", "Est. 1998")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- designs ---------------------------------------------------------------------------------------------


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Photo-like content: smooth colour fields with detail at several scales (fractal noise)."""
    field = np.zeros((height, width, 3), np.float32)
    base = max(width, height)
    for cells, amplitude in ((3, 1.0), (9, 0.55), (27, 0.3), (81, 0.16), (200, 0.08)):
        gh, gw = max(2, round(cells * height / base)), max(2, round(cells * width / base))
        small = rng.normal(0, 1, (gh, gw, 3)).astype(np.float32)
        field += amplitude * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    mix = rng.normal(0, 1, (3, 3)).astype(np.float32) * 0.6 + np.eye(3, dtype=np.float32)
    return np.clip(rng.uniform(70, 190, 3).astype(np.float32) + (field @ mix) * 42, 0, 255).astype(np.uint8)


def _shapes(canvas: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, count: int) -> None:
    x0, y0, x1, y1 = box
    span = max(x1 - x0, y1 - y0)
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(x0, x1)), int(rng.integers(y0, y1))
        r = int(rng.uniform(0.03, 0.16) * span) + 2
        kind = int(rng.integers(5))
        if kind == 0:
            cv2.circle(canvas, (cx, cy), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(canvas, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1)
        elif kind == 2:
            points = (rng.normal(0, r, (int(rng.integers(3, 7)), 2)) + (cx, cy)).astype(np.int32)
            cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
        elif kind == 3:
            cv2.circle(canvas, (cx, cy), r, colour, max(2, r // 6), cv2.LINE_AA)
        else:
            for k in range(int(rng.integers(3, 7))):
                y = cy + k * max(3, r // 3)
                cv2.line(canvas, (max(x0, cx - 2 * r), y), (min(x1, cx + 2 * r), y), colour, max(2, r // 10),
                         cv2.LINE_AA)


def _text(canvas: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, lines: int) -> None:
    x0, y0, x1, y1 = box
    font = (cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_TRIPLEX)[int(rng.integers(3))]
    dark = rng.random() < 0.7
    for i in range(lines):
        text = str(rng.choice(WORDS))
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
        scale = min((x1 - x0) * rng.uniform(0.5, 0.95) / tw, (y1 - y0) / lines * 0.7 / th)
        thickness = max(1, round(scale * rng.uniform(1.5, 3.5)))
        colour = (tuple(int(c) for c in rng.integers(0, 60, 3)) if dark
                  else tuple(int(c) for c in rng.integers(0, 256, 3)))
        y = y0 + round((i + 0.8) * (y1 - y0) / lines)
        x = x0 + int(rng.integers(0, max(1, (x1 - x0) - round(tw * scale))))
        cv2.putText(canvas, text, (x, y), font, scale, colour, thickness, cv2.LINE_AA)


def design(width: int, height: int, *, rng: np.random.Generator, style: str | None = None) -> np.ndarray:
    """A print file (RGB uint8 on white) as customers order them: photos, graphics, type, gradients."""
    style = style or str(rng.choice(STYLES))
    canvas = np.full((height, width, 3), 255, np.uint8)
    landscape = width > 1.6 * height
    margin = round(0.04 * min(width, height))
    if landscape:  # a mug wrap: artwork on the left, a name on the right
        art = (margin, margin, round(width * 0.66), height - margin)
        words = (round(width * 0.69), margin, width - margin, height - margin)
    else:
        art = (margin, margin, width - margin, round(height * 0.76))
        words = (margin, round(height * 0.8), width - margin, height - margin)
    ax0, ay0, ax1, ay1 = art
    if style == "full_bleed":
        canvas[:] = _texture(width, height, rng)
        _shapes(canvas, (0, 0, width, height), rng, int(rng.integers(2, 6)))
        _text(canvas, words, rng, 1)
        return canvas
    if style == "photo":
        canvas[ay0:ay1, ax0:ax1] = _texture(ax1 - ax0, ay1 - ay0, rng)
        _shapes(canvas, art, rng, int(rng.integers(0, 5)))
    elif style == "graphic":
        _shapes(canvas, art, rng, int(rng.integers(8, 20)))
    elif style == "gradient":
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, ay1 - ay0, dtype=np.float32)[:, None, None]
        canvas[ay0:ay1, ax0:ax1] = (c0 * (1 - t) + c1 * t).astype(np.uint8)
        _shapes(canvas, art, rng, int(rng.integers(4, 10)))
    else:  # typographic
        _text(canvas, art, rng, int(rng.integers(3, 6)))
        _shapes(canvas, art, rng, int(rng.integers(1, 4)))
    _text(canvas, words, rng, 1 if landscape else int(rng.integers(1, 3)))
    return canvas


# --- accuracy --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    seed: int
    template: str
    style: str
    truth: str | None
    verdict: str
    reasons: tuple[str, ...]
    scores: dict[str, float]
    seconds: float


def _template_for(rng: np.random.Generator) -> tuple[str, tuple[int, int], int]:
    shares = np.array([t[3] for t in TEMPLATES])
    key, size, dpi, _ = TEMPLATES[int(rng.choice(len(TEMPLATES), p=shares / shares.sum()))]
    return key, size, dpi


def run_one(seed: int, defect_rate: float) -> Outcome:
    """One print: design, sim photo with the sim's own defect draw, inspection."""
    rng = np.random.default_rng(seed)
    key, (width, height), dpi = _template_for(rng)
    style = str(rng.choice(STYLES))
    reference = design(width, height, rng=rng, style=style)
    defect = pick_defect(rng, defect_rate)
    photo, truth = sim_photograph(reference, rng=rng, defect=defect, dpi=dpi)
    started = time.perf_counter()
    result = inspect(reference, photo, dpi=dpi)
    elapsed = time.perf_counter() - started
    return Outcome(seed=seed, template=key, style=style, truth=truth["defect"], verdict=result.verdict,
                   reasons=tuple(r.value for r in result.reasons), scores=dict(result.scores), seconds=elapsed)


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Recall (auto-fail and caught), false fails, review share, and per-kind figures."""
    good = [o for o in outcomes if o.truth is None]
    bad = [o for o in outcomes if o.truth is not None]
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted({o.truth for o in bad}):
        items = [o for o in bad if o.truth == kind]
        per_kind[kind] = {
            "n": len(items),
            "fail": sum(o.verdict == "fail" for o in items) / len(items),
            "caught": sum(o.verdict != "pass" for o in items) / len(items),
            "reason_first": sum(bool(o.reasons) and o.reasons[0] == kind for o in items) / len(items),
        }

    def ratio(verdict: str, items: list[Outcome]) -> float:
        return sum(o.verdict == verdict for o in items) / len(items) if items else float("nan")

    return {
        "prints": len(outcomes),
        "good": len(good),
        "defective": len(bad),
        "recall_fail": ratio("fail", bad),
        "recall_caught": 1 - ratio("pass", bad) if bad else float("nan"),
        "false_fail": ratio("fail", good),
        "good_review": ratio("review", good),
        "review_share": ratio("review", outcomes),
        "reason_accuracy": (sum(bool(o.reasons) and o.reasons[0] == o.truth for o in bad) / len(bad)
                            if bad else float("nan")),
        "inspect_s_median": statistics.median(o.seconds for o in outcomes),
        "per_kind": per_kind,
    }


def accuracy(prints: int, defect_rate: float, seed: int) -> dict[str, Any]:
    outcomes = [run_one(seed + i, defect_rate) for i in tqdm(range(prints), desc="qa accuracy", unit="print")]
    summary = summarise(outcomes)
    progress(f"\n{'kind':<18}{'n':>5}{'auto-fail':>11}{'caught':>9}{'reason ok':>11}")
    for kind, row in summary["per_kind"].items():
        progress(f"{kind:<18}{row['n']:>5}{row['fail']:>11.1%}{row['caught']:>9.1%}{row['reason_first']:>11.1%}")
    progress(f"good prints {summary['good']}: false fails {summary['false_fail']:.1%}, "
             f"review {summary['good_review']:.1%}")
    progress(f"defective {summary['defective']}: recall (auto-fail) {summary['recall_fail']:.1%}, "
             f"recall (fail or review) {summary['recall_caught']:.1%}; review share {summary['review_share']:.1%}")
    misses = [o for o in outcomes if (o.truth is None) == (o.verdict == "fail") or
              (o.truth is not None and o.verdict == "pass")]
    for o in misses[:20]:
        keys = ("delta_e_bias", "fade", "ssim", "shift_mm", "blob_mm", "missing_mm", "inliers", "inlier_ratio")
        detail = " ".join(f"{k}={o.scores.get(k, float('nan')):.2f}" for k in keys)
        progress(f"  miss: seed {o.seed} {o.template}/{o.style} truth={o.truth} verdict={o.verdict} "
                 f"{list(o.reasons)} {detail}")
    return summary


# --- speed -----------------------------------------------------------------------------------------------


def _encode_png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return data.tobytes()


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def _decode(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _timed(function: Callable[[], Any], runs: int) -> list[float]:
    function()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def _npm_tools(workdir: Path) -> dict[str, list[str]] | None:
    """Install odiff-bin and pixelmatch into a temp folder; None when npm is missing or the install fails."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        return None
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "odiff-bin", "pixelmatch", "pngjs"],
                       cwd=workdir, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as error:
        progress(f"npm install failed ({error}); odiff and pixelmatch are reported absent")
        return None
    (workdir / "pm.mjs").write_text(
        "import fs from 'fs'; import {PNG} from 'pngjs'; import pixelmatch from 'pixelmatch';\n"
        "const [a, b, out] = process.argv.slice(2);\n"
        "const i1 = PNG.sync.read(fs.readFileSync(a)), i2 = PNG.sync.read(fs.readFileSync(b));\n"
        "const {width, height} = i1; const diff = new PNG({width, height});\n"
        "const n = pixelmatch(i1.data, i2.data, diff.data, width, height, {threshold: 0.1});\n"
        "if (out) fs.writeFileSync(out, PNG.sync.write(diff)); console.log(n);\n")
    odiff = workdir / "node_modules" / ".bin" / "odiff"
    tools = {"pixelmatch": ["node", str(workdir / "pm.mjs")]}
    if odiff.exists():
        tools["odiff"] = [str(odiff)]
    return tools


def speed(runs: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per pair, decode included, for a 4500x5400 and a 1500x1800 print with its photo."""
    with tempfile.TemporaryDirectory(prefix="bench-qa-") as tmp:
        work = Path(tmp)
        progress("installing odiff-bin and pixelmatch with npm (the baselines)...")
        tools = _npm_tools(work)
        progress(f"baselines: {', '.join(tools) if tools else 'absent (npm missing or install failed)'}")
        pairs = (("4500x5400", (4500, 5400), 300), ("1500x1800", (1500, 1800), 100))
        return {label: _time_pair(work / label, size, dpi, seed=seed, runs=runs, tools=tools)
                for label, size, dpi in tqdm(pairs, desc="qa speed", unit="pair")}


def _time_pair(folder: Path, size: tuple[int, int], dpi: int, *, seed: int, runs: int,
               tools: dict[str, list[str]] | None) -> dict[str, list[float]]:
    """One pair, every contender on the same files.

    ours: decode the print PNG as the QA worker does (`print_file_pixels`) and the camera's JPEG, inspect (register,
    diff, classify), encode the heat-map.
    ours_cached_reference: the same from the working-size reference the render stage can store once per print
    file (the full file is decoded at render time, not once per photo).
    ours_prepared_reference: the photo decoded and inspected against the reference prepared once (`prepare_reference`:
    working size, keypoints, L*a*b*, edge map), as the QA worker does for every print of a design after the first.
    odiff / pixelmatch compare two same-size images pixel by pixel and cannot register, so they get the photo
    resampled to the print's size as PNG: odiff writing its diff image, odiff counting only, pixelmatch.
    """
    folder.mkdir(parents=True)
    width, height = size
    rng = np.random.default_rng(seed)
    reference = design(width, height, rng=rng, style="photo")
    photo, _ = sim_photograph(reference, rng=rng, defect="ink_blot", dpi=dpi)
    k = max(1, round(max(width, height) / 1000))
    ref_png, small_png, photo_jpg, photo_png = (folder / name for name in
                                                ("ref.png", "small.png", "photo.jpg", "photo.png"))
    ref_png.write_bytes(_encode_png(reference))
    small_png.write_bytes(_encode_png(cv2.resize(reference, (width // k, height // k), interpolation=cv2.INTER_AREA)))
    photo_jpg.write_bytes(_encode_jpeg(photo))
    photo_png.write_bytes(_encode_png(cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)))

    def ours(reference_file: Path, reference_dpi: float) -> None:
        result = inspect(print_file_pixels(reference_file.read_bytes()), _decode(photo_jpg), dpi=reference_dpi)
        _encode_jpeg(result.heatmap)  # stored next to the photo for the review page

    prepared = prepare_reference(_decode(ref_png))

    def ours_prepared() -> None:
        result = inspect(prepared, _decode(photo_jpg), dpi=dpi)
        _encode_jpeg(result.heatmap)

    row = {"ours": _timed(lambda: ours(ref_png, dpi), runs),
           "ours_cached_reference": _timed(lambda: ours(small_png, dpi / k), runs),
           "ours_prepared_reference": _timed(ours_prepared, runs),
           "decode_only": _timed(lambda: (print_file_pixels(ref_png.read_bytes()), _decode(photo_jpg)), runs)}
    images = [str(ref_png), str(photo_png)]
    if tools and "odiff" in tools:
        row["odiff_diff_image"] = _timed(lambda: _run([*tools["odiff"], *images, str(folder / "odiff.png")]), runs)
        row["odiff_count_only"] = _timed(lambda: _run([*tools["odiff"], *images]), runs)
    if tools and "pixelmatch" in tools:
        row["pixelmatch"] = _timed(lambda: _run([*tools["pixelmatch"], *images, str(folder / "pm.png")]), runs)
    return row


def _run(command: list[str]) -> None:
    """Run a diff tool; a non-zero exit only means "images differ" for odiff and pixelmatch."""
    subprocess.run(command, check=False, capture_output=True, timeout=600)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prints", type=int, default=500)
    parser.add_argument("--defect-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--speed-runs", type=int, default=5)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    machine = {"cpus": os.cpu_count(), "opencv": cv2.__version__, "threads": cv2.getNumThreads()}
    if not args.skip_accuracy:
        summary = accuracy(args.prints, args.defect_rate, args.seed)
        print(json.dumps({"bench": "qa", "part": "accuracy", "ours": summary["recall_fail"],
                          "baseline": None, "ratio": None, "unit": "recall", **summary, "machine": machine}))
    if not args.skip_speed:
        timings = speed(args.speed_runs, args.seed)
        for label, row in timings.items():
            progress(f"\n{label} pair (decode included), median (min-max) over {args.speed_runs} runs:")
            for name, samples in row.items():
                progress(f"  {name:<18}{_median(samples) * 1000:8.0f} ms  ({min(samples) * 1000:.0f}-"
                         f"{max(samples) * 1000:.0f})")
        big = timings["4500x5400"]
        baseline_name = next((name for name in ("odiff_diff_image", "pixelmatch") if name in big), None)
        ours = _median(big["ours"])
        baseline = _median(big[baseline_name]) if baseline_name else None
        print(json.dumps({
            "bench": "qa", "part": "speed", "ours": ours, "baseline": baseline,
            "ratio": (ours / baseline) if baseline else None, "unit": "s per 4500x5400 pair",
            "baseline_tool": baseline_name or "absent",
            "ratios": {label: _median(row["ours"]) / _median(row[baseline_name])
                       for label, row in timings.items() if baseline_name in row} if baseline_name else {},
            "pairs": {label: {name: {"median_s": _median(s), "min_s": min(s), "max_s": max(s)}
                              for name, s in row.items()} for label, row in timings.items()},
            "machine": machine,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
