"""Automated visual inspection: register a photo of a printed item to its print file, diff it, classify it.

Pure image math on arrays (numpy and OpenCV); no I/O, clock or environment. Images are RGB (Pillow's order);
OpenCV's BGR never leaks out of this module.

How one inspection goes:

1. **Working scale.** The print file (up to 4500x5400 or more) is reduced once, with INTER_AREA by a whole
   factor k when one lands near ``working_long_side`` (OpenCV's fast path), so a working pixel is
   ``25.4 / dpi * k`` mm and every size is reported in mm at print scale.
2. **Register first.** ORB keypoints, Hamming k-NN with Lowe's ratio test, a MAGSAC++ homography, then ECC
   (``MOTION_HOMOGRAPHY``) coarse to fine on quarter- and half-size pairs: p95 error under 0.75 working px on
   the partner sim's photos, under 0.35 px on most. A design that isn't the ordered one can't be registered
   (few matches agree) or registers turned (a film printed upside down): the strongest "wrong design" signs.
3. **Normalise exposure.** A camera's light is smooth in space and bounded in strength; ink is neither. The
   log luminance ratio photo/reference is fitted as a quadratic surface in (x, y) plus a free curve of the
   reference's luminance (which soaks up fades and shifts: they depend on colour, not place), robustly. The
   surface is divided out; exposure and white balance, read on the lightest areas, are clipped to
   +/-``exposure`` and +/-``white_balance`` (the camera's plausible range), so they cannot absorb a real
   colour shift of dE 8+: it survives, minus at most those few percent.
4. **Compare in CIELAB with CIE76 dE** (Euclidean distance in L*a*b*: cheap, and dE2000's perceptual
   corrections change no verdict at these thresholds). A tone model is fitted robustly on the inked pixels,
   per channel photo = slope * reference + offset (L its own slope; a, b one chroma slope), paper staying
   paper. ``fade`` is 1 - alpha of ink thinned towards the substrate (photo - substrate = alpha * (file -
   substrate)); ``delta_e_bias``, the colour shift, is the mean colour error that fade doesn't explain. The
   per-pixel residual after the tone model, minus what a sub-pixel misalignment explains at the file's own
   edges, is the local defect map; SSIM on L (Gaussian window, own implementation) adds structural loss, and
   SSIM over L*a*b* at quarter scale, averaged over the ink, says whether this is the ordered design at all.
5. **Classify** with ``DefectReason`` and the zone's ``Tolerances``; every threshold lives there. ``damaged``
   (a torn or stained blank) is left to people: nothing in the print file says what the blank looked like.

Misregistration, as measured here: the print sits offset on its canvas/media. Registration aligns the
*design*, so the canvas (the blank: sheet, platen area) is what moved in the aligned photo. Its four edges
are found as straight lines against the table around it (a homography keeps lines straight), giving the
canvas homography; ``shift_mm`` is how far the matched design points sit from where the file puts them on
that canvas (median over keypoints, so registration error in blank corners doesn't leak in), in mm. This is
what the partner sim injects (content translated within the canvas, blank at one edge). A canvas that can't
be told from the table (white paper on a white table) can't show an offset: ``canvas_sides_seen`` says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import cv2
import numpy as np

from core.errors import PressroomError
from core.states import DefectReason

logger = logging.getLogger(__name__)

MM_PER_INCH = 25.4
DEFAULT_WORKING_LONG_SIDE = 1000
DEFAULT_PREVIEW_LONG_SIDE = 800  # the render stage's preview size, so the overlay lines up with the preview
_WHITE = (255, 255, 255)


class Verdict(StrEnum):
    """The three outcomes of an inspection, stored as they are."""

    PASS = "pass"
    FAIL = "fail"
    REVIEW = "review"


class InspectionError(PressroomError):
    """The inputs cannot be inspected at all (not an image, empty, wrong dpi); nothing was judged."""

    code = "inspection_input"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerances:
    """What a zone of a print may deviate before it is borderline or defective.

    A check fails at its threshold and is borderline ("review") within ``review_margin`` (a fraction of the
    threshold) below it. Defaults fit a DTG/inkjet print photographed on a partner's photo station.
    """

    delta_e_global: float = 4.0  # CIE76 dE of the uniform colour error over inked pixels (the colour shift)
    delta_e_local: float = 12.0  # CIE76 dE a pixel may differ, after the global model, before it is a defect
    blob_mm: float = 3.0  # width (largest inscribed disc) of a blot/smudge component
    missing_mm: float = 6.0  # width of a component where the substrate shows instead of ink
    shift_mm: float = 1.5  # offset of the design on its canvas
    fade: float = 0.15  # share of the ink thinned away towards the substrate
    ssim_min: float = 0.35  # local SSIM below it marks a pixel as structurally damaged (with half the dE)
    wrong_design_ssim: float = 0.6  # mean Lab SSIM over the ink (~1 cm windows) below it: not the ordered design
    review_margin: float = 0.25
    # Registration: fewer agreeing matches than min_* is hopeless (fail), fewer than weak_* is doubtful (review).
    min_inliers: int = 15
    weak_inliers: int = 40
    min_inlier_ratio: float = 0.08
    weak_inlier_ratio: float = 0.2
    max_registration_error_px: float = 2.0  # median keypoint residual; ORB's own localisation is ~0.5-1 px
    # A photo station shoots items upright; a print turned further than this was printed turned (wrong film).
    max_rotation_deg: float = 20.0
    # What the lighting model may absorb: the camera's exposure and white balance, no more.
    exposure: float = 0.08
    white_balance: float = 0.03


DEFAULT = Tolerances()


@dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    """A rectangle of the print with its own tolerances: text zones strict, textures tolerant."""

    name: str
    box: tuple[float, float, float, float]  # x, y, w, h as fractions of the reference
    tolerances: Tolerances = DEFAULT


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """Where the photo's pixels land on the reference, and how much to trust it."""

    ok: bool  # a plausible homography was found (trust it only as far as inliers/ratio/error say)
    homography: np.ndarray  # 3x3, photo pixel -> reference pixel, in the inputs' own coordinates
    matches: int
    inliers: int
    inlier_ratio: float
    error_px: float  # median reprojection error of the inlier keypoints, in working-reference pixels
    ecc: float  # ECC correlation after refinement; nan when ECC didn't run or didn't converge
    rotation_deg: float  # how far the print is turned in the photo; a film printed upside down shows ~180


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectionResult:
    """Verdict, suspected reasons (most severe first), scores, and the images the review page shows."""

    verdict: Verdict  # a str: "pass" | "fail" | "review"
    reasons: tuple[DefectReason, ...]
    scores: Mapping[str, float]  # finite numbers only: a score that couldn't be measured is absent
    heatmap: np.ndarray  # RGB uint8 at preview size: aligned photo + defect colour map, components outlined
    aligned: np.ndarray  # RGB uint8 photo warped into the working reference frame
    worst_region: tuple[int, int, int, int]  # x, y, w, h in working-reference pixels
    registration: Registration | None = None


# --- scaling ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scaled:
    image: np.ndarray
    fx: float  # source pixels per scaled pixel, across
    fy: float  # and down

    @property
    def factor(self) -> float:
        return (self.fx + self.fy) / 2

    def to_source(self) -> np.ndarray:
        """Scaled pixel -> source pixel (pixel centres: x_src = f * x + (f - 1) / 2, as cv2.resize maps them)."""
        return np.array([[self.fx, 0, (self.fx - 1) / 2], [0, self.fy, (self.fy - 1) / 2], [0, 0, 1]])


def _reduce(image: np.ndarray, long_side: int) -> _Scaled:
    """Shrink to about ``long_side``: by a whole factor when one is close (fast, exact), else INTER_AREA."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= long_side * 1.25:
        return _Scaled(image, 1.0, 1.0)
    k = round(longest / long_side)
    if 0.8 <= longest / k / long_side <= 1.25:
        cropped = image[: height - height % k, : width - width % k]  # < k px off the far edges
        small = cv2.resize(cropped, (cropped.shape[1] // k, cropped.shape[0] // k), interpolation=cv2.INTER_AREA)
        return _Scaled(small, float(k), float(k))
    size = (max(1, round(width * long_side / longest)), max(1, round(height * long_side / longest)))
    return _Scaled(cv2.resize(image, size, interpolation=cv2.INTER_AREA), width / size[0], height / size[1])


def _as_rgb(image: np.ndarray, what: str, substrate: tuple[int, int, int]) -> np.ndarray:
    """RGB uint8 from gray, RGB or RGBA (transparent = no ink, so the substrate shows)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InspectionError(f"The {what} must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}.")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 32:
        raise InspectionError(f"The {what} must be an RGB or RGBA image of at least 32x32, got {image.shape}.")
    if image.shape[2] == 4:
        alpha = image[:, :, 3:]
        ink = cv2.multiply(image[:, :, :3], np.repeat(alpha, 3, axis=2), scale=1 / 255)
        paper = cv2.multiply(np.full_like(ink, substrate), np.repeat(255 - alpha, 3, axis=2), scale=1 / 255)
        image = cv2.add(ink, paper)
    return np.ascontiguousarray(image)


