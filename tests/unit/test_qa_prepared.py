"""A print file prepared once (working size, keypoints, L*a*b*, edge map) judges every photo of it exactly as the
file itself does, also after the worker stored it without pickle and another process read it back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adapters.prepared import decode, encode
from core.qa import InspectionError, PreparedReference, Verdict, inspect, prepare_reference
from core.states import DefectReason
from tests.unit.test_qa import DPI, art_centre, blot, design, photograph


def _same(a, b) -> None:
    assert (a.verdict, a.reasons, a.worst_region) == (b.verdict, b.reasons, b.worst_region)
    assert dict(a.scores) == dict(b.scores)
    np.testing.assert_array_equal(a.heatmap, b.heatmap)


def assert_same_preparation(ours: PreparedReference, theirs: PreparedReference) -> None:
    """Every field equal, arrays element for element: the same preparation, wherever it was made."""
    for field in dataclasses.fields(PreparedReference):
        mine, other = getattr(ours, field.name), getattr(theirs, field.name)
        assert np.array_equal(mine, other) if isinstance(mine, np.ndarray) else mine == other, field.name


def test_a_blot_is_judged_the_same_against_the_prepared_file_as_against_the_file():
    # given a print with an 8 mm blot, its photo, and its print file prepared once
    seed = 5
    photo = photograph(blot(design(seed), art_centre(seed), 8), seed=seed)
    prepared = prepare_reference(design(seed))
    # when the photo is judged against the file and against the prepared file
    from_file = inspect(design(seed), photo, dpi=DPI)
    from_prepared = inspect(prepared, photo, dpi=DPI)
    # then both fail it as an ink blot with the same scores, heat-map and region to look at
    assert from_file.verdict == Verdict.FAIL and from_file.reasons[0] is DefectReason.INK_BLOT
    _same(from_file, from_prepared)


def test_a_prepared_file_read_back_from_its_stored_form_judges_a_photo_the_same():
    # given a prepared print file, stored as the QA worker stores it (numpy arrays and plain values, no pickle)
    seed = 3
    prepared = prepare_reference(design(seed))
    for field in dataclasses.fields(prepared):
        value = getattr(prepared, field.name)
        assert isinstance(value, np.ndarray | int | float | str | tuple), (field.name, type(value))
    back = decode(PreparedReference, encode(prepared))
    # when a good print's photo is judged against what was read back
    photo = photograph(design(seed), seed=seed)
    # then it passes, exactly as against the prepared file it came from
    result = inspect(back, photo, dpi=DPI)
    assert result.verdict == Verdict.PASS
    _same(inspect(prepared, photo, dpi=DPI), result)


def test_a_file_prepared_on_another_substrate_is_refused_rather_than_misjudged():
    prepared = prepare_reference(design(4), substrate=(20, 20, 20))
    with pytest.raises(InspectionError, match="another substrate"):
        inspect(prepared, photograph(design(4), seed=4), dpi=DPI)
