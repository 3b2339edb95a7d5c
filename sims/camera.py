"""The print file as a partner's QA camera sees it: print-space defects, then lens, light and sensor."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

DEFECT_KINDS: tuple[str, ...] = (
    "colour_shift", "misregistration", "ink_blot", "missing_area", "faded_print", "wrong_design",
)
MM_PER_INCH = 25.4
FRAME_ASPECT = 4 / 3          # a typical camera sensor; the frame turns with the print's orientation
FRAME_FILL = 0.80             # share of the frame the print covers before the scale jitter
SCALE_RANGE = (0.90, 1.05)
ROTATION_DEG = 3.0
CORNER_JITTER = 0.015         # of the print's size in the photo, per corner coordinate
OFFSET_JITTER = 0.02          # of the frame, so the print is not always dead centre
GRADIENT_RANGE = (0.03, 0.08)  # brightness ± this across the frame
VIGNETTE_RANGE = (0.03, 0.08)  # brightness lost in the corners
WHITE_BALANCE = 0.02
BLUR_RANGE = (0.5, 0.8)
NOISE_RANGE = (2.0, 3.0)
INK_THRESHOLD = 24            # a pixel this far (max channel) from the substrate carries ink
PAPER_WHITE = (255, 255, 255)


def pick_defect(rng: np.random.Generator, rate: float, mix: Mapping[str, float] | None = None) -> str | None:
    """Whether this item comes out defective and how, so the defect rate and mix are knobs, not code.

    Args:
        rng: the job's defect generator (both draws are always made, so later draws do not depend on the rate).
        rate: probability of any defect, 0..1.
        mix: relative weight per kind; equal shares when None. Unknown kinds raise ValueError.
    """
    hit, which = rng.random(), rng.random()
    if hit >= rate:
        return None
    weights = dict.fromkeys(DEFECT_KINDS, 1.0) if mix is None else dict(mix)
    unknown = set(weights) - set(DEFECT_KINDS)
    if unknown:
        raise ValueError(f"unknown defect kinds in mix: {sorted(unknown)}")
    kinds = [k for k in DEFECT_KINDS if weights.get(k, 0.0) > 0]
    if not kinds:
        return None
    cumulative = np.cumsum([weights[k] for k in kinds])
    return kinds[int(np.searchsorted(cumulative, which * cumulative[-1], side="right").clip(0, len(kinds) - 1))]


def photograph(
    print_rgb: np.ndarray,
    *,
    rng: np.random.Generator,
    defect: str | None,
    dpi: float,
    long_side: int = 1500,
    background: tuple[int, int, int] = (235, 235, 230),
    substrate: tuple[int, int, int] = PAPER_WHITE,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Photograph a print as a partner's camera would, with an optional defect made in print space.

    The camera and the defect draw from two generators seeded from `rng`, so the same seed gives the same
    framing, light and noise with or without a defect: a test or a QA bench can isolate the defect exactly.

    Args:
        print_rgb: H×W×3 uint8 RGB print file (already flattened onto the substrate where it had alpha).
        rng: the only source of randomness; the result is deterministic for a given generator state.
        defect: one of DEFECT_KINDS or None.
        dpi: pixels per inch of `print_rgb`, so defects have physical sizes in mm.
        long_side: long side of the photo in pixels.
        background: what the item lies on (table, press platen), outside the print.
        substrate: the blank's colour where there is no ink (garment, paper): what a missing area shows.

    Returns:
        The photo (RGB uint8) and the ground truth: {"defect", "defect_params", "camera"}; camera
        params carry the homography from print-file pixels to photo pixels.
    """
    if defect is not None and defect not in DEFECT_KINDS:
        raise ValueError(f"unknown defect {defect!r}; expected one of {DEFECT_KINDS}")
    if print_rgb.ndim != 3 or print_rgb.shape[2] != 3 or print_rgb.dtype != np.uint8:
        raise ValueError(f"print_rgb must be H×W×3 uint8, got {print_rgb.shape} {print_rgb.dtype}")
    camera_seed, defect_seed = (int(s) for s in rng.integers(0, 2**63, size=2))
    cam, defect_rng = np.random.default_rng(camera_seed), np.random.default_rng(defect_seed)

    height, width = print_rgb.shape[:2]
    frame_w, frame_h = _frame_size(width, height, long_side)
    fit = min(frame_w / width, frame_h / height) * FRAME_FILL
    scale = float(cam.uniform(*SCALE_RANGE))
    work_w, work_h = max(8, round(width * fit * scale)), max(8, round(height * fit * scale))
    fx, fy = work_w / width, work_h / height
    work = cv2.resize(print_rgb, (work_w, work_h),
                      interpolation=cv2.INTER_AREA if fx < 1 else cv2.INTER_LINEAR)

    defect_params: dict[str, Any] = {}
    if defect is not None:
        px_per_mm = dpi * fx / MM_PER_INCH
        work, defect_params = _DEFECTS[defect](work, defect_rng, px_per_mm, np.array(substrate, np.float32))
        defect_params = _rounded(defect_params)

    to_photo, geometry = _placement(cam, work_w, work_h, frame_w, frame_h)
    photo = cv2.warpPerspective(work, to_photo, (frame_w, frame_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(c) for c in background))
    photo, photometry = _expose(photo, cam)

    # Print-file pixel centre x maps to work pixel centre (x + 0.5) * f - 0.5.
    print_to_work = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
    homography = to_photo @ print_to_work
    camera = {
        "homography": (homography / homography[2, 2]).round(6).tolist(),
        "photo_size": [frame_w, frame_h],
        "print_size": [width, height],
        "dpi": dpi,
        "scale": round(scale, 4),
        "photo_px_per_mm": round(dpi * fx / MM_PER_INCH, 4),
        "background": list(background),
        "substrate": list(substrate),
        **geometry,
        **photometry,
    }
    return photo, {"defect": defect, "defect_params": defect_params, "camera": camera}


