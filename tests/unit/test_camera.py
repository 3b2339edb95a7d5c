"""The sim's camera: photos look like the print, and every injected defect is real, sized and reported."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from sims.camera import DEFECT_KINDS, photograph, pick_defect

DPI = 100          # a 15×18 in tee print at 100 DPI: 1500×1800 px, cheap yet physically sized
LONG_SIDE = 1000
BLUE = (20, 90, 200)


def _print(width: int = 1500, height: int = 1800) -> np.ndarray:
    """A print with ink over much of it and a blue disc whose centroid is easy to find in a photo."""
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.rectangle(img, (width // 8, height // 8), (width // 2, height // 2), (200, 30, 30), -1)
    cv2.circle(img, (int(width * 0.65), int(height * 0.62)), width // 6, BLUE, -1)
    for i in range(6):  # stripes give the flips of wrong_design something to move
        y = int(height * (0.75 + 0.03 * i))
        cv2.line(img, (width // 10, y), (int(width * (0.3 + 0.1 * i)), y), (15, 15, 15), 12)
    return img


def _shoot(print_rgb: np.ndarray, seed: int, defect: str | None, **kw) -> tuple[np.ndarray, dict]:
    return photograph(print_rgb, rng=np.random.default_rng(seed), defect=defect, dpi=DPI,
                      long_side=kw.pop("long_side", LONG_SIDE), **kw)


def _blue_centroid(photo: np.ndarray) -> np.ndarray:
    r, g, b = (photo[:, :, i].astype(int) for i in range(3))
    ys, xs = np.nonzero((b > 150) & (r < 90) & (g < 140))
    return np.array([xs.mean(), ys.mean()])


def _to_print(homography: list[list[float]], point: np.ndarray) -> np.ndarray:
    x, y, w = np.linalg.inv(np.array(homography)) @ np.array([point[0], point[1], 1.0])
    return np.array([x / w, y / w])


def test_the_same_seed_gives_the_same_photo() -> None:
    # given one print
    art = _print()
    # when it is photographed twice with the same seed
    first, first_params = _shoot(art, 7, "ink_blot")
    second, second_params = _shoot(art, 7, "ink_blot")
    # then the photos and the ground truth are identical
    assert np.array_equal(first, second)
    assert first_params == second_params


@pytest.mark.parametrize(("width", "height"), [(1500, 1800), (1800, 1500), (2550, 1050)])
def test_the_photo_has_the_asked_long_side_and_the_prints_orientation(width: int, height: int) -> None:
    photo, params = _shoot(_print(width, height), 1, None)
    assert max(photo.shape[:2]) == LONG_SIDE
    assert (photo.shape[1] >= photo.shape[0]) == (width >= height)
    assert params["camera"]["photo_size"] == [photo.shape[1], photo.shape[0]]
    assert photo.dtype == np.uint8 and photo.shape[2] == 3


def test_no_defect_photos_with_different_seeds_differ_only_slightly() -> None:
    # given one print photographed under two different camera draws
    art = _print()
    shots = [_shoot(art, seed, None) for seed in (1, 2)]
    # when each photo is mapped back onto the print with its own homography (as QA aligns them)
    rectified = [
        cv2.warpPerspective(photo, np.array(params["camera"]["homography"]), (art.shape[1], art.shape[0]),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).astype(np.int16)
        for photo, params in shots
    ]
    # then the two agree with each other and with the print up to light, white balance, blur and noise
    assert np.abs(rectified[0] - rectified[1]).mean() < 10
    for photo in rectified:
        assert np.abs(photo - art).mean() < 16
    # and even unaligned, the raw photos are close: same framing up to a few percent
    assert np.abs(shots[0][0].astype(np.int16) - shots[1][0]).mean() < 30


@pytest.mark.parametrize("defect", DEFECT_KINDS)
def test_each_defect_changes_the_photo_measurably(defect: str) -> None:
    # given a clean photo and a defective one taken with the same camera draws
    art = _print()
    clean, clean_params = _shoot(art, 11, None)
    flawed, params = _shoot(art, 11, defect)
    # then the camera did exactly the same thing both times
    assert params["camera"] == clean_params["camera"]
    assert params["defect"] == defect and params["defect_params"]
    # and the defect leaves a visible mark: a patch of clearly changed pixels (the noise is identical)
    lab = [cv2.cvtColor(cv2.GaussianBlur(img, (5, 5), 0).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
           for img in (clean, flawed)]
    delta_e = np.linalg.norm(lab[1] - lab[0], axis=2)
    assert (delta_e > 5).sum() >= 40, f"{defect}: only {(delta_e > 5).sum()} pixels visibly changed"
    assert delta_e.max() > 8


def test_no_defect_means_no_defect_params() -> None:
    _, params = _shoot(_print(), 3, None)
    assert params["defect"] is None and params["defect_params"] == {}


@pytest.mark.parametrize("seed", range(4))
def test_misregistration_moves_the_print_by_the_reported_millimetres(seed: int) -> None:
    # given a clean and a misregistered photo of the same print with the same camera
    art = _print()
    clean, clean_params = _shoot(art, seed, None)
    shifted, params = _shoot(art, seed, "misregistration")
    homography = params["camera"]["homography"]
    # when the blue disc's centroid is located in each photo and mapped back into print pixels
    moved_px = _to_print(homography, _blue_centroid(shifted)) - _to_print(homography, _blue_centroid(clean))
    moved_mm = moved_px / DPI * 25.4
    # then the disc moved by the reported shift, in the reported direction
    truth = params["defect_params"]
    assert 2 <= truth["shift_mm"] <= 6
    assert moved_mm == pytest.approx([truth["dx_mm"], truth["dy_mm"]], abs=0.4)


def test_the_homography_maps_print_pixels_onto_the_photo() -> None:
    art = _print()
    photo, params = _shoot(art, 5, None)
    centre_in_print = np.array([art.shape[1] * 0.65, art.shape[0] * 0.62])
    assert _to_print(params["camera"]["homography"], _blue_centroid(photo)) == pytest.approx(centre_in_print, abs=3)


@pytest.mark.parametrize("seed", range(6))
def test_defects_have_physical_sizes(seed: int) -> None:
    art = _print()
    blots = _shoot(art, seed, "ink_blot")[1]["defect_params"]["blots"]
    assert 1 <= len(blots) <= 3 and all(4 <= b["diameter_mm"] <= 15 for b in blots)
    missing = _shoot(art, seed, "missing_area")[1]["defect_params"]
    assert 10 <= missing["w_mm"] <= 40 and 10 <= missing["h_mm"] <= 40
    assert missing["ink_fraction"] > 0.5, "a missing area is put where there was ink to lose"
    assert 0.25 <= _shoot(art, seed, "faded_print")[1]["defect_params"]["fade"] <= 0.45
    shift = _shoot(art, seed, "colour_shift")[1]["defect_params"]
    assert 8 <= shift["delta_e_target"] <= 15 and 5 <= shift["delta_e"] <= 15


def test_a_missing_area_shows_the_blank_not_white() -> None:
    # given a print on a black tee: a missing area shows the black garment
    black = (29, 29, 31)
    art = np.full((1800, 1500, 3), 240, np.uint8)  # a big light design covering the whole print area
    _, params = photograph(art, rng=np.random.default_rng(2), defect="missing_area", dpi=DPI,
                           long_side=LONG_SIDE, substrate=black)
    clean, _ = photograph(art, rng=np.random.default_rng(2), defect=None, dpi=DPI, long_side=LONG_SIDE,
                          substrate=black)
    flawed, _ = photograph(art, rng=np.random.default_rng(2), defect="missing_area", dpi=DPI,
                           long_side=LONG_SIDE, substrate=black)
    # then the photo got darker where the ink is missing
    darker = (clean.astype(np.int16) - flawed).max(axis=2) > 100
    px_per_mm = params["camera"]["photo_px_per_mm"]
    expected_area = params["defect_params"]["w_mm"] * params["defect_params"]["h_mm"] * px_per_mm**2
    assert darker.sum() == pytest.approx(expected_area, rel=0.25)


def test_a_symmetric_design_gets_a_truly_different_wrong_design() -> None:
    # given a print that looks the same mirrored and turned
    art = np.full((1800, 1500, 3), 255, np.uint8)
    cv2.circle(art, (750, 900), 400, BLUE, -1)
    for seed in range(6):
        clean, _ = _shoot(art, seed, None)
        flawed, params = _shoot(art, seed, "wrong_design")
        # then whatever variant was drawn, the photo shows something else
        assert params["defect_params"]["variant"] == "other_design"
        assert np.abs(clean.astype(np.int16) - flawed).mean() > 5


def test_pick_defect_follows_the_rate_and_the_mix() -> None:
    rng = np.random.default_rng(0)
    assert all(pick_defect(rng, 0.0) is None for _ in range(500))
    picks = Counter(pick_defect(rng, 1.0) for _ in range(6000))
    assert set(picks) == set(DEFECT_KINDS)
    assert all(800 < n < 1200 for n in picks.values()), picks
    some = Counter(pick_defect(rng, 0.1) for _ in range(10_000))
    assert 850 < sum(n for kind, n in some.items() if kind) < 1150
    assert {pick_defect(rng, 1.0, {"ink_blot": 3, "faded_print": 0}) for _ in range(200)} == {"ink_blot"}
    with pytest.raises(ValueError):
        pick_defect(rng, 1.0, {"smudge": 1})


def test_unknown_defects_and_bad_arrays_are_refused() -> None:
    with pytest.raises(ValueError):
        _shoot(_print(), 0, "coffee_stain")
    with pytest.raises(ValueError):
        photograph(np.zeros((10, 10), np.uint8), rng=np.random.default_rng(0), defect=None, dpi=DPI)