def _working_reference(reference: np.ndarray, long_side: int, substrate: tuple[int, int, int]) -> _Scaled:
    """Reduce before compositing alpha: compositing is linear, so it commutes with area averaging."""
    if isinstance(reference, np.ndarray) and reference.ndim == 3 and reference.shape[2] == 4:
        _as_rgb(reference[:32, :32], "reference", substrate)  # validate the dtype cheaply
        # One pass in OpenCV (rgb * a / 255, rounded, as cv2.multiply with scale 1/255): 35x faster at 4500x5400
        # than multiplying by a repeated alpha and stacking it back, with the same bytes.
        premultiplied = cv2.cvtColor(np.ascontiguousarray(reference), cv2.COLOR_RGBA2mRGBA)
        small = _reduce(premultiplied, long_side)
        a = small.image[:, :, 3:].astype(np.float32) / 255
        rgb = small.image[:, :, :3].astype(np.float32) + (1 - a) * np.asarray(substrate, np.float32)
        return _Scaled(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), small.fx, small.fy)
    return _reduce(_as_rgb(reference, "reference", substrate), long_side)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedReference:
    """A print file at the working scale on its substrate, with everything `inspect` reads from it.

    Decoding a 4500x5400 print file and reducing it costs more than the rest of an inspection, and the
    reference's keypoints, pyramid, L*a*b* and edge map are a third of the rest; every print of a popular
    design has the same ones, so the QA worker keeps a few (keyed by the file's content hash). Every field is
    a numpy array or a plain value, so the worker can store it without pickle (``adapters.prepared``).
    """

    image: np.ndarray  # RGB uint8, the working reference
    fx: float  # print-file pixels per working pixel, across
    fy: float  # and down
    working_long_side: int
    substrate: tuple[int, int, int]
    keypoints: np.ndarray  # (n, 2) float32: ORB keypoint positions in working pixels
    descriptors: np.ndarray  # (n, 32) uint8: their ORB descriptors
    gray_half: np.ndarray  # uint8 pyramid of the gray working reference, for ECC
    gray_quarter: np.ndarray
    lab: np.ndarray  # float32 L*a*b* of the working reference blurred as the photo is (sigma 1 px)
    inkness: np.ndarray  # float32 0..1: how far each pixel is from bare substrate
    slack: np.ndarray  # float32 dE a sub-pixel misalignment explains at the file's own edges
    rgb_small: np.ndarray  # float32 RGB 0..1 at quarter scale: light, tone and design identity
    lab_small: np.ndarray
    inkness_small: np.ndarray

    @property
    def scaled(self) -> _Scaled:
        return _Scaled(self.image, self.fx, self.fy)

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, name).nbytes) for name in (
            "image", "keypoints", "descriptors", "gray_half", "gray_quarter", "lab", "inkness", "slack",
            "rgb_small", "lab_small", "inkness_small"))


def prepare_reference(reference: np.ndarray, *, substrate: tuple[int, int, int] = _WHITE,
                      working_long_side: int = DEFAULT_WORKING_LONG_SIDE) -> PreparedReference:
    """The print file at the working scale, flattened onto `substrate`, ready for any number of photos."""
    registrable = _registrable(reference, working_long_side, substrate)
    return _prepared(registrable, _colours(registrable.image, substrate), working_long_side, substrate)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Registrable:
    """The part of a prepared reference that registration reads: made first, so registration can start while
    the rest is made."""

    image: np.ndarray
    fx: float
    fy: float
    keypoints: np.ndarray
    descriptors: np.ndarray
    gray_half: np.ndarray
    gray_quarter: np.ndarray

    @property
    def scaled(self) -> _Scaled:
        return _Scaled(self.image, self.fx, self.fy)


def _registrable(reference: np.ndarray, working_long_side: int, substrate: tuple[int, int, int]) -> _Registrable:
    scaled = _working_reference(reference, working_long_side, substrate)
    gray = _gray(scaled.image)
    keypoints, descriptors = _features(gray)
    gray_half = cv2.pyrDown(gray)
    return _Registrable(image=scaled.image, fx=scaled.fx, fy=scaled.fy, keypoints=keypoints,
                        descriptors=descriptors, gray_half=gray_half, gray_quarter=cv2.pyrDown(gray_half))


def _colours(image: np.ndarray, substrate: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The reference's side of the comparison: blurred as the photo will be, in L*a*b*, at full and quarter scale,
    with its inkness and the dE its own edges allow for misalignment."""
    rgb = cv2.GaussianBlur(image, (0, 0), 1.0).astype(np.float32)
    rgb *= np.float32(1 / 255)  # in place: no second full-size float copy
    height, width = image.shape[:2]
    rgb_small = cv2.resize(rgb, _coarse(width, height), interpolation=cv2.INTER_AREA)
    lab, lab_small = _lab(rgb), _lab(rgb_small)
    substrate_lab = _lab_of(substrate)
    slack = cv2.dilate(_gradient_magnitude(lab), np.ones((3, 3), np.uint8))
    slack *= np.float32(_EDGE_SLACK_PX)
    return {"lab": lab, "inkness": _inkness(lab, substrate_lab), "slack": slack, "rgb_small": rgb_small,
            "lab_small": lab_small, "inkness_small": _inkness(lab_small, substrate_lab)}


def _prepared(registrable: _Registrable, colours: dict[str, np.ndarray], working_long_side: int,
              substrate: tuple[int, int, int]) -> PreparedReference:
    return PreparedReference(image=registrable.image, fx=registrable.fx, fy=registrable.fy,
                             working_long_side=working_long_side, substrate=tuple(int(v) for v in substrate),
                             keypoints=registrable.keypoints, descriptors=registrable.descriptors,
                             gray_half=registrable.gray_half, gray_quarter=registrable.gray_quarter, **colours)


def _coarse(width: int, height: int) -> tuple[int, int]:
    """Quarter scale: where light, tone and the design's identity are judged."""
    return max(8, width // 4), max(8, height // 4)


# --- registration ----------------------------------------------------------------------------------------

_ORB_FEATURES = 1500  # 3000 registered no better (30 hard cases) at twice the matching time
_RATIO = 0.8
_RANSAC_PX = 3.0
_ECC_RIM_MM = 7.0  # the largest offset of a print on its canvas worth registering through (the sim's: 6 mm)
_ECC_RIM_SHARE = 0.03  # the same when the dpi isn't known
_ECC_MAX_CORRECTION = 0.05  # of the long side: ECC moving a corner further has slid somewhere else


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def _apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ h.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _plausible(h_ref_to_photo: np.ndarray, ref_shape: tuple[int, ...], photo_shape: tuple[int, ...]) -> bool:
    """The reference must land in the photo as a convex quad of sensible size, the same way round (a mirror
    image is a film printed mirrored: no camera makes one)."""
    if not np.all(np.isfinite(h_ref_to_photo)):
        return False
    quad = _apply(h_ref_to_photo, _corners(ref_shape[1], ref_shape[0]))
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(cross > 0):  # clockwise on screen, as the reference's own corners
        return False
    area = 0.5 * abs(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - quad[:, 1] * np.roll(quad[:, 0], -1)))
    ratio = area / float(photo_shape[0] * photo_shape[1])
    return 0.05 <= ratio <= 4.0


@dataclass(frozen=True, slots=True)
class _WorkingRegistration:
    h: np.ndarray | None  # working reference pixel -> working photo pixel
    matches: int
    inliers: int
    error_px: float
    ecc: float
    points: np.ndarray  # the inlier keypoints, in working reference pixels: where the homography is best


_NOTHING = np.zeros((0, 2))


@dataclass(frozen=True, slots=True)
class _PhotoSide:
    """The working photo with what registration reads from it."""

    scaled: _Scaled
    gray: np.ndarray
    keypoints: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray  # (n, 32) uint8


def _features(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoint positions, (n, 2) float32, and their descriptors, (n, 32) uint8 (n = 0 when none)."""
    keypoints, descriptors = cv2.ORB_create(nfeatures=_ORB_FEATURES, fastThreshold=8).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return cv2.KeyPoint_convert(keypoints).reshape(-1, 2), descriptors  # float32 (n, 2): their .pt, in C


_MATCH_ROWS = 128  # query rows per block: their XOR with every train descriptor stays in the cache


def _two_nearest(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query descriptor: the train index at the smallest Hamming distance, that distance and the second
    smallest — what ``cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)`` answers, ties included (the
    lowest index wins), at 2.7x less CPU: XOR and popcount on 64-bit words, 128 query rows at a time, where
    OpenCV calls a distance function per pair. ``train`` needs at least two rows.
    """
    if query.shape[1] % 8 or train.shape[1] != query.shape[1]:
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)
        return (np.array([p[0].trainIdx for p in pairs], np.intp), np.array([p[0].distance for p in pairs]),
                np.array([p[1].distance for p in pairs]))
    rows = np.ascontiguousarray(query).view(np.uint64)
    words = [np.ascontiguousarray(column) for column in np.ascontiguousarray(train).view(np.uint64).T]
    nearest = np.empty(len(rows), np.intp)
    first, second = np.empty(len(rows), np.uint16), np.empty(len(rows), np.uint16)
    for start in range(0, len(rows), _MATCH_ROWS):
        block = rows[start:start + _MATCH_ROWS]
        distance = np.bitwise_count(block[:, :1] ^ words[0]).astype(np.uint16)
        for k in range(1, len(words)):
            distance += np.bitwise_count(block[:, k:k + 1] ^ words[k])
        at, done = np.arange(len(block)), slice(start, start + len(block))
        nearest[done] = distance.argmin(axis=1)  # the first of equal minima, as OpenCV keeps it
        first[done] = distance[at, nearest[done]]
        distance[at, nearest[done]] = np.iinfo(np.uint16).max
        second[done] = distance.min(axis=1)
    return nearest, first, second


def _photo_side(photo: np.ndarray, working_long_side: int, substrate: tuple[int, int, int]) -> _PhotoSide:
    scaled = _photo_working(_as_rgb(photo, "photo", substrate), working_long_side)
    gray = _gray(scaled.image)
    return _PhotoSide(scaled, gray, *_features(gray))


def _register_working(ref: PreparedReference | _Registrable, photo: _PhotoSide, rim: int) -> _WorkingRegistration:
    """Homography between the working reference and the working photo (reference -> photo).

    ``rim``: working px along the reference's edges that ECC leaves out (see ``_refine``).
    """
    ref_shape, photo_shape = ref.image.shape, photo.scaled.image.shape
    if len(ref.keypoints) < 8 or len(photo.keypoints) < 8:
        return _WorkingRegistration(None, 0, 0, math.inf, math.nan, _NOTHING)
    nearest, first, second = _two_nearest(ref.descriptors, photo.descriptors)
    good = np.flatnonzero(first < _RATIO * second)  # Lowe's ratio test, in float64 as on DMatch distances
    if len(good) < 8:
        return _WorkingRegistration(None, len(good), 0, math.inf, math.nan, _NOTHING)
    src = ref.keypoints[good]
    dst = photo.keypoints[nearest[good]]
    # Two starts: a homography, and an affine map. Where the matches crowd into one part of the design (text,
    # stripes) and the rest is smooth, a homography fits the crowd and extrapolates wildly elsewhere; the
    # camera is nearly affine, and ECC adds the perspective back. The start that ends best correlated wins
    # (measured on a striped gradient design: 8 of 30 perturbed match sets went wrong from the homography
    # alone, none from the better of the two).
    starts = []
    # Robust estimators sample at random from OpenCV's per-thread generator, whose state depends on every call
    # before this one: seed it, so the same pair always gets the same verdict (reproducible QA, stable tests).
    cv2.setRNGSeed(0x5EED)
    # confidence 0.99999: at 0.999 the adaptive stop came after a few dozen samples, at the first model that
    # looked good enough (a striped design: 318 matches agreed with it, 376 with the true one)
    h, _ = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, _RANSAC_PX, maxIters=10_000, confidence=0.99999)
    if h is not None:
        starts.append(h)
    affine, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX,
                                     maxIters=10_000, confidence=0.99999)
    if affine is not None:
        starts.append(np.vstack([affine, [0.0, 0.0, 1.0]]))
    ref_half, ref_quarter = ref.gray_half, ref.gray_quarter
    photo_half = cv2.pyrDown(photo.gray)
    photo_quarter = cv2.pyrDown(photo_half)
    candidates = [(h, _correlation(ref_quarter, photo_quarter, h, scale=0.25, rim=rim))
                  for h in (_refine(start, ref_quarter, photo_quarter, 0.25, rim, src, dst, ref_shape, photo_shape)
                            for start in starts if _plausible(start, ref_shape, photo_shape))]
    if not candidates:
        return _WorkingRegistration(None, len(good), 0, math.inf, math.nan, _NOTHING)
    best = max(candidates, key=lambda candidate: candidate[1])[0]
    h = _refine(best, ref_half, photo_half, 0.5, rim, src, dst, ref_shape, photo_shape)
    ecc = _correlation(ref_half, photo_half, h, scale=0.5, rim=rim)
    residual = np.linalg.norm(_apply(np.linalg.inv(h), dst.astype(np.float64)) - src, axis=1)
    inlier = residual < _RANSAC_PX  # the matches the final homography agrees with
    error = float(np.median(residual[inlier])) if inlier.any() else math.inf
    return _WorkingRegistration(h, len(good), int(inlier.sum()), error, ecc, src[inlier].astype(np.float64))