# --------------------------------------------------------------------------------------------------
# Camera: framing, lens and sensor.


def _frame_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    short = round(long_side / FRAME_ASPECT)
    return (long_side, short) if width >= height else (short, long_side)


def _placement(cam: np.random.Generator, work_w: int, work_h: int, frame_w: int, frame_h: int,
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Where the print lands in the frame: offset, small rotation and a hand-held perspective."""
    angle = float(cam.uniform(-ROTATION_DEG, ROTATION_DEG))
    offset = cam.uniform(-OFFSET_JITTER, OFFSET_JITTER, size=2) * (frame_w, frame_h)
    jitter = cam.uniform(-CORNER_JITTER, CORNER_JITTER, size=(4, 2)) * (work_w, work_h)
    half = np.array([[-work_w, -work_h], [work_w, -work_h], [work_w, work_h], [-work_w, work_h]]) / 2
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = np.array([frame_w, frame_h]) / 2 - 0.5 + offset
    dst = (half + jitter) @ rotation.T + centre
    src = np.array([[-0.5, -0.5], [work_w - 0.5, -0.5], [work_w - 0.5, work_h - 0.5], [-0.5, work_h - 0.5]])
    to_photo = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    return to_photo, {
        "rotation_deg": round(angle, 4),
        "offset_px": offset.round(2).tolist(),
        "corners_px": dst.round(2).tolist(),
    }


def _expose(photo: np.ndarray, cam: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Lens blur, uneven light, white balance and sensor noise, in that physical order."""
    h, w = photo.shape[:2]
    blur = float(cam.uniform(*BLUR_RANGE))
    gradient = float(cam.uniform(*GRADIENT_RANGE))
    gradient_angle = float(cam.uniform(0, 2 * math.pi))
    vignette = float(cam.uniform(*VIGNETTE_RANGE))
    gains = (1 + cam.uniform(-WHITE_BALANCE, WHITE_BALANCE, size=3)).astype(np.float32)
    noise_sigma = float(cam.uniform(*NOISE_RANGE))

    img = cv2.GaussianBlur(photo, (0, 0), blur).astype(np.float32)
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    radius = math.hypot(w / 2, h / 2)
    light = (1 + gradient * (xs * math.cos(gradient_angle) + ys * math.sin(gradient_angle)) / radius
             - vignette * (xs * xs + ys * ys) / (radius * radius))
    img = cv2.multiply(img, cv2.merge([light * g for g in gains]))
    # Sensor noise as a demosaiced camera makes it: fine luminance grain plus coarser chroma blotches.
    luma = cam.standard_normal((h, w), dtype=np.float32) * (noise_sigma * 0.8)
    chroma = cam.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32) * (noise_sigma * 0.85)
    img += luma[:, :, None]
    img += cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 255).round().astype(np.uint8), {
        "blur_sigma": round(blur, 4),
        "gradient": {"amplitude": round(gradient, 4), "angle_deg": round(math.degrees(gradient_angle), 2)},
        "vignette": round(vignette, 4),
        "white_balance": gains.round(4).tolist(),
        "noise_sigma": round(noise_sigma, 4),
    }


# --------------------------------------------------------------------------------------------------
# Defects, made in print space at physical sizes (mm), before the camera sees the print.


def _ink_mask(img: np.ndarray, substrate: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(np.int16) - substrate.astype(np.int16)).max(axis=2) > INK_THRESHOLD


