"""Automated inspection on synthetic pairs: good prints pass, each defect fails with its reason, registration
is sub-pixel, lighting is not ink, zones have their own tolerances, and the heat-map points at the defect."""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.qa import (
    DEFAULT,
    InspectionError,
    InspectionResult,
    Tolerances,
    Verdict,
    Zone,
    inspect,
    register,
)
from core.states import DefectReason

DPI = 100  # a 15x18 in tee at 100 dpi: physical sizes as in production, a ninth of the pixels
SIZE = (1500, 1800)  # width, height
MM = DPI / 25.4  # print pixels per mm
WHITE = (255, 255, 255)
TABLE = (228, 226, 220)
ART = (0.05, 0.04, 0.95, 0.76)  # artwork box, fractions (x0, y0, x1, y1)
TEXT = (0.05, 0.82, 0.95, 0.97)  # headline box


# --- a print file, a camera, and what can go wrong between them ------------------------------------------


def make_design(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A realistic print file on white: photo-like texture, flat shapes, a gradient band and a headline."""
    rng = np.random.default_rng(seed)
    width, height = size
    canvas = np.full((height, width, 3), 255, np.uint8)
    x0, y0, x1, y1 = (round(f * d) for f, d in zip(ART, (width, height, width, height), strict=True))
    texture = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    for cells, amplitude in ((4, 1.0), (12, 0.5), (40, 0.25), (120, 0.12)):
        small = rng.normal(0, 1, (max(2, cells * (y1 - y0) // (x1 - x0)), cells, 3)).astype(np.float32)
        texture += amplitude * cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    canvas[y0:y1, x0:x1] = np.clip(rng.uniform(70, 190, 3) + texture * 45, 0, 255).astype(np.uint8)
    art = canvas[y0:y1, x0:x1]
    for _ in range(10):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy, r = int(rng.integers(0, x1 - x0)), int(rng.integers(0, y1 - y0)), int(rng.integers(25, 120))
        if rng.random() < 0.5:
            cv2.circle(art, (cx, cy), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(art, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1)
    band = slice(round(0.78 * height), round(0.80 * height))
    t = np.linspace(0, 1, x1 - x0, dtype=np.float32)[None, :, None]
    canvas[band, x0:x1] = (rng.uniform(0, 255, 3) * (1 - t) + rng.uniform(0, 255, 3) * t).astype(np.uint8)
    words = ("PRESSROOM 2026", "BEST DAD EVER", "Summer Camp", "Made with love")[seed % 4]
    cv2.putText(canvas, words, (x0, round(TEXT[3] * height) - 20), cv2.FONT_HERSHEY_DUPLEX, height / 420,
                (20, 20, 24), max(2, height // 200), cv2.LINE_AA)
    return canvas


def photograph(print_rgb: np.ndarray, *, seed: int, long_side: int = 1400, lighting: float = 0.08,
               white_balance: float = 0.02) -> np.ndarray:
    """A partner's camera: scale 0.9-1.05, rotation +/-3 deg, perspective +/-1.5 %, a light gradient and
    vignette, a white-balance tint, lens blur and sensor noise, the print on a table with a margin."""
    rng = np.random.default_rng(seed)
    height, width = print_rgb.shape[:2]
    margin = 0.08
    out_w, out_h = ((long_side, round(long_side * height / width)) if width >= height
                    else (round(long_side * width / height), long_side))
    scale = rng.uniform(0.9, 1.05) * min(out_w, out_h) / (min(width, height) * (1 + 2 * margin))
    angle = math.radians(rng.uniform(-3, 3))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64) - (width / 2, height / 2)
    placed = corners @ rotation.T * scale + (out_w / 2, out_h / 2)
    placed += rng.uniform(-0.015, 0.015, placed.shape) * (width * scale, height * scale)
    to_photo = cv2.getPerspectiveTransform((corners + (width / 2, height / 2) - 0.5).astype(np.float32),
                                           (placed - 0.5).astype(np.float32))
    k = max(1, int(1 / scale))  # shrink first, as a lens would average, then place
    small = cv2.resize(print_rgb, (width // k, height // k), interpolation=cv2.INTER_AREA)
    to_photo = to_photo @ np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]])
    photo = cv2.warpPerspective(small, to_photo, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=TABLE).astype(np.float32)
    v, u = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    u, v = u / out_w - 0.5, v / out_h - 0.5
    gx, gy = rng.uniform(-lighting, lighting, 2)
    light = (1 + 2 * gx * u + 2 * gy * v) * (1 - 0.1 * (u * u + v * v))
    photo *= light[:, :, None] * (1 + rng.uniform(-white_balance, white_balance, 3)).astype(np.float32)
    photo = cv2.GaussianBlur(photo, (0, 0), 0.7) + rng.normal(0, 2.5, photo.shape).astype(np.float32)
    return np.clip(photo + 0.5, 0, 255).astype(np.uint8)


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def rgb_of(lab_image: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(lab_image, cv2.COLOR_Lab2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)


def inked(rgb: np.ndarray) -> np.ndarray:
    return np.abs(rgb.astype(np.int16) - 255).max(axis=2) > 24


def shift_colour(rgb: np.ndarray, delta_lab: tuple[float, float, float], where: np.ndarray | None = None):
    """A drifting ink channel: every inked pixel (inside `where`) moves by the same Lab vector."""
    image = lab(rgb)
    mask = inked(rgb) if where is None else inked(rgb) & where
    image[mask] += np.asarray(delta_lab, np.float32)
    return rgb_of(image)


def offset_on_canvas(rgb: np.ndarray, dx_mm: float, dy_mm: float) -> np.ndarray:
    """The sheet loaded off: all the ink lands (dx, dy) mm from where the file puts it; blank where it left."""
    move = np.float32([[1, 0, dx_mm * MM], [0, 1, dy_mm * MM]])
    return cv2.warpAffine(rgb, move, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_CONSTANT,
                          borderValue=WHITE)


def blot(rgb: np.ndarray, centre: tuple[int, int], diameter_mm: float) -> np.ndarray:
    """A drip of dark ink with a soft rim."""
    mask = np.zeros(rgb.shape[:2], np.float32)
    cv2.ellipse(mask, centre, (round(diameter_mm * MM / 2), round(diameter_mm * MM / 2 * 0.8)), 30, 0, 360, 1, -1,
                cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[:, :, None]
    return (rgb * (1 - mask) + np.float32([25, 22, 30]) * mask).astype(np.uint8)


def lose_ink(rgb: np.ndarray, centre: tuple[int, int], side_mm: float, substrate=WHITE) -> np.ndarray:
    """A clogged head: a square where no ink landed, so the substrate shows."""
    half = round(side_mm * MM / 2)
    out = rgb.copy()
    out[centre[1] - half:centre[1] + half, centre[0] - half:centre[0] + half] = substrate
    return out


def fade(rgb: np.ndarray, amount: float) -> np.ndarray:
    """Too little ink: every colour `amount` of the way back to the substrate."""
    return np.clip(255 + (rgb.astype(np.float32) - 255) * (1 - amount) + 0.5, 0, 255).astype(np.uint8)


@cache
def design(seed: int) -> np.ndarray:
    image = make_design(seed)
    image.flags.writeable = False
    return image


def art_centre(seed: int) -> tuple[int, int]:
    """A spot well inside the artwork, different per seed."""
    rng = np.random.default_rng(seed + 7)
    return (round(SIZE[0] * rng.uniform(0.25, 0.75)), round(SIZE[1] * rng.uniform(0.2, 0.6)))


def judge(printed: np.ndarray, seed: int, **kwargs) -> InspectionResult:
    return inspect(design(seed), photograph(printed, seed=seed), dpi=DPI, **kwargs)


# --- verdicts --------------------------------------------------------------------------------------------


def test_good_prints_pass_over_thirty_seeds():
    verdicts = [judge(design(seed), seed) for seed in range(30)]
    assert [r.verdict for r in verdicts].count(Verdict.FAIL) == 0, [(r.reasons, dict(r.scores)) for r in verdicts
                                                                    if r.verdict == Verdict.FAIL]
    assert [r.verdict for r in verdicts].count(Verdict.PASS) >= 28


@pytest.mark.parametrize("seed", [3, 11])
def test_a_colour_shift_of_delta_e_nine_fails_as_a_colour_shift(seed):
    result = judge(shift_colour(design(seed), (2.0, 6.0, -6.5)), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.COLOUR_SHIFT
    assert result.scores["delta_e_bias"] > DEFAULT.delta_e_global


@pytest.mark.parametrize(("seed", "dx", "dy"), [(4, 3.0, 0.0), (12, 0.0, -3.0), (21, -2.1, 2.1)])
def test_a_print_three_mm_off_its_canvas_fails_as_misregistration_measured_in_mm(seed, dx, dy):
    result = judge(offset_on_canvas(design(seed), dx, dy), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.MISREGISTRATION
    assert result.scores["shift_x_mm"] == pytest.approx(dx, abs=0.4)
    assert result.scores["shift_y_mm"] == pytest.approx(dy, abs=0.4)


@pytest.mark.parametrize("seed", [5, 13])
def test_an_eight_mm_ink_blot_fails_as_an_ink_blot(seed):
    result = judge(blot(design(seed), art_centre(seed), 8), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.INK_BLOT
    assert result.scores["blob_mm"] == pytest.approx(8 * 0.8, abs=2.5)  # its width: the ellipse's short axis


@pytest.mark.parametrize("seed", [6, 14])
def test_a_twenty_mm_patch_without_ink_fails_as_a_missing_area(seed):
    result = judge(lose_ink(design(seed), art_centre(seed), 20), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.MISSING_AREA
    assert result.scores["missing_mm"] == pytest.approx(20, abs=3)


@pytest.mark.parametrize("seed", [7, 15])
def test_a_print_faded_by_thirty_five_percent_fails_as_faded(seed):
    result = judge(fade(design(seed), 0.35), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.FADED_PRINT
    assert result.scores["fade"] == pytest.approx(0.35, abs=0.07)


@pytest.mark.parametrize("seed", [8, 16])
def test_another_design_on_the_same_template_fails_as_a_wrong_design(seed):
    result = judge(design(seed + 100), seed)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0] is DefectReason.WRONG_DESIGN


def test_a_film_printed_upside_down_is_a_wrong_design_though_every_pixel_matches():
    result = judge(np.ascontiguousarray(design(9)[::-1, ::-1]), 9)
    assert result.verdict == Verdict.FAIL
    assert result.reasons == (DefectReason.WRONG_DESIGN,)
    assert abs(result.scores["rotation_deg"]) > 170


def test_a_film_printed_mirrored_is_a_wrong_design():
    result = judge(np.ascontiguousarray(design(22)[:, ::-1]), 22)
    assert (result.verdict, result.reasons[:1]) == (Verdict.FAIL, (DefectReason.WRONG_DESIGN,))


@pytest.mark.parametrize("seed", [1, 2, 10])
def test_a_strong_lighting_gradient_and_tint_alone_do_not_fail(seed):
    photo = photograph(design(seed), seed=seed, lighting=0.12, white_balance=0.025)
    result = inspect(design(seed), photo, dpi=DPI)
    assert result.verdict == Verdict.PASS, (result.reasons, dict(result.scores))
    assert result.scores["delta_e_bias"] < 0.5 * DEFAULT.delta_e_global


def test_a_photo_that_is_not_of_a_print_fails_as_a_wrong_design():
    noise = np.random.default_rng(0).integers(0, 256, (1400, 1170, 3), dtype=np.uint8)
    result = inspect(design(0), noise, dpi=DPI)
    assert (result.verdict, result.reasons) == (Verdict.FAIL, (DefectReason.WRONG_DESIGN,))
    assert result.aligned.shape == (900, 750, 3)  # still a view for the inspector


# --- zones -----------------------------------------------------------------------------------------------

STRICT = Tolerances(delta_e_global=2.5, delta_e_local=6.0, blob_mm=1.5)
TOLERANT = Tolerances(delta_e_global=8.0, delta_e_local=20.0, blob_mm=6.0)
ZONES = (Zone(name="artwork", box=(ART[0], ART[1], ART[2] - ART[0], ART[3] - ART[1]), tolerances=TOLERANT),
         Zone(name="headline", box=(TEXT[0], TEXT[1], TEXT[2] - TEXT[0], TEXT[3] - TEXT[1]), tolerances=STRICT))


def _box_mask(box: tuple[float, float, float, float]) -> np.ndarray:
    mask = np.zeros((SIZE[1], SIZE[0]), bool)
    mask[round(box[1] * SIZE[1]):round(box[3] * SIZE[1]), round(box[0] * SIZE[0]):round(box[2] * SIZE[0])] = True
    return mask


def _delta_e_where_inked(before: np.ndarray, after: np.ndarray, where: np.ndarray) -> float:
    mask = inked(before) & where
    return float(np.linalg.norm(lab(after)[mask] - lab(before)[mask], axis=1).mean())


def test_a_small_colour_change_fails_in_a_strict_text_zone_but_passes_in_a_tolerant_artwork_zone():
    seed = 17
    small_change = (3.0, 2.5, -2.5)  # dE 4.6: under the default 4.0 + margin would be borderline anywhere
    text_changed = shift_colour(design(seed), small_change, _box_mask(TEXT))
    art_changed = shift_colour(design(seed), small_change, _box_mask(ART))
    assert 3.5 < _delta_e_where_inked(design(seed), text_changed, _box_mask(TEXT)) < 5.0
    assert 3.5 < _delta_e_where_inked(design(seed), art_changed, _box_mask(ART)) < 5.0
    in_text = judge(text_changed, seed, zones=ZONES)
    in_art = judge(art_changed, seed, zones=ZONES)
    assert (in_text.verdict, in_text.reasons[:1]) == (Verdict.FAIL, (DefectReason.COLOUR_SHIFT,))
    assert in_text.scores["headline.delta_e_bias"] > STRICT.delta_e_global
    assert in_art.verdict == Verdict.PASS, (in_art.reasons, dict(in_art.scores))
    assert in_art.scores["artwork.delta_e_bias"] < TOLERANT.delta_e_global * (1 - TOLERANT.review_margin)


def test_a_borderline_colour_change_goes_to_review_not_to_a_verdict():
    seed = 18
    borderline = (0.0, 2.4, -2.4)  # dE 3.4: within the review margin below the default 4.0
    result = judge(shift_colour(design(seed), borderline), seed)
    assert result.verdict == Verdict.REVIEW, dict(result.scores)
    assert result.reasons == (DefectReason.COLOUR_SHIFT,)


# --- registration ----------------------------------------------------------------------------------------


@cache
def reference_for_registration() -> np.ndarray:
    return make_design(40)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(angle=st.floats(-6, 6), scale=st.floats(0.85, 1.05), dx=st.floats(-40, 40), dy=st.floats(-40, 40))
def test_registration_recovers_a_known_similarity_within_a_pixel(angle, scale, dx, dy):
    reference = reference_for_registration()
    height, width = reference.shape[:2]
    similarity = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    similarity[:, 2] += (250 + dx, 250 + dy)  # the print somewhere on a table 250 px wider all round
    photo = cv2.warpAffine(reference, similarity, (width + 500, height + 500), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=TABLE)
    found = register(reference, photo, dpi=DPI)
    corners = np.float64([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    in_photo = corners @ similarity[:, :2].T + similarity[:, 2]
    back = cv2.perspectiveTransform(in_photo[None], found.homography)[0]
    working_px = np.linalg.norm(back - corners, axis=1) / 2  # this reference works at half size
    assert found.ok
    assert working_px.max() < 1.0, working_px


def test_registration_of_an_unrelated_image_is_reported_as_failed_not_raised():
    noise = np.random.default_rng(1).integers(0, 256, (900, 700, 3), dtype=np.uint8)
    found = register(reference_for_registration(), noise)
    assert not found.ok or found.inliers < DEFAULT.min_inliers


# --- what the inspector sees -----------------------------------------------------------------------------


def test_the_heatmap_has_the_preview_shape_and_the_worst_region_covers_the_blot():
    seed = 19
    centre = art_centre(seed)
    result = judge(blot(design(seed), centre, 8), seed)
    assert result.heatmap.shape == (800, 667, 3) and result.heatmap.dtype == np.uint8
    assert result.aligned.shape == (900, 750, 3)
    x, y, w, h = result.worst_region
    working_centre = (centre[0] / 2, centre[1] / 2)  # 1500x1800 works at 750x900
    assert x <= working_centre[0] <= x + w and y <= working_centre[1] <= y + h
    assert w * h < 0.05 * 750 * 900
    # the overlay is hottest (red, from the turbo map) around the blot, not elsewhere
    scale = 800 / 1800
    cx, cy = round(working_centre[0] * 2 * scale), round(working_centre[1] * 2 * scale)
    redness = result.heatmap[:, :, 0].astype(int) - result.heatmap[:, :, 2]
    assert redness[cy - 5:cy + 6, cx - 5:cx + 6].mean() > np.percentile(redness, 99) - 60


def test_a_transparent_print_file_is_judged_against_its_substrate():
    seed = 20
    opaque = design(seed)
    alpha = np.where(np.all(opaque == 255, axis=2), 0, 255).astype(np.uint8)
    transparent = np.dstack([np.where(alpha[:, :, None] == 0, 0, opaque), alpha])  # no ink: black, invisible
    result = inspect(transparent, photograph(opaque, seed=seed), dpi=DPI)
    assert result.verdict == Verdict.PASS, (result.reasons, dict(result.scores))


def test_a_half_transparent_print_file_is_premultiplied_exactly_before_it_is_reduced():
    from core.qa import _working_reference

    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (240, 200, 4), dtype=np.uint8)
    alpha = rgba[:, :, 3:]
    expected = np.dstack([cv2.multiply(rgba[:, :, :3], np.repeat(alpha, 3, axis=2), scale=1 / 255), alpha])
    expected = cv2.resize(expected, (100, 120), interpolation=cv2.INTER_AREA)
    a = expected[:, :, 3:].astype(np.float32) / 255
    expected = np.clip(expected[:, :, :3].astype(np.float32) + (1 - a) * np.float32(29) + 0.5, 0, 255).astype(np.uint8)
    working = _working_reference(rgba, 120, (29, 29, 29))
    assert (working.fx, working.fy) == (2.0, 2.0)
    assert np.array_equal(working.image, expected)


def test_on_a_black_tee_a_good_print_passes_and_missing_ink_shows_the_garment():
    seed, garment = 23, (29, 29, 31)
    artwork = design(seed)
    alpha = np.where(np.all(artwork == 255, axis=2), 0, 255).astype(np.uint8)
    print_file = np.dstack([artwork, alpha])  # DTG: transparent where no ink goes
    on_the_tee = np.where(alpha[:, :, None] == 0, np.uint8(garment), artwork).astype(np.uint8)
    good = inspect(print_file, photograph(on_the_tee, seed=seed), dpi=DPI, substrate=garment)
    holed = lose_ink(on_the_tee, art_centre(seed), 20, substrate=garment)
    bad = inspect(print_file, photograph(holed, seed=seed), dpi=DPI, substrate=garment)
    assert good.verdict == Verdict.PASS, (good.reasons, dict(good.scores))
    assert (bad.verdict, bad.reasons[:1]) == (Verdict.FAIL, (DefectReason.MISSING_AREA,))


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.uint8), np.zeros((100, 100, 3), np.float32),
                                 np.zeros((100, 100, 2), np.uint8), "photo.jpg"])
def test_what_is_not_an_image_is_refused_with_a_reason(bad):
    with pytest.raises(InspectionError):
        inspect(design(0), bad, dpi=DPI)


@pytest.mark.parametrize("dpi", [0, -300, float("nan")])
def test_a_print_without_a_positive_dpi_cannot_be_measured(dpi):
    with pytest.raises(InspectionError):
        inspect(design(0), design(0), dpi=dpi)


# --- against the partner sim's camera --------------------------------------------------------------------


@cache
def mug_design(seed: int) -> np.ndarray:
    image = make_design(seed, (850, 350))  # the mug wrap, 8.5x3.5 in
    image.flags.writeable = False
    return image


SIM_PHOTOS = 60


@pytest.fixture(scope="module")
def sim_outcomes() -> list[tuple[str | None, InspectionResult]]:
    """Sixty photos by the partner sim's camera with its default defect mix, at fixed seeds."""
    camera = pytest.importorskip("sims.camera")
    outcomes = []
    for i in range(SIM_PHOTOS):
        rng = np.random.default_rng(9000 + i)
        reference = mug_design(i % 20) if i % 4 == 3 else design(i % 20)
        photo, truth = camera.photograph(reference, rng=rng, defect=camera.pick_defect(rng, 0.5), dpi=DPI)
        outcomes.append((truth["defect"], inspect(reference, photo, dpi=DPI)))
    return outcomes


class TestAgainstThePartnerSim:
    """Recall and false fails on the partner sim's photos; the 500-print bench (`python -m bench.qa`) is the
    real measure, this keeps the pipeline honest on every run."""

    @staticmethod
    def summary(outcomes) -> str:
        bad = [r for truth, r in outcomes if truth]
        good = [r for truth, r in outcomes if not truth]
        return (f"{len(bad)} defective: auto-fail {sum(r.verdict == Verdict.FAIL for r in bad) / len(bad):.0%}, "
                f"caught {sum(r.verdict != Verdict.PASS for r in bad) / len(bad):.0%}; {len(good)} good: false "
                f"fails {sum(r.verdict == Verdict.FAIL for r in good) / len(good):.0%}, review "
                f"{sum(r.verdict == Verdict.REVIEW for r in good) / len(good):.0%}")

    def test_at_least_95_percent_of_defective_prints_are_caught(self, sim_outcomes):
        outcomes = sim_outcomes
        bad = [(truth, r.verdict, r.reasons) for truth, r in outcomes if truth]
        caught = [item for item in bad if item[1] != Verdict.PASS]
        print(self.summary(outcomes))  # shown with -rP: the figures, not just the verdict
        assert len(bad) >= 20
        assert len(caught) >= 0.95 * len(bad), (self.summary(outcomes), [b for b in bad if b not in caught])

    def test_at_most_5_percent_of_good_prints_fail(self, sim_outcomes):
        outcomes = sim_outcomes
        good = [(r.verdict, r.reasons, dict(r.scores)) for truth, r in outcomes if not truth]
        failed = [item for item in good if item[0] == Verdict.FAIL]
        assert len(good) >= 20
        assert len(failed) <= 0.05 * len(good), (self.summary(outcomes), failed)

    def test_the_first_reason_names_the_defect_the_sim_made(self, sim_outcomes):
        outcomes = sim_outcomes
        named = [(truth, r.reasons[:1]) for truth, r in outcomes if truth and r.verdict != Verdict.PASS]
        right = [item for item in named if item[1] == (DefectReason(item[0]),)]
        assert len(right) >= 0.9 * len(named), (self.summary(outcomes), [n for n in named if n not in right])