def _refine(start: np.ndarray, template: np.ndarray, moving: np.ndarray, scale: float, rim: int, src: np.ndarray,
            dst: np.ndarray, ref_shape: tuple[int, ...], photo_shape: tuple[int, ...]) -> np.ndarray:
    """One ECC level from a start, kept only if the keypoints still agree with it (80 % of the start's).

    ECC works on intensities, so a big patch the file doesn't have can pull it off; the keypoints can't be.
    The reference's outer ``rim`` is left out: in the photo the canvas's outline against the table is a
    strong edge the file doesn't have (at the file's edge, or inside it when the print sits offset), and ECC
    slides towards it (measured: full-bleed designs went from 1.0 to 0.3 px p95 error without the rim).
    """
    refined = _ecc_level(template, moving, start, scale=scale, inset=max(2, round(rim * scale)), iterations=40)
    if (_agreeing(refined, src, dst) < 0.8 * _agreeing(start, src, dst)
            or not _plausible(refined, ref_shape, photo_shape)):
        return start
    return refined


def _agreeing(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> int:
    """How many matches (reference -> photo keypoints) a homography carries within the RANSAC tolerance."""
    return int(np.count_nonzero(np.linalg.norm(_apply(h, src.astype(np.float64)) - dst, axis=1) < _RANSAC_PX))


def _correlation(template: np.ndarray, moving: np.ndarray, h: np.ndarray, *, scale: float, rim: int) -> float:
    """ECC's correlation coefficient of a registration on a pyrDown'ed pair, the rim left out."""
    inset = max(2, round(rim * scale))
    template = np.ascontiguousarray(template[inset:-inset, inset:-inset]).astype(np.float32)
    down = np.diag([scale, scale, 1.0])
    warp = down @ h @ np.linalg.inv(down) @ np.array([[1, 0, inset], [0, 1, inset], [0, 0, 1]], np.float64)
    moved = cv2.warpPerspective(moving.astype(np.float32), warp, template.shape[::-1],
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return float(cv2.computeECC(template, moved))


def _unlike(template: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Areas (not edges) where the aligned photo plainly isn't the file: a missing patch, a blot. ECC is
    a least-squares fit and they would pull it; thin differences along edges are what it must correct."""
    a = (template - template.mean()) / max(float(template.std()), 1e-3)
    b = (moved - moved.mean()) / max(float(moved.std()), 1e-3)
    far = (cv2.GaussianBlur(np.abs(a - b), (0, 0), 2) > 1.0).astype(np.uint8)
    far = cv2.morphologyEx(far, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return cv2.dilate(far, np.ones((5, 5), np.uint8)) > 0


def _ecc_level(template: np.ndarray, moving: np.ndarray, h: np.ndarray, *, scale: float, inset: int,
               iterations: int) -> np.ndarray:
    """One ECC level on a pyrDown'ed pair (pyrDown keeps every other pixel centre: x_small = x * scale);
    the start back when ECC doesn't converge, moves too far, or doesn't make the pair agree better."""
    down = np.diag([scale, scale, 1.0])
    shift = np.array([[1, 0, inset], [0, 1, inset], [0, 0, 1]], np.float64)
    template = np.ascontiguousarray(template[inset:-inset, inset:-inset]).astype(np.float32)
    if min(template.shape) < 16:
        return h
    moving = moving.astype(np.float32)
    warp = (down @ h @ np.linalg.inv(down) @ shift).astype(np.float32)
    warp /= warp[2, 2]
    size = (template.shape[1], template.shape[0])
    moved = cv2.warpPerspective(moving, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    unlike = _unlike(template, moved)
    use = (~unlike).astype(np.uint8) if unlike.mean() < 0.3 else np.ones(template.shape, np.uint8)
    before = cv2.computeECC(template, moved, use)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
    try:
        ecc, warp = cv2.findTransformECCWithMask(template, moving, use, np.ones(moving.shape, np.uint8), warp,
                                                 cv2.MOTION_HOMOGRAPHY, criteria, 1)
    except cv2.error as error:  # "not converged": keep what we had
        logger.debug("ECC did not converge at scale %s: %s", scale, error)
        return h
    refined = np.linalg.inv(down) @ warp.astype(np.float64) @ np.linalg.inv(shift) @ down
    refined /= refined[2, 2]
    full = (template.shape[1] + 2 * inset) / scale, (template.shape[0] + 2 * inset) / scale
    corners = _corners(round(full[0]), round(full[1]))
    moved_by = np.max(np.linalg.norm(_apply(refined, corners) - _apply(h, corners), axis=1))
    if not np.isfinite(moved_by) or moved_by > _ECC_MAX_CORRECTION * max(full) or ecc <= before:
        return h
    return refined


def _photo_working(photo: np.ndarray, working_long_side: int) -> _Scaled:
    """The photo a little denser than the working reference (it includes a margin around the print)."""
    return _reduce(photo, round(working_long_side * 1.3))


def register(reference: np.ndarray, photo: np.ndarray, *, dpi: float | None = None,
             working_long_side: int = DEFAULT_WORKING_LONG_SIDE,
             substrate: tuple[int, int, int] = _WHITE) -> Registration:
    """Find the homography that carries the photo's pixels onto the reference's.

    Returns a ``Registration`` with ``ok=False`` (the whole photo stretched over the reference) when no
    plausible homography exists: a failed registration is evidence (a wrong design), not an error.

    Raises:
        InspectionError: an input isn't an RGB/RGBA/gray uint8 image.
    """
    ref = _registrable(reference, working_long_side, substrate)
    pho = _photo_side(photo, working_long_side, substrate)
    found = _register_working(ref, pho, _rim_px(ref.scaled, dpi))
    return _to_input_registration(found, ref.scaled, pho.scaled)


def _rim_px(ref: _Scaled, dpi: float | None) -> int:
    """ECC's ignored rim: a physical width when the print's scale is known, else a share of its size."""
    if dpi:
        return max(4, round(_ECC_RIM_MM / (MM_PER_INCH / dpi * ref.factor)))
    return max(4, round(_ECC_RIM_SHARE * max(ref.image.shape[:2])))


def _to_input_registration(found: _WorkingRegistration, ref: _Scaled, pho: _Scaled) -> Registration:
    if found.h is None:
        fit = ref.to_source() @ _fit_matrix(ref.image.shape, pho.image.shape) @ np.linalg.inv(pho.to_source())
        return Registration(ok=False, homography=fit / fit[2, 2], matches=found.matches, inliers=found.inliers,
                            inlier_ratio=0.0, error_px=math.inf, ecc=math.nan, rotation_deg=0.0)
    h = ref.to_source() @ np.linalg.inv(found.h) @ np.linalg.inv(pho.to_source())
    return Registration(ok=True, homography=h / h[2, 2], matches=found.matches, inliers=found.inliers,
                        inlier_ratio=found.inliers / max(found.matches, 1), error_px=found.error_px, ecc=found.ecc,
                        rotation_deg=_rotation_deg(found.h, ref.image.shape))


def _rotation_deg(h_ref_to_photo: np.ndarray, ref_shape: tuple[int, ...]) -> float:
    """Angle of the reference's x axis in the photo, at the reference's centre, in (-180, 180]."""
    centre = np.array([[ref_shape[1] / 2, ref_shape[0] / 2], [ref_shape[1] / 2 + 1, ref_shape[0] / 2]])
    a, b = _apply(h_ref_to_photo, centre)
    return float(math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])))


def _fit_matrix(ref_shape: tuple[int, ...], photo_shape: tuple[int, ...]) -> np.ndarray:
    """Photo -> reference by stretching the whole photo over the reference (the fallback view)."""
    return np.diag([ref_shape[1] / photo_shape[1], ref_shape[0] / photo_shape[0], 1.0])


# --- exposure --------------------------------------------------------------------------------------------

_GRID_LONG_SIDE = 96
_LIGHTING_SHAPE_MAX = 0.25  # a gradient plus vignette never spans more than this (log units, either way)
_TONE_KNOTS = 7


def _design_matrix(u: np.ndarray, v: np.ndarray, degree: int) -> np.ndarray:
    """Spatial polynomial terms without the constant (the tone curve carries the level)."""
    columns = [np.zeros_like(u)[:, None][:, :0]]
    if degree >= 1:
        columns.append(np.stack([u, v], axis=-1))
    if degree >= 2:
        columns.append(np.stack([u * u, u * v, v * v], axis=-1))
    return np.concatenate(columns, axis=-1)


def _hat_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights over the knots (a partition of unity)."""
    position = np.clip(np.interp(x, knots, np.arange(len(knots))), 0, len(knots) - 1)
    low = np.minimum(np.floor(position).astype(int), len(knots) - 2)
    frac = position - low
    basis = np.zeros((len(x), len(knots)))
    basis[np.arange(len(x)), low] = 1 - frac
    basis[np.arange(len(x)), low + 1] = frac
    return basis


def _robust_mad(values: np.ndarray, floor: float) -> float:
    return max(1.4826 * float(np.median(np.abs(values - np.median(values)))), floor)


def _fit_lighting(ref: np.ndarray, photo: np.ndarray, valid: np.ndarray,
                  tolerances: Tolerances) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Smooth illumination surface and bounded channel gains: photo = light(x, y) * gain_c * tone(reference).

    The log luminance ratio photo/reference is fitted as a quadratic surface in (x, y) *plus* a free curve of
    the reference luminance. The curve soaks up whatever the ink did (a fade, a shift: they depend on the
    colour, not on the place), so the surface is the light alone. Exposure and white balance are read where
    the reference is lightest (paper and light tints: what ink defects change least) and clipped to the
    camera's plausible range, so they cannot hide a colour shift.

    Returns (surface as a gain map at the inputs' size, per-channel gains, scores).
    """
    height, width = ref.shape[:2]
    scale = _GRID_LONG_SIDE / max(height, width)
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    weights = np.array([0.2126, 0.7152, 0.0722], np.float32)
    y_full = cv2.transform(ref, weights[None, :])

    def cells(image: np.ndarray) -> np.ndarray:
        shrunk = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return shrunk.reshape(-1, shrunk.shape[2] if shrunk.ndim == 3 else 1).astype(np.float64)

    ref_grid, photo_grid = cells(ref), cells(photo)
    y_spread = np.sqrt(np.maximum(cells(cv2.multiply(y_full, y_full)).ravel() - cells(y_full).ravel() ** 2, 0))
    valid_grid = cells(valid.astype(np.float32)).ravel() > 0.99
    y_ref, y_photo = np.einsum("ij,j->i", ref_grid, weights), np.einsum("ij,j->i", photo_grid, weights)
    usable = valid_grid & (y_ref > 0.05) & (y_photo > 0.02) & (y_spread < 0.05)
    v, u = np.mgrid[0:size[1], 0:size[0]].astype(np.float64)
    u = (u.ravel() + 0.5) / size[0] * 2 - 1
    v = (v.ravel() + 0.5) / size[1] * 2 - 1
    spread_uv = float(np.std(u[usable]) + np.std(v[usable])) if usable.any() else 0.0
    degree = 2 if usable.mean() > 0.2 and spread_uv > 0.6 else 1 if usable.mean() > 0.05 else 0
    surface = np.zeros(u.shape)
    exposure, channel_log = 0.0, np.zeros(3)
    if usable.sum() >= 3 * _TONE_KNOTS:
        yr = y_ref[usable]
        ratio = np.log(y_photo[usable] / yr)
        knots = np.unique(np.quantile(yr, np.linspace(0, 1, _TONE_KNOTS)))
        tone = _hat_basis(yr, knots) if len(knots) > 1 else np.ones((len(yr), 1))
        spatial = _design_matrix(u[usable], v[usable], degree)
        a = np.concatenate([spatial, tone], axis=1)
        # start without what is far from the typical ratio (a missing patch: white where ink was, ratio x4):
        # a least-squares first pass would bend the surface towards it before the reweighting could drop it
        w = (np.abs(ratio - np.median(ratio)) < 4 * _robust_mad(ratio, 0.02)).astype(np.float64)
        ridge = 1e-6 * np.eye(a.shape[1])
        for _ in range(4):  # normal equations by einsum: BLAS would start threads for a 12x12 product
            weighted = a * w[:, None]
            coef = np.linalg.solve(np.einsum("ij,ik->jk", weighted, a) + ridge, np.einsum("ij,i->j", weighted, ratio))
            residual = ratio - np.einsum("ij,j->i", a, coef)
            w = (np.abs(residual) < 2.5 * _robust_mad(residual[w > 0], 0.01)).astype(np.float64)
            if w.sum() < a.shape[1] * 3:
                w[:] = 1
                break
        surface = np.einsum("ij,j->i", _design_matrix(u, v, degree), coef[:spatial.shape[1]])
        surface -= surface.mean()
        light_cells = usable.copy()
        light_cells[usable] = (w > 0) & (yr >= np.quantile(yr, 0.8))
        light_cells &= (ref_grid.min(axis=1) > 0.02) & (photo_grid.min(axis=1) > 0.01)  # every channel lit
        level = np.log(photo_grid[light_cells] / ref_grid[light_cells]) - surface[light_cells, None]
        if len(level):
            exposure = float(np.median(np.einsum("ij,j->i", level, weights.astype(np.float64))))
            channel_log = np.median(level, axis=0) - exposure
    shape = np.clip(surface, -_LIGHTING_SHAPE_MAX, _LIGHTING_SHAPE_MAX)
    exposure_kept = float(np.clip(exposure, math.log(1 - tolerances.exposure), math.log(1 + tolerances.exposure)))
    wb = math.log(1 + tolerances.white_balance)
    gains = np.exp(exposure_kept + np.clip(channel_log, -wb, wb))
    shape_map = cv2.resize(shape.reshape(size[1], size[0]).astype(np.float32), (width, height),
                           interpolation=cv2.INTER_LINEAR)
    scores = {"exposure_gain": math.exp(exposure), "lighting_range": float(np.exp(shape.max() - shape.min()) - 1)}
    return cv2.exp(shape_map), gains.astype(np.float32), scores


# --- colour ----------------------------------------------------------------------------------------------


def _lab(rgb01: np.ndarray) -> np.ndarray:
    # clipped to [0, 1] in two OpenCV passes (np.clip and astype made two more full-size copies)
    rgb01 = rgb01.astype(np.float32, copy=False)
    below_one = cv2.threshold(rgb01, 1.0, 1.0, cv2.THRESH_TRUNC)[1]
    return cv2.cvtColor(cv2.threshold(below_one, 0.0, 0.0, cv2.THRESH_TOZERO)[1], cv2.COLOR_RGB2Lab)


def _lab_of(colour: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return _lab(np.asarray(colour, np.float32).reshape(1, 1, 3) / 255).reshape(3)


def _rows(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``a[keep]`` for a boolean row mask: the same rows, 4x faster than numpy's boolean indexing of (n, 3)."""
    return a.compress(keep, axis=0)


def _row_norm(d: np.ndarray) -> np.ndarray:
    """``np.linalg.norm(d, axis=1)`` for real ``d``: the same sums in the same order, one copy fewer."""
    return np.sqrt(np.add.reduce(d * d, axis=1))


@dataclass(frozen=True, slots=True)
class _ToneModel:
    """Inked pixels: photo_lab ~ slope * reference_lab + offset (L its own slope, a and b one for chroma).

    Paper stays paper: an ink defect (a drifting channel, thin ink) changes where ink is, so the prediction
    blends from "as the file" on bare substrate to the model on full ink.
    """

    slope: np.ndarray  # (3,)
    offset: np.ndarray  # (3,)
    fade: float
    cut: float  # residual dE beyond which an inked pixel is a local defect, not part of the tone
    thinning: float  # alpha of the fade towards the substrate (1: no fade)

    def bias_over(self, ref: np.ndarray, photo: np.ndarray, substrate_lab: np.ndarray) -> float | None:
        """The uniform colour error over some inked pixels (N x 3 Lab), local defects left out."""
        if len(ref) < 8:
            return None
        step = max(1, len(ref) // _TONE_SAMPLES)
        ref, photo = ref[::step].astype(np.float64), photo[::step].astype(np.float64)
        residual = photo - (ref * self.slope + self.offset)
        # around the region's own typical residual: a zone can be off as a whole, a blot in it is an outlier
        keep = _row_norm(residual - np.median(residual, axis=0)) <= self.cut
        if keep.sum() < 8:
            return None
        return _uniform_error(_rows(ref, keep).mean(axis=0), _rows(photo, keep).mean(axis=0), self.thinning,
                              substrate_lab)

    def predict(self, lab: np.ndarray, inkness: np.ndarray) -> np.ndarray:
        change = np.zeros((3, 4), np.float32)  # model - lab, per channel: (slope - 1) * lab + offset
        change[:, :3] = np.diag(self.slope - 1)
        change[:, 3] = self.offset
        return cv2.add(lab, cv2.multiply(cv2.transform(lab, change), cv2.merge([inkness] * 3)))


_TONE_SAMPLES = 8_000
_INK_DE = 10.0  # dE from the substrate from which a pixel counts as fully inked (partly from 2)


def _inkness(lab: np.ndarray, substrate_lab: np.ndarray) -> np.ndarray:
    d = cv2.subtract(lab, (*(float(v) for v in substrate_lab), 0.0))  # the scalar, not a full-size copy of it
    distance = cv2.sqrt(cv2.transform(cv2.multiply(d, d), np.ones((1, 3), np.float32)))
    return np.clip((distance - 2) / (_INK_DE - 2), 0, 1)


def _fit_tone(ref_lab: np.ndarray, photo_lab: np.ndarray, inked: np.ndarray, substrate_lab: np.ndarray) -> _ToneModel:
    """Robust per-channel affine fit over the inked pixels; ridge priors keep the slopes at 1 where the
    design has no spread to tell from. Paper-only prints fall back to every pixel."""
    ref_lab, photo_lab, inked = ref_lab.reshape(-1, 3), photo_lab.reshape(-1, 3), inked.ravel()
    # an even subsample of the inked pixels (of all when too few are): the fit needs thousands, not a million
    picked = np.flatnonzero(inked) if inked.sum() >= max(30, 0.02 * len(ref_lab)) else np.arange(len(ref_lab))
    picked = picked[::max(1, len(picked) // _TONE_SAMPLES)]
    r = ref_lab.take(picked, axis=0).astype(np.float64)
    p = photo_lab.take(picked, axis=0).astype(np.float64)
    # start from the pixels whose colour difference is near the typical one: a missing patch (ink to paper,
    # dE ~80) would drag a first least-squares pass into a fake fade before trimming could drop it
    difference = p - r
    spread = _row_norm(difference - np.median(difference, axis=0))
    keep = spread <= max(4 * _robust_mad(spread, 1.0), 10.0)
    slope, offset = np.ones(3), np.zeros(3)
    priors = (25.0, 9.0)  # pseudo-variance of L and of a/b: a design with less spread than this says little
    for _ in range(3):
        rk, pk = _rows(r, keep), _rows(p, keep)
        mr, mp = rk.mean(axis=0), pk.mean(axis=0)
        dr, dp = rk - mr, pk - mp
        slope_l = (np.mean(dr[:, 0] * dp[:, 0]) + priors[0]) / (np.mean(dr[:, 0] ** 2) + priors[0])
        slope_ab = ((np.mean(dr[:, 1] * dp[:, 1] + dr[:, 2] * dp[:, 2]) + priors[1])
                    / (np.mean(dr[:, 1] ** 2 + dr[:, 2] ** 2) + priors[1]))
        slope = np.array([slope_l, slope_ab, slope_ab])
        offset = mp - slope * mr
        residual = _row_norm(p - (r * slope + offset))
        cut = max(3 * _robust_mad(residual, 0.5), 4.0)  # defects out, the model's own error in
        keep = residual <= cut
        if keep.sum() < 3:
            keep[:] = True
    # The fade: ink thinned towards the substrate, photo - substrate = alpha * (file - substrate). Through that
    # pivot it is one well-posed number even for a design of few colours, where the affine fit above would
    # read the move of the mean colour as an offset (a shift) instead.
    towards = _rows(r, keep) - substrate_lab
    alpha = ((np.sum((_rows(p, keep) - substrate_lab) * towards) + len(towards) * priors[0])
             / (np.sum(towards * towards) + len(towards) * priors[0]))
    fade = float(max(0.0, 1 - alpha))
    return _ToneModel(slope, offset, fade, cut, alpha)


def _uniform_error(mean_ref: np.ndarray, mean_photo: np.ndarray, slope: float,
                   substrate_lab: np.ndarray) -> float:
    """dE between the mean colours that a fade doesn't explain: read once as no fade (the plain difference)
    and once as ink thinned towards the substrate by the fitted slope; the smaller reading is the shift."""
    plain = mean_photo - mean_ref
    towards_substrate = mean_photo - (substrate_lab + slope * (mean_ref - substrate_lab))
    return float(min(np.linalg.norm(plain), np.linalg.norm(towards_substrate)))


def _ssim_map(x: np.ndarray, y: np.ndarray, *, data_range: float = 100.0, sigma: float = 1.5) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, from five blurs."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), sigma)

    # The textbook formula, evaluated in the same order (so to the same bits) but mostly in place: six
    # full-size float images fewer. c1 and c2 become float32, as numpy made them.
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)  # a channel of a colour image is strided
    mx, my = blur(x), blur(y)
    numerator = mx * np.float32(2)
    numerator *= my
    numerator += np.float32(c1)
    sxy = blur(x * y)
    sxy -= mx * my
    sxy *= np.float32(2)
    sxy += np.float32(c2)
    numerator *= sxy
    means = mx * mx
    means += my * my
    means += np.float32(c1)
    sxx = blur(x * x)
    sxx -= mx * mx
    syy = blur(y * y)
    syy -= my * my
    sxx += syy
    sxx += np.float32(c2)
    means *= sxx
    numerator /= means
    return numerator


def _gradient_magnitude(lab: np.ndarray) -> np.ndarray:
    """dE per pixel of the reference's own edges: what a sub-pixel misalignment turns into difference."""
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    squares = cv2.multiply(gx, gx)
    cv2.accumulateSquare(gy, squares)  # in place: one full-size float image less than multiply + add
    return cv2.sqrt(cv2.transform(squares, np.ones((1, 3), np.float32)))


# --- misregistration: the canvas against the content ---------------------------------------------------

_PAD_MM = 16.0  # how much of the photo around the print is warped along (the table and the canvas edges)
_EDGE_SEARCH_MM = 8.5  # furthest a canvas edge is looked for from where the file's edge is (offset + error)
_EDGE_MIN_STEP = 10.0  # RGB distance between the table and the canvas below which an edge can't be told
_CANVAS_RIM_MM = 1.0  # next to the canvas edge the photo blends table and print: not judged
_SIDES = ("left", "right", "top", "bottom")


def _strip(image: np.ndarray, side: str, pad: int, depth: int) -> np.ndarray:
    """The band along one side of the padded frame as (along, depth_from_outside, ...), outside first."""
    height, width = image.shape[:2]
    inner = slice(pad, height - pad) if side in ("left", "right") else slice(pad, width - pad)
    if side == "left":
        band = image[inner, :depth]
    elif side == "right":
        band = image[inner, width - 1:width - 1 - depth:-1]
    elif side == "top":
        band = np.swapaxes(image[:depth, inner], 0, 1)
    else:
        band = np.swapaxes(image[height - 1:height - 1 - depth:-1, inner], 0, 1)
    return np.ascontiguousarray(band)


def _edge_offsets(padded: np.ndarray, inside: np.ndarray, pad: int, search: int) -> dict[str, np.ndarray]:
    """Per side, (along, offset) samples: how far inside the file's edge the canvas edge is (px, + = inwards).

    Along each line across the edge: the table's colour from the outermost pixels, then the first place the
    colour departs from it by half the step it makes; sub-pixel by linear interpolation.
    """
    table_depth = max(3, pad - search)
    trusted = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8))  # not blended with the border
    found: dict[str, np.ndarray] = {}
    for side in _SIDES:
        band = cv2.GaussianBlur(_strip(padded, side, pad, pad + search).astype(np.float32), (0, 0), 1.0)
        ok = _strip(trusted, side, pad, pad + search) > 0
        band = cv2.blur(band, (1, 5))  # average 5 neighbouring lines: less noise, same edge
        table_ok = ok[:, :table_depth]
        counts = table_ok.sum(axis=1)
        table = (band[:, :table_depth] * table_ok[:, :, None]).sum(axis=1) / np.maximum(counts, 1)[:, None]
        step = band - table[:, None, :]
        distance = np.sqrt(np.einsum("ijk,ijk->ij", step, step))
        noise = np.sqrt((distance[:, :table_depth] ** 2 * table_ok).sum(axis=1) / np.maximum(counts, 1))
        first = np.clip(6 * noise, _EDGE_MIN_STEP, 2 * _EDGE_MIN_STEP)
        depth_index = np.arange(distance.shape[1])[None, :]
        beyond = (distance > first[:, None]) & ok & (depth_index >= table_depth)
        usable = beyond.any(axis=1) & (counts >= 3)
        lines = np.nonzero(usable)[0]
        if len(lines) < 8:
            continue
        t1 = beyond[lines].argmax(axis=1)
        last = distance.shape[1] - 1
        inner_level = np.median(distance[lines[:, None], np.clip(t1[:, None] + np.arange(2, 6), 0, last)], axis=1)
        level = inner_level / 2
        window = np.clip(t1[:, None] + np.arange(-3, 3), 0, last - 1)
        d0 = distance[lines[:, None], window]
        d1 = distance[lines[:, None], window + 1]
        crossing = (d0 < level[:, None]) & (d1 >= level[:, None])
        has = crossing.any(axis=1) & (inner_level > first[lines])
        j = crossing.argmax(axis=1)
        rows = np.arange(len(lines))
        a, b = d0[rows, j], d1[rows, j]
        position = window[rows, j] + (level - a) / np.maximum(b - a, 1e-6)
        offset = position - (pad - 0.5)  # the file's edge is the boundary before pixel `pad`
        found[side] = np.stack([lines[has].astype(np.float64), offset[has]], axis=1)
    return found


def _robust_line(samples: np.ndarray) -> tuple[float, float] | None:
    """offset = a + b * along, refitted without the samples more than ~1 px off (defects, corners)."""
    along, offset = samples[:, 0], samples[:, 1]
    a, b = float(np.median(offset)), 0.0  # start from the median: a least-squares start follows the outliers
    keep = np.ones(len(along), bool)
    for _ in range(4):
        residual = np.abs(offset - (a + b * along))
        keep = residual < max(1.0, 3 * _robust_mad(offset[keep] - (a + b * along[keep]), 0.2))
        if keep.sum() < 8:
            return None
        b, a = np.polyfit(along[keep], offset[keep], 1)
    return (float(a), float(b)) if keep.sum() >= max(8, 0.2 * len(along)) else None


def _canvas(padded: np.ndarray, inside: np.ndarray, pad: int, search: int,
            shape: tuple[int, int]) -> tuple[np.ndarray | None, int]:
    """The canvas outline in working-reference pixels (4x2, clockwise from top-left), and how many sides
    were seen. A side that can't be seen mirrors the opposite one: the canvas is the file's size."""
    height, width = shape
    lines = {side: _robust_line(samples) for side, samples in _edge_offsets(padded, inside, pad, search).items()}
    seen = sum(line is not None for line in lines.values())
    for side, opposite in (("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top")):
        if lines.get(side) is None and lines.get(opposite) is not None:
            a, b = lines[opposite]
            lines[side] = (-a, -b)
    if any(lines.get(side) is None for side in _SIDES):
        return None, seen
    # x = left(y), x = right(y), y = top(x), y = bottom(x), each offset measured inwards from the file's edge
    edges = {
        "left": lambda a, b: (np.array([1.0, -b]), -0.5 + a),  # x - b*y = -0.5 + a
        "right": lambda a, b: (np.array([1.0, b]), width - 0.5 - a),  # x + b*y = w - 0.5 - a
        "top": lambda a, b: (np.array([-b, 1.0]), -0.5 + a),
        "bottom": lambda a, b: (np.array([b, 1.0]), height - 0.5 - a),
    }
    equations = {side: edges[side](*lines[side]) for side in _SIDES}
    corners = []
    for first, second in (("left", "top"), ("right", "top"), ("right", "bottom"), ("left", "bottom")):
        (n1, c1), (n2, c2) = equations[first], equations[second]
        corners.append(np.linalg.solve(np.stack([n1, n2]), np.array([c1, c2])))
    return np.array(corners), seen


def _content_offset(quad: np.ndarray, points: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """Where the content sits on the canvas minus where the file puts it (px), at the matched keypoints."""
    height, width = shape
    frame = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    to_canvas = cv2.getPerspectiveTransform(quad.astype(np.float32), frame.astype(np.float32)).astype(np.float64)
    if not len(points):
        points = np.array([[width / 2, height / 2]])
    shift = _apply(to_canvas, points) - points
    return float(np.median(shift[:, 0])), float(np.median(shift[:, 1]))


# --- zones, checks, verdict ------------------------------------------------------------------------------

_PATCH_GAP_MM = 1.5  # substrate-showing fragments this close are one patch (a missing patch over text)
_MISSING_SHARE = 0.9  # share of the file's ink gone inside the patch's envelope: a rectangle (an ellipse: 0.79)
_EDGE_SLACK_PX = 0.7  # registration error budget: residual dE allowed per unit of edge gradient


@dataclass(frozen=True, slots=True)
class _Check:
    reason: DefectReason
    zone: str
    severity: float  # score / threshold: >= 1 fails, >= 1 - review_margin is borderline
    review_from: float


@dataclass(frozen=True, slots=True)
class _Component:
    box: tuple[int, int, int, int]
    size_mm: float  # width: diameter of the largest disc inside, so thin slivers along edges stay small
    reason: DefectReason
    zone: int
    severity: float
    mask: np.ndarray = field(repr=False)


def _zone_index(shape: tuple[int, int], zones: Sequence[Zone]) -> np.ndarray:
    """Per pixel: 0 = the whole-print default, i = zones[i - 1] (later zones paint over earlier ones)."""
    height, width = shape
    index = np.zeros((height, width), np.uint8)
    for i, zone in enumerate(zones, start=1):
        x, y, w, h = zone.box
        x0, y0 = round(x * width), round(y * height)
        x1, y1 = round((x + w) * width), round((y + h) * height)
        index[max(0, y0):min(height, y1), max(0, x0):min(width, x1)] = i
    return index


# What a reason explains, most first: a wrong design explains every difference; a print-wide ink or placement
# fault explains local side effects (a shift clipped at the gamut's edge leaves a patch; an offset leaves a
# band); local faults explain only themselves. Within a tier the larger excess over its threshold leads.
_TIER = {DefectReason.WRONG_DESIGN: 0, DefectReason.COLOUR_SHIFT: 1, DefectReason.FADED_PRINT: 1,
         DefectReason.MISREGISTRATION: 1, DefectReason.MISSING_AREA: 2, DefectReason.INK_BLOT: 2,
         DefectReason.DAMAGED: 2}


def _verdict(checks: list[_Check]) -> tuple[tuple[DefectReason, ...], str]:
    """Fail on any check at or over its threshold, review within the margin below it. Reasons: the failing
    ones by tier then severity, then the borderline ones."""
    failing = [c for c in checks if c.severity >= 1]
    doubtful = [c for c in checks if c.review_from <= c.severity < 1]
    if not failing and not doubtful:
        return (), Verdict.PASS
    worst: dict[DefectReason, float] = {}
    for check in failing + doubtful:
        worst[check.reason] = max(worst.get(check.reason, 0.0), check.severity)
    order = sorted(worst, key=lambda r: (worst[r] < 1, _TIER[r], -worst[r]))
    return tuple(order), Verdict.FAIL if failing else Verdict.REVIEW


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance of two 3-channel float32 images (CIE76 dE when both are L*a*b*)."""
    d = cv2.subtract(a, b) if a.shape == b.shape else (a - b).astype(np.float32)
    return cv2.sqrt(cv2.transform(cv2.multiply(d, d), np.ones((1, 3), np.float32)))


def inspect(reference: np.ndarray | PreparedReference, photo: np.ndarray, *, dpi: float, zones: Sequence[Zone] = (),
            tolerances: Tolerances = DEFAULT, working_long_side: int = DEFAULT_WORKING_LONG_SIDE,
            substrate: tuple[int, int, int] = _WHITE,
            preview_long_side: int = DEFAULT_PREVIEW_LONG_SIDE) -> InspectionResult:
    """Judge a photo of a printed item against its print file.

    Args:
        reference: the print file, RGB or RGBA uint8 (transparent = no ink), any size; or the same already
            prepared (`prepare_reference`) with this substrate and working scale.
        photo: the partner's photo, RGB uint8, the print somewhere inside with some table around it.
        dpi: the print file's resolution, so pixels become mm at print scale.
        zones: rectangles with their own tolerances; the rest of the print uses ``tolerances``.
        substrate: the blank's colour (garment, paper) that shows where ink is missing.

    Returns:
        An ``InspectionResult``; "review" when a score is borderline or the registration is doubtful.

    Raises:
        InspectionError: an input isn't an image or ``dpi`` isn't positive.
    """
    if not isinstance(dpi, int | float) or not math.isfinite(dpi) or dpi <= 0:
        raise InspectionError(f"dpi must be a positive number, got {dpi!r}.")
    if isinstance(reference, PreparedReference):
        if (reference.working_long_side, reference.substrate) != (working_long_side, tuple(substrate)):
            raise InspectionError("The prepared reference was made for another substrate or working scale.")
        aligned = _align(reference, _photo_side(photo, working_long_side, substrate), dpi=dpi, tolerances=tolerances)
        prepared = reference
    else:
        # The print file is prepared on a second thread (OpenCV and numpy's big loops release the GIL): its
        # keypoints while this one reads the photo's, its colours while this one registers.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-reference") as pool:
            making = pool.submit(_registrable, reference, working_long_side, substrate)
            photo_side = _photo_side(photo, working_long_side, substrate)
            registrable = making.result()
            colours = pool.submit(_colours, registrable.image, substrate)
            aligned = _align(registrable, photo_side, dpi=dpi, tolerances=tolerances)
            prepared = _prepared(registrable, colours.result(), working_long_side, substrate)
    return _judge(ref=prepared, aligned=aligned.image, valid=aligned.valid, registration=aligned.registration,
                  hopeless=aligned.hopeless, weak=aligned.weak, mm_per_px=aligned.mm_per_px,
                  shift_px=aligned.shift_px, sides_seen=aligned.sides_seen, zones=zones, tolerances=tolerances,
                  substrate=substrate, preview_long_side=preview_long_side)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Aligned:
    """The photo registered and warped into the working reference's frame, and where it is print."""

    image: np.ndarray  # RGB uint8
    valid: np.ndarray  # bool: photo pixels that are print (inside the photo, on the canvas, off its rim)
    registration: Registration
    hopeless: bool
    weak: bool
    mm_per_px: float
    shift_px: tuple[float, float]
    sides_seen: int


def _align(ref: PreparedReference | _Registrable, photo_side: _PhotoSide, *, dpi: float,
           tolerances: Tolerances) -> _Aligned:
    """Register the photo, warp it into the reference's frame, and find the canvas it sits on."""
    ref_scaled, pho = ref.scaled, photo_side.scaled
    found = _register_working(ref, photo_side, _rim_px(ref_scaled, dpi))
    registration = _to_input_registration(found, ref_scaled, pho)
    mm_per_px = MM_PER_INCH / dpi * ref_scaled.factor
    height, width = ref.image.shape[:2]

    hopeless = (found.h is None or found.inliers < tolerances.min_inliers
                or registration.inlier_ratio < tolerances.min_inlier_ratio
                or abs(registration.rotation_deg) > tolerances.max_rotation_deg)
    weak = (not hopeless) and (found.inliers < tolerances.weak_inliers
                               or registration.inlier_ratio < tolerances.weak_inlier_ratio
                               or found.error_px > tolerances.max_registration_error_px)
    to_photo = np.linalg.inv(_fit_matrix(ref.image.shape, pho.image.shape)) if hopeless else found.h
    pad = max(4, round(_PAD_MM / mm_per_px))
    framed = to_photo @ np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1]], np.float64)
    size = (width + 2 * pad, height + 2 * pad)
    padded = cv2.warpPerspective(pho.image, framed, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT)
    inside = cv2.warpPerspective(np.full(pho.image.shape[:2], 255, np.uint8), framed, size,
                                 flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT) > 0
    aligned = np.ascontiguousarray(padded[pad:pad + height, pad:pad + width])
    valid = inside[pad:pad + height, pad:pad + width]

    shift_px, sides_seen = (0.0, 0.0), 0
    if not hopeless:
        quad, sides_seen = _canvas(padded, inside, pad, max(3, round(_EDGE_SEARCH_MM / mm_per_px)),
                                   (height, width))
        if quad is not None:
            shift_px = _content_offset(quad, found.points, (height, width))
            on_canvas = np.zeros((height, width), np.uint8)
            cv2.fillConvexPoly(on_canvas, np.round(quad).astype(np.int32), 1)
            rim = 2 * max(2, round(_CANVAS_RIM_MM / mm_per_px)) + 1  # the canvas edge's own blur is no defect
            valid &= cv2.erode(on_canvas, np.ones((rim, rim), np.uint8), borderType=cv2.BORDER_CONSTANT,
                               borderValue=0) > 0  # beyond the frame counts as off the canvas

    return _Aligned(image=aligned, valid=valid, registration=registration, hopeless=hopeless, weak=weak,
                    mm_per_px=mm_per_px, shift_px=shift_px, sides_seen=sides_seen)


def _judge(*, ref: PreparedReference, aligned: np.ndarray, valid: np.ndarray, registration: Registration,
           hopeless: bool, weak: bool, mm_per_px: float, shift_px: tuple[float, float], sides_seen: int,
           zones: Sequence[Zone], tolerances: Tolerances, substrate: tuple[int, int, int],
           preview_long_side: int) -> InspectionResult:
    """Normalise, compare and classify an aligned photo (``valid``: pixels of the photo that are print)."""
    height, width = ref.image.shape[:2]
    all_tolerances = [tolerances, *(z.tolerances for z in zones)]
    names = ["print", *(z.name for z in zones)]
    index = _zone_index((height, width), zones)
    if not valid.any():
        valid = np.ones_like(valid)
    valid_u8 = valid.astype(np.uint8)

    photo_f = cv2.GaussianBlur(aligned, (0, 0), 1.0).astype(np.float32)
    photo_f *= np.float32(1 / 255)  # in place: no second full-size float copy
    coarse = _coarse(width, height)
    photo_small = cv2.resize(photo_f, coarse, interpolation=cv2.INTER_AREA)
    valid_small = cv2.resize(valid.astype(np.float32), coarse, interpolation=cv2.INTER_AREA) > 0.99
    light_small, gains, light_scores = _fit_lighting(ref.rgb_small, photo_small, valid_small, tolerances)
    light = cv2.resize(light_small, (width, height), interpolation=cv2.INTER_LINEAR)  # smooth by construction
    photo_f = cv2.divide(photo_f, cv2.merge([light * g for g in gains]))
    ref_lab, photo_lab = ref.lab, _lab(photo_f)
    substrate_lab = _lab_of(substrate)

    ref_c = ref.lab_small
    photo_c = _lab(cv2.divide(photo_small, cv2.merge([light_small * g for g in gains])))
    valid_c = cv2.erode(cv2.resize(valid.astype(np.uint8), coarse, interpolation=cv2.INTER_AREA),
                        np.ones((3, 3), np.uint8)) > 0  # SSIM's window must not reach off the canvas
    ink_c = ref.inkness_small
    flat_c = valid_c.ravel()
    tone = _fit_tone(_rows(ref_c.reshape(-1, 3), flat_c), _rows(photo_c.reshape(-1, 3), flat_c),
                     ink_c.ravel().compress(flat_c) >= 1, substrate_lab)
    inked_c = valid_c & (ink_c >= 1)
    design_match = _design_similarity(photo_c, tone.predict(ref_c, ink_c),
                                      inked_c if np.count_nonzero(inked_c) >= 50 else valid_c)

    delta = _distance(photo_lab, ref_lab)
    inkness = ref.inkness
    expected = tone.predict(ref_lab, inkness)
    # Colour bias on every third pixel at working scale: thin strokes of text blur into paper further down.
    sample = np.s_[::3, ::3]
    inked = valid[sample] & (inkness[sample] >= 1)
    ys, xs = np.nonzero(inked)
    at = (3 * ys) * width + 3 * xs  # the same pixels, row by row, as [sample][inked] (4x faster than it)
    ref_s, photo_s = ref_lab.reshape(-1, 3).take(at, axis=0), photo_lab.reshape(-1, 3).take(at, axis=0)
    index_s = index.ravel().take(at)
    whole_bias = tone.bias_over(ref_s, photo_s, substrate_lab)
    region_bias = [whole_bias if not zones else tone.bias_over(ref_s[index_s == z], photo_s[index_s == z],
                                                               substrate_lab) for z in range(len(all_tolerances))]
    if zones:  # a zone off as a whole is judged by its colour check; its blots stand out against its own tone
        residual_s = photo_s - expected.reshape(-1, 3).take(at, axis=0)
        offsets = np.zeros((len(all_tolerances), 3), np.float32)
        for z in range(len(all_tolerances)):
            if np.count_nonzero(index_s == z) >= 8:
                offsets[z] = np.median(residual_s[index_s == z], axis=0)
        expected = cv2.add(expected, offsets[index] * inkness[:, :, None])
    residual = _distance(photo_lab, expected)
    defect = cv2.max(residual - ref.slack, 0)
    defect[~valid] = 0
    ssim = _ssim_map(photo_lab[:, :, 0], expected[:, :, 0])

    # Local defects: thresholded residual (and structural loss), cleaned, split into components.
    local_thr = (np.asarray([t.delta_e_local for t in all_tolerances], np.float32)[index] if zones
                 else np.float32(tolerances.delta_e_local))
    ssim_thr = (np.asarray([t.ssim_min for t in all_tolerances], np.float32)[index] if zones
                else np.float32(tolerances.ssim_min))
    mask = (defect > local_thr) | ((ssim < ssim_thr) & (defect > local_thr / 2))
    mask &= valid
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    ink_core = cv2.erode((inkness >= 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    components = _components(mask, index, all_tolerances, mm_per_px, photo_lab, ref_lab, substrate_lab, ink_core)

    shift_x, shift_y = shift_px[0] * mm_per_px, shift_px[1] * mm_per_px
    shift_mm = math.hypot(shift_x, shift_y)
    scores: dict[str, float] = {
        "delta_e_mean": cv2.mean(delta, mask=valid_u8)[0],
        "delta_e_p95": float(np.percentile(delta[::2, ::2][valid[::2, ::2]], 95)),
        "delta_e_bias": whole_bias if whole_bias is not None else 0.0,
        "fade": tone.fade,
        "contrast_ratio": float(tone.slope[0]),
        "chroma_ratio": float(tone.slope[1]),
        "ssim": design_match,
        "ssim_local_mean": cv2.mean(ssim, mask=valid_u8)[0],
        "shift_mm": shift_mm,
        "shift_x_mm": shift_x,
        "shift_y_mm": shift_y,
        "canvas_sides_seen": float(sides_seen),
        "blob_mm": max((c.size_mm for c in components if c.reason is DefectReason.INK_BLOT), default=0.0),
        "missing_mm": max((c.size_mm for c in components if c.reason is DefectReason.MISSING_AREA), default=0.0),
        "defect_area_mm2": float(np.count_nonzero(mask)) * mm_per_px**2,
        "registration_error_px": registration.error_px,
        "inlier_ratio": registration.inlier_ratio,
        "inliers": float(registration.inliers),
        "ecc": registration.ecc,
        "rotation_deg": registration.rotation_deg,
        "mm_per_px": mm_per_px,
        **light_scores,
    }
    checks: list[_Check] = []

    def check(reason: DefectReason, zone: int, score: float, limit: float) -> None:
        review_from = 1 - all_tolerances[zone].review_margin
        checks.append(_Check(reason, names[zone], score / limit if limit > 0 else math.inf, review_from))

    check(DefectReason.FADED_PRINT, 0, tone.fade, tolerances.fade)
    check(DefectReason.WRONG_DESIGN, 0, 1 - design_match, 1 - tolerances.wrong_design_ssim)
    # the whole print moves together, so its strictest zone decides
    check(DefectReason.MISREGISTRATION, 0, shift_mm, min(t.shift_mm for t in all_tolerances))
    # The colour shift per region (each zone, and the rest of the print), each against its own tolerance.
    for z in range(len(all_tolerances)):
        bias = region_bias[z]
        if bias is not None:
            if zones:
                scores[f"{names[z]}.delta_e_bias"] = bias
            check(DefectReason.COLOUR_SHIFT, z, bias, all_tolerances[z].delta_e_global)
    for component in components:
        review_from = 1 - all_tolerances[component.zone].review_margin
        checks.append(_Check(component.reason, names[component.zone], component.severity, review_from))

    reasons, verdict = _verdict(checks)
    others = tuple(r for r in reasons if r is not DefectReason.WRONG_DESIGN)
    if hopeless:
        reasons, verdict = (DefectReason.WRONG_DESIGN,), Verdict.FAIL
    elif weak and DefectReason.WRONG_DESIGN in reasons:
        # Few matches agree and the structure differs: two independent signs of another design.
        reasons, verdict = (DefectReason.WRONG_DESIGN, *others), Verdict.FAIL
    elif weak:
        # An alignment we don't fully trust: never auto-pass it, never auto-fail on its differences.
        reasons, verdict = (*others, DefectReason.WRONG_DESIGN), Verdict.REVIEW

    normalised = defect / local_thr
    worst = _worst_region(components, normalised, shift_px, reasons, (height, width))
    heatmap = _heatmap(aligned, normalised, components, valid, preview_long_side)
    measured = {key: float(value) for key, value in scores.items() if math.isfinite(value)}  # absent: not measured
    return InspectionResult(verdict=verdict, reasons=reasons, scores=MappingProxyType(measured), heatmap=heatmap,
                            aligned=aligned, worst_region=worst, registration=registration)


def _design_similarity(photo: np.ndarray, expected: np.ndarray, where: np.ndarray) -> float:
    """Mean SSIM over the inked area, averaged over L*, a* and b*, at quarter scale (structure at ~1 cm).

    The same template with another design shares margins, box edges and text; what differs is what's
    inside, in lightness and in hue, over most of the ink. A defect differs over a few percent of it.
    """
    maps = [_ssim_map(np.ascontiguousarray(photo[:, :, c]), np.ascontiguousarray(expected[:, :, c]))
            for c in range(3)]
    return float(np.mean((maps[0] + maps[1] + maps[2])[where]) / 3) if where.any() else 0.0


def _components(mask: np.ndarray, index: np.ndarray, all_tolerances: list[Tolerances], mm_per_px: float,
                photo_lab: np.ndarray, ref_lab: np.ndarray, substrate_lab: np.ndarray,
                ink_core: np.ndarray) -> list[_Component]:
    """Connected defect components, sized by width, and told apart: missing ink or a blot.

    Missing ink shows the substrate where the file has ink, and all of it within a patch: over text a patch
    is many stroke fragments, so fragments showing the substrate within ~3 mm of each other are taken as
    one, and the patch is missing ink when nearly all the file's ink inside its envelope is gone (a
    rectangle). A splash of light ink shows about the same colour but covers a round share of it.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return []
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    pieces: dict[int, tuple[tuple[int, int, int, int], float]] = {}
    showing = np.zeros(count, bool)
    for i in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[i])
        crop = labels[y:y + h, x:x + w] == i
        size_mm = 2 * float(depth[y:y + h, x:x + w][crop].max()) * mm_per_px
        if size_mm < 0.5:
            continue
        pieces[i] = ((x, y, w, h), size_mm)
        near = float(np.mean(np.linalg.norm(photo_lab[y:y + h, x:x + w][crop] - substrate_lab, axis=1)))
        was = float(np.mean(np.linalg.norm(ref_lab[y:y + h, x:x + w][crop] - substrate_lab, axis=1)))
        showing[i] = near < 0.45 * was and near < 25
    substrate_shows = showing[labels]
    reach = 2 * max(1, round(_PATCH_GAP_MM / mm_per_px)) + 1
    near_each_other = cv2.dilate(substrate_shows.astype(np.uint8), np.ones((reach, reach), np.uint8))
    _, patches = cv2.connectedComponents(near_each_other)
    components: list[_Component] = []
    grouped: dict[int, list[int]] = {}
    for i, (box, size_mm) in pieces.items():
        if showing[i]:
            x, y, _, _ = box
            ys, xs = np.nonzero(labels[y:y + box[3], x:x + box[2]] == i)
            grouped.setdefault(int(patches[y + ys[0], x + xs[0]]), []).append(i)
        else:
            components.append(_component(box, size_mm, DefectReason.INK_BLOT, labels == i, index, all_tolerances))
    for members in grouped.values():
        x0 = min(pieces[i][0][0] for i in members)
        y0 = min(pieces[i][0][1] for i in members)
        x1 = max(pieces[i][0][0] + pieces[i][0][2] for i in members)
        y1 = max(pieces[i][0][1] + pieces[i][0][3] for i in members)
        inner = np.s_[y0 + 2:y1 - 2, x0 + 2:x1 - 2]  # the envelope's rim is the patch's own soft edge
        ink = ink_core[inner]
        lost = np.count_nonzero(substrate_shows[inner] & ink) / max(1, np.count_nonzero(ink))
        if lost >= _MISSING_SHARE and np.count_nonzero(ink) >= 16:
            envelope = (x0, y0, x1 - x0, y1 - y0)
            size_mm = max(max(pieces[i][1] for i in members), min(x1 - x0, y1 - y0) * mm_per_px)
            components.append(_component(envelope, size_mm, DefectReason.MISSING_AREA,
                                         np.isin(labels, members), index, all_tolerances))
        else:
            components.extend(_component(pieces[i][0], pieces[i][1], DefectReason.INK_BLOT, labels == i, index,
                                         all_tolerances) for i in members)
    return components


def _component(box: tuple[int, int, int, int], size_mm: float, reason: DefectReason, pixels: np.ndarray,
               index: np.ndarray, all_tolerances: list[Tolerances]) -> _Component:
    """A judged component: in the zone of its centre, with its severity against that zone's limit."""
    x, y, w, h = box
    zone = int(index[y + h // 2, x + w // 2])
    limit = all_tolerances[zone].missing_mm if reason is DefectReason.MISSING_AREA else all_tolerances[zone].blob_mm
    return _Component(box, size_mm, reason, zone, size_mm / limit, pixels[y:y + h, x:x + w])


def _worst_region(components: list[_Component], normalised: np.ndarray, shift_px: tuple[float, float],
                  reasons: tuple[DefectReason, ...], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box an inspector should zoom into: the worst component, the edge the print moved from, or the
    hottest spot of the defect map."""
    height, width = shape
    if reasons[:1] == (DefectReason.MISREGISTRATION,):
        size = max(8, round(3 * max(abs(shift_px[0]), abs(shift_px[1]))))
        if abs(shift_px[0]) >= abs(shift_px[1]):
            return (0, 0, size, height) if shift_px[0] > 0 else (width - size, 0, size, height)
        return (0, 0, width, size) if shift_px[1] > 0 else (0, height - size, width, size)
    if components:
        x, y, w, h = max(components, key=lambda c: c.severity).box
        grow = max(8, round(0.25 * max(w, h)))
        x0, y0 = max(0, x - grow), max(0, y - grow)
        return x0, y0, min(width, x + w + grow) - x0, min(height, y + h + grow) - y0
    small = cv2.resize(normalised, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    cy, cx = (4 * v + 2 for v in np.unravel_index(int(np.argmax(cv2.GaussianBlur(small, (0, 0), 1.25))), small.shape))
    size = max(16, round(0.15 * max(height, width)))
    x0 = int(np.clip(cx - size // 2, 0, max(0, width - size)))
    y0 = int(np.clip(cy - size // 2, 0, max(0, height - size)))
    return x0, y0, min(size, width), min(size, height)


def _heatmap(aligned: np.ndarray, normalised: np.ndarray, components: list[_Component], valid: np.ndarray,
             long_side: int) -> np.ndarray:
    """The aligned photo tinted by the defect score (turbo: blue calm, red at twice the threshold), defect
    components outlined in magenta, whatever isn't print (off the canvas) greyed."""
    height, width = aligned.shape[:2]
    scale = min(1.0, long_side / max(height, width)) if long_side else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # A picture for a person, usually ~20 % smaller than the working frame: bilinear is enough (INTER_AREA at a
    # fractional ratio cost 3x as much here), and the blend is one uint8 pass (cv2.blendLinear with the
    # per-pixel weight) instead of four full-size float images.
    shrink = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
    level = cv2.resize(normalised, size, interpolation=shrink)
    level = cv2.min(cv2.max(level * np.float32(0.5), 0), 1)
    photo_small = cv2.resize(aligned, size, interpolation=shrink)
    colours = cv2.cvtColor(cv2.applyColorMap(cv2.convertScaleAbs(level, alpha=255), cv2.COLORMAP_TURBO),
                           cv2.COLOR_BGR2RGB)
    alpha = level * np.float32(0.6) + np.float32(0.25)
    out = cv2.blendLinear(photo_small, colours, np.float32(1) - alpha, alpha)
    off_canvas = cv2.resize((~valid).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    if off_canvas.any():
        cv2.copyTo(cv2.convertScaleAbs(out, alpha=0.4, beta=128 * 0.6), off_canvas, out)
    outline = np.zeros((height, width), np.uint8)
    for component in components:
        x, y, w, h = component.box
        outline[y:y + h, x:x + w][component.mask] = 255
    if outline.any():
        outline_small = cv2.resize(outline, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(outline_small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 0, 255), 2)
    return out