def _colour_shift(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """A mis-set ICC profile or a drifting ink channel: a global shift of ΔE 8-15 on the inked pixels."""
    target = float(rng.uniform(8, 15))
    d_l = target * float(rng.uniform(-0.3, 0.3))
    hue = float(rng.uniform(0, 2 * math.pi))
    chroma = math.sqrt(target**2 - d_l**2)
    shift = np.array([d_l, chroma * math.cos(hue), chroma * math.sin(hue)], np.float32)
    ink = _ink_mask(img, substrate)
    if ink.mean() < 0.01:  # nothing printed to speak of: the whole print area takes the shift
        ink[:] = True
    lab = cv2.cvtColor(img.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)
    shifted = lab + ink.astype(np.float32)[:, :, None] * shift
    rgb = np.clip(cv2.cvtColor(shifted, cv2.COLOR_Lab2RGB), 0, 1)  # out of gamut: the press clips too
    out = cv2.convertScaleAbs(rgb, alpha=255)  # rounds and saturates to uint8
    # What the shift came to after the gamut clipped it, measured on a sparse grid of the inked pixels.
    grid = (slice(None, None, 3), slice(None, None, 3))
    sample = cv2.cvtColor(out[grid].astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)
    measured = (sample - lab[grid])[ink[grid]]
    return out, {
        "delta_e_target": target,
        "delta_e": float(np.linalg.norm(measured, axis=1).mean()),
        "shift_lab": shift.tolist(),
        "ink_fraction": float(ink.mean()),
    }


def _misregistration(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """The platen or sheet was loaded off: all the ink lands 2-6 mm from where the file puts it."""
    shift_mm = float(rng.uniform(2, 6))
    direction = float(rng.uniform(0, 2 * math.pi))
    dx_mm, dy_mm = shift_mm * math.cos(direction), shift_mm * math.sin(direction)
    translation = np.array([[1, 0, dx_mm * px_per_mm], [0, 1, dy_mm * px_per_mm]], np.float32)
    out = cv2.warpAffine(img, translation, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(c) for c in substrate))
    return out, {"shift_mm": shift_mm, "dx_mm": dx_mm, "dy_mm": dy_mm}


_BLOT_INKS = np.array([[22, 22, 26], [0, 150, 200], [200, 20, 120], [225, 190, 20], [245, 245, 245]],
                      np.float32)


def _ink_blot(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """A drip or a smudge: one to three irregular blots of 4-15 mm in an ink that shows on what is under it."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    count = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    blots = []
    for _ in range(count):
        diameter_mm = float(rng.uniform(4, 15))
        cx, cy = rng.uniform(0.08, 0.92) * w, rng.uniform(0.08, 0.92) * h
        r = diameter_mm * px_per_mm / 2
        pad = int(math.ceil(r * 1.6)) + 2
        x0, y0, x1, y1 = max(0, int(cx) - pad), max(0, int(cy) - pad), min(w, int(cx) + pad), min(h, int(cy) + pad)
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        centre = (cx - x0, cy - y0)
        axes = (r, r * float(rng.uniform(0.6, 1.0)))
        cv2.ellipse(mask, _fixed(centre), _fixed(axes, size=True), float(rng.uniform(0, 180)), 0, 360, 1.0,
                    -1, cv2.LINE_AA, shift=4)
        for _ in range(int(rng.integers(3, 7))):  # satellite droplets make it read as a splash, not a dot
            angle, dist = rng.uniform(0, 2 * math.pi), r * rng.uniform(0.8, 1.3)
            drop = (centre[0] + dist * math.cos(angle), centre[1] + dist * math.sin(angle))
            cv2.circle(mask, _fixed(drop), int(r * rng.uniform(0.08, 0.25) * 16), 1.0, -1, cv2.LINE_AA, shift=4)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.05 * r)) * float(rng.uniform(0.85, 1.0))
        roi = out[y0:y1, x0:x1]
        under = roi[mask > 0.5].mean(axis=0) if (mask > 0.5).any() else roi.reshape(-1, 3).mean(axis=0)
        colour = _BLOT_INKS[int(np.argmax(np.linalg.norm(_BLOT_INKS - under, axis=1)))]
        roi += (colour - roi) * mask[:, :, None]
        blots.append({"x_mm": cx / px_per_mm, "y_mm": cy / px_per_mm, "diameter_mm": diameter_mm,
                      "rgb": colour.astype(int).tolist()})
    return out.round().astype(np.uint8), {"blots": blots}


def _missing_area(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """A clogged head or a fold in the blank: a 10-40 mm patch of the design where no ink landed."""
    h, w = img.shape[:2]
    w_mm, h_mm = float(rng.uniform(10, 40)), float(rng.uniform(10, 40))
    pw, ph = min(w, max(2, round(w_mm * px_per_mm))), min(h, max(2, round(h_mm * px_per_mm)))
    candidates = rng.uniform(0, 1, size=(24, 2)) * (w - pw, h - ph)
    # Put it where there is ink to lose (the best of a few random spots), or the defect would be invisible.
    ink = cv2.integral(_ink_mask(img, substrate).astype(np.uint8))
    def coverage(xy: np.ndarray) -> float:
        x, y = int(xy[0]), int(xy[1])
        return float(ink[y + ph, x + pw] - ink[y, x + pw] - ink[y + ph, x] + ink[y, x]) / (pw * ph)
    scores = [coverage(c) for c in candidates]
    best = int(np.argmax(scores))
    x, y = (int(v) for v in candidates[best])
    mask = np.zeros((h, w), np.float32)
    mask[y:y + ph, x:x + pw] = 1.0
    feather = max(0.5, 0.5 * px_per_mm)
    pad = int(3 * feather) + 1
    ys, xs = slice(max(0, y - pad), min(h, y + ph + pad)), slice(max(0, x - pad), min(w, x + pw + pad))
    mask[ys, xs] = cv2.GaussianBlur(mask[ys, xs], (0, 0), feather)
    out = img.astype(np.float32)
    out[ys, xs] += (substrate - out[ys, xs]) * mask[ys, xs, None]
    return out.round().astype(np.uint8), {
        "x_mm": x / px_per_mm, "y_mm": y / px_per_mm, "w_mm": w_mm, "h_mm": h_mm, "ink_fraction": scores[best],
    }


def _faded_print(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Too little ink or a cold cure: every colour 25-45 % of the way back to the blank, losing contrast."""
    fade = float(rng.uniform(0.25, 0.45))
    out = substrate + (img.astype(np.float32) - substrate) * (1 - fade)
    return out.round().clip(0, 255).astype(np.uint8), {"fade": fade}


def _wrong_design(img: np.ndarray, rng: np.random.Generator, px_per_mm: float, substrate: np.ndarray,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Another order's file on this blank: a mirrored or turned film, or a different design altogether."""
    variant = str(rng.choice(["mirrored", "rotated_180", "other_design", "other_design"]))
    seed = int(rng.integers(0, 2**63))
    out = img[:, ::-1] if variant == "mirrored" else img[::-1, ::-1] if variant == "rotated_180" else None
    ink = _ink_mask(img, substrate)
    if out is not None and np.abs(out.astype(np.int16) - img).mean() < 0.15 * max(1.0, _spread(img, ink)):
        variant, out = "other_design", None  # a symmetric design looks the same flipped: not a wrong design
    if out is None:
        out = _other_design(img.shape[:2], np.random.default_rng(seed), substrate, ink)
    return np.ascontiguousarray(out), {"variant": variant}


def _spread(img: np.ndarray, ink: np.ndarray) -> float:
    """Mean distance of the inked pixels from the print's mean colour: how much there is to tell apart."""
    pixels = img.reshape(-1, 3).astype(np.float32)
    return float(np.abs(pixels - pixels.mean(axis=0)).mean()) if ink.any() else 0.0


def _other_design(shape: tuple[int, int], rng: np.random.Generator, substrate: np.ndarray,
                  ink: np.ndarray) -> np.ndarray:
    """A plausible design that is not this one: bold shapes and stripes where the real one had ink."""
    h, w = shape
    out = np.empty((h, w, 3), np.uint8)
    out[:] = substrate.astype(np.uint8)
    rows, cols = np.nonzero(ink)
    x0, x1, y0, y1 = (cols.min(), cols.max(), rows.min(), rows.max()) if rows.size else (0, w - 1, 0, h - 1)
    x0, x1, y0, y1 = int(x0), int(max(x1, x0 + w // 4)), int(y0), int(max(y1, y0 + h // 4))
    for _ in range(int(rng.integers(4, 9))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cx, cy = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
        size = int(rng.uniform(0.08, 0.3) * max(x1 - x0, y1 - y0)) + 2
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(out, (cx, cy), size, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(out, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        else:
            for k in range(5):
                y = cy + k * size // 3
                cv2.line(out, (x0, y), (x1, y), colour, max(2, size // 8), cv2.LINE_AA)
    return out


def _fixed(point: tuple[float, float], *, size: bool = False) -> tuple[int, int]:
    """Coordinates in 1/16 px for OpenCV's sub-pixel drawing (shift=4)."""
    return (max(1, round(point[0] * 16)), max(1, round(point[1] * 16))) if size else (
        round(point[0] * 16), round(point[1] * 16))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


_DEFECTS: dict[str, Callable[..., tuple[np.ndarray, dict[str, Any]]]] = {
    "colour_shift": _colour_shift,
    "misregistration": _misregistration,
    "ink_blot": _ink_blot,
    "missing_area": _missing_area,
    "faded_print": _faded_print,
    "wrong_design": _wrong_design,
}
