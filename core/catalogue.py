"""Catalogue values: variants, their pinned template versions, and the artwork maths intake needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from core.states import PrintMethod


@dataclass(frozen=True, slots=True, kw_only=True)
class TextSlot:
    name: str
    max_chars: int
    charset: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateSpec:
    """One version of a template; `spec` keeps the whole stored document for the renderer."""

    key: str
    version: int
    dpi: int
    print_area_in: tuple[float, float]
    min_effective_dpi: float
    artwork_box_in: tuple[float, float, float, float]
    fit: str
    text_slots: tuple[TextSlot, ...]
    spec: Mapping[str, Any]

    @classmethod
    def from_spec(cls, key: str, version: int, spec: Mapping[str, Any]) -> TemplateSpec:
        """`spec` is the stored document; each text slot's `charset` is a regex class body."""
        slots = tuple(TextSlot(name=s["name"], max_chars=int(s["max_chars"]), charset=s["charset"])
                      for s in spec.get("texts", ()))
        box = spec["artwork"]["box_in"]
        return cls(key=key, version=version, dpi=int(spec["dpi"]),
                   print_area_in=(float(spec["print_area_in"][0]), float(spec["print_area_in"][1])),
                   min_effective_dpi=float(spec["min_effective_dpi"]),
                   artwork_box_in=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                   fit=spec["artwork"].get("fit", "fit"), text_slots=slots, spec=spec)

    @property
    def print_pixels(self) -> tuple[int, int]:
        return round(self.print_area_in[0] * self.dpi), round(self.print_area_in[1] * self.dpi)

    @property
    def max_artwork_pixels(self) -> int:
        """Uploads bigger than this are refused from the header: four times the print file is plenty."""
        width, height = self.print_pixels
        return 4 * width * height

    def effective_dpi(self, width_px: int, height_px: int) -> float:
        """The artwork's resolution once placed in its box.

        "fit" scales the artwork until its first side meets the box, so the side with the most pixels per
        inch of box decides (max); "fill" scales until both sides cover it, so the scarcer side decides (min).
        """
        box_w, box_h = self.artwork_box_in[2], self.artwork_box_in[3]
        per_axis = (width_px / box_w, height_px / box_h)
        return min(per_axis) if self.fit == "fill" else max(per_axis)

    def slot(self, name: str) -> TextSlot | None:
        return next((s for s in self.text_slots if s.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    sku: str
    product_id: str
    product_type: str
    print_method: PrintMethod
    price_cents: int
    template: TemplateSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtworkInfo:
    id: str
    width: int
    height: int
    sha256: str
