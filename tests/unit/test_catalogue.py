"""Effective DPI: what an artwork really prints at once placed in its template's box."""

from __future__ import annotations

from core.catalogue import TemplateSpec


def spec(fit: str) -> TemplateSpec:
    return TemplateSpec.from_spec("t", 1, {"dpi": 300, "print_area_in": [10, 10], "min_effective_dpi": 150,
                                           "artwork": {"box_in": [0, 0, 10, 10], "fit": fit}, "texts": []})


def test_a_wide_strip_filling_a_square_box_prints_at_the_resolution_of_its_short_side():
    # 3000×100 px stretched to cover 10×10 in: the 100 px side spans 10 in → 10 DPI
    assert spec("fill").effective_dpi(3000, 100) == 10


def test_a_wide_strip_fitted_into_a_square_box_prints_at_the_resolution_of_its_long_side():
    # 3000×100 px fitted inside 10×10 in: the 3000 px side spans 10 in → 300 DPI (the strip is 1/3 in tall)
    assert spec("fit").effective_dpi(3000, 100) == 300


def test_a_square_artwork_prints_at_the_same_resolution_either_way():
    assert spec("fit").effective_dpi(2000, 2000) == spec("fill").effective_dpi(2000, 2000) == 200
