"""Production decisions, pure: which partner prints a job, how urgent it is, and how jobs batch and queue.

Nothing here reads a clock, a random source, the environment or the database: callers pass `now`, the
weights and policies (versioned data that ops managers edit) and plain views of partners and jobs, so the
worker, the scheduler and the dashboard's what-if preview all get the same answer from the same inputs.

All datetimes must be timezone-aware (UTC in practice); mixing naive and aware ones raises `TypeError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import groupby
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from core.commands import Address
from core.errors import PressroomError
from core.states import ShippingSpeed

_EMPTY: Mapping[Any, Any] = MappingProxyType({})
_SCORE_DIGITS = 9  # routing scores are rounded so float noise never beats the tie-break by partner id


class BatchingError(PressroomError):
    """A manual batch operation that would break the batching rules (merge across groups, an empty part…)."""

    code = "batching_refused"


class ProductionSettingsInvalid(PressroomError):
    """Routing weights, priority weights or a batch policy that cannot work as entered."""

    code = "production_settings_invalid"


def _frozen(mapping: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


def _check_non_negative(what: str, values: Mapping[str, float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise ProductionSettingsInvalid(
                f"The {what} '{name}' must be a number of zero or more (it is {value}).")


# ---- where a parcel goes -----------------------------------------------------------------------------

# Representative points (lat, lon), good to a few hundred km: the geographic centre, or the main population
# area where the centre would mislead (Canada, Alaska, British Columbia, the Australian states…). They rank
# partners by distance; they are not a geocoder, and a caller that has real coordinates passes them instead.
_COUNTRY_POINTS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "US": (38.5, -92.0), "CA": (46.0, -78.0), "MX": (21.5, -100.5), "PR": (18.2, -66.5),
    "GB": (52.8, -1.6), "IE": (53.3, -7.7), "DE": (51.2, 10.4), "FR": (46.6, 2.4), "NL": (52.2, 5.5),
    "BE": (50.6, 4.6), "LU": (49.8, 6.1), "AT": (47.6, 14.1), "CH": (46.8, 8.2), "IT": (42.8, 12.5),
    "ES": (40.2, -3.7), "PT": (39.6, -8.0), "DK": (56.0, 10.0), "SE": (59.5, 16.0), "NO": (60.5, 9.0),
    "FI": (61.5, 25.0), "IS": (64.1, -21.9), "PL": (52.1, 19.4), "CZ": (49.8, 15.5), "SK": (48.7, 19.7),
    "HU": (47.2, 19.5), "SI": (46.1, 14.8), "HR": (45.1, 15.2), "RO": (45.9, 24.9), "BG": (42.7, 25.5),
    "GR": (39.1, 22.0), "EE": (58.7, 25.5), "LV": (56.9, 24.6), "LT": (55.2, 23.9), "UA": (49.0, 31.4),
    "TR": (39.0, 35.0), "RU": (55.0, 45.0), "IL": (31.4, 35.0), "AE": (24.4, 54.4), "IN": (22.0, 79.0),
    "CN": (32.0, 113.0), "HK": (22.35, 114.15), "TW": (23.7, 121.0), "JP": (36.2, 138.3),
    "KR": (36.5, 127.8), "SG": (1.35, 103.82), "AU": (-33.5, 147.5), "NZ": (-39.5, 175.0),
    "ZA": (-28.0, 26.0), "BR": (-17.0, -46.0), "AR": (-34.5, -61.0), "CL": (-33.5, -71.0),
})

# (country, code) → (full name, lat, lon) for the countries whose partners and customers we see most.
_SUBDIVISIONS: Mapping[tuple[str, str], tuple[str, float, float]] = MappingProxyType({
    ("US", "AL"): ("Alabama", 32.8, -86.8), ("US", "AK"): ("Alaska", 61.4, -149.5),
    ("US", "AZ"): ("Arizona", 34.3, -111.7), ("US", "AR"): ("Arkansas", 34.9, -92.4),
    ("US", "CA"): ("California", 37.2, -119.5), ("US", "CO"): ("Colorado", 39.0, -105.5),
    ("US", "CT"): ("Connecticut", 41.6, -72.7), ("US", "DE"): ("Delaware", 39.0, -75.5),
    ("US", "DC"): ("District of Columbia", 38.9, -77.0), ("US", "FL"): ("Florida", 28.6, -82.4),
    ("US", "GA"): ("Georgia", 32.7, -83.4), ("US", "HI"): ("Hawaii", 21.0, -157.0),
    ("US", "ID"): ("Idaho", 44.4, -114.6), ("US", "IL"): ("Illinois", 40.0, -89.2),
    ("US", "IN"): ("Indiana", 39.9, -86.3), ("US", "IA"): ("Iowa", 42.1, -93.5),
    ("US", "KS"): ("Kansas", 38.5, -98.4), ("US", "KY"): ("Kentucky", 37.5, -85.3),
    ("US", "LA"): ("Louisiana", 31.1, -92.0), ("US", "ME"): ("Maine", 45.4, -69.2),
    ("US", "MD"): ("Maryland", 39.0, -76.8), ("US", "MA"): ("Massachusetts", 42.3, -71.8),
    ("US", "MI"): ("Michigan", 44.3, -85.4), ("US", "MN"): ("Minnesota", 46.3, -94.3),
    ("US", "MS"): ("Mississippi", 32.7, -89.7), ("US", "MO"): ("Missouri", 38.4, -92.5),
    ("US", "MT"): ("Montana", 47.0, -109.6), ("US", "NE"): ("Nebraska", 41.5, -99.8),
    ("US", "NV"): ("Nevada", 39.3, -116.6), ("US", "NH"): ("New Hampshire", 43.7, -71.6),
    ("US", "NJ"): ("New Jersey", 40.2, -74.7), ("US", "NM"): ("New Mexico", 34.4, -106.1),
    ("US", "NY"): ("New York", 42.9, -75.5), ("US", "NC"): ("North Carolina", 35.6, -79.4),
    ("US", "ND"): ("North Dakota", 47.5, -100.5), ("US", "OH"): ("Ohio", 40.3, -82.8),
    ("US", "OK"): ("Oklahoma", 35.6, -97.5), ("US", "OR"): ("Oregon", 43.9, -120.6),
    ("US", "PA"): ("Pennsylvania", 40.9, -77.8), ("US", "RI"): ("Rhode Island", 41.7, -71.5),
    ("US", "SC"): ("South Carolina", 33.9, -80.9), ("US", "SD"): ("South Dakota", 44.4, -100.2),
    ("US", "TN"): ("Tennessee", 35.9, -86.4), ("US", "TX"): ("Texas", 31.5, -99.3),
    ("US", "UT"): ("Utah", 39.3, -111.7), ("US", "VT"): ("Vermont", 44.1, -72.7),
    ("US", "VA"): ("Virginia", 37.5, -78.9), ("US", "WA"): ("Washington", 47.4, -120.5),
    ("US", "WV"): ("West Virginia", 38.6, -80.6), ("US", "WI"): ("Wisconsin", 44.6, -89.9),
    ("US", "WY"): ("Wyoming", 43.0, -107.5), ("US", "PR"): ("Puerto Rico", 18.2, -66.5),
    ("CA", "AB"): ("Alberta", 52.5, -114.0), ("CA", "BC"): ("British Columbia", 50.0, -122.5),
    ("CA", "MB"): ("Manitoba", 50.5, -97.5), ("CA", "NB"): ("New Brunswick", 46.5, -66.2),
    ("CA", "NL"): ("Newfoundland and Labrador", 48.3, -54.5), ("CA", "NS"): ("Nova Scotia", 45.0, -63.0),
    ("CA", "NT"): ("Northwest Territories", 62.5, -114.4), ("CA", "NU"): ("Nunavut", 63.7, -68.5),
    ("CA", "ON"): ("Ontario", 44.0, -79.5), ("CA", "PE"): ("Prince Edward Island", 46.3, -63.2),
    ("CA", "QC"): ("Quebec", 46.5, -72.5), ("CA", "SK"): ("Saskatchewan", 51.5, -106.0),
    ("CA", "YT"): ("Yukon", 60.7, -135.0),
    ("AU", "NSW"): ("New South Wales", -33.3, 150.0), ("AU", "VIC"): ("Victoria", -37.5, 144.5),
    ("AU", "QLD"): ("Queensland", -26.0, 151.5), ("AU", "WA"): ("Western Australia", -31.5, 116.5),
    ("AU", "SA"): ("South Australia", -34.3, 138.6), ("AU", "TAS"): ("Tasmania", -42.0, 146.6),
    ("AU", "ACT"): ("Australian Capital Territory", -35.3, 149.1),
    ("AU", "NT"): ("Northern Territory", -13.5, 131.5),
})
_SUBDIVISION_BY_NAME: Mapping[tuple[str, str], str] = MappingProxyType(
    {(country, name.casefold()): code for (country, code), (name, _, _) in _SUBDIVISIONS.items()})

# The first digit of a US ZIP code is a group of states; these are rough middles of each group.
_US_ZIP_POINTS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "0": (42.0, -72.5), "1": (41.5, -76.0), "2": (37.0, -78.5), "3": (32.0, -84.5), "4": (40.5, -85.0),
    "5": (44.5, -94.0), "6": (39.5, -93.0), "7": (32.0, -95.5), "8": (38.5, -110.0), "9": (38.5, -121.0),
})
# The first letter of a Canadian postal code names the province.
_CA_POSTAL_PROVINCE: Mapping[str, str] = MappingProxyType({
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON", "L": "ON",
    "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC", "X": "NT", "Y": "YT",
})
# The first digit of an Australian postcode names the state (ACT's ranges are checked first).
_AU_POSTCODE_STATE: Mapping[str, str] = MappingProxyType({
    "0": "NT", "2": "NSW", "3": "VIC", "4": "QLD", "5": "SA", "6": "WA", "7": "TAS",
})

_EU_ZONE = frozenset({
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT",
    "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
})
# One customs area: parcels between these countries cross no customs border.
_EU_CUSTOMS_UNION = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU",
    "LV", "MC", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
})
_APAC_ZONE = frozenset({"AU", "NZ", "JP", "KR", "CN", "HK", "TW", "SG", "MY", "TH", "ID", "PH", "VN", "IN"})
_US_WEST_OF_LON = -100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where a parcel goes, as far as routing needs it: country, postal code, state or province.

    `coordinates` is an approximate point from built-in tables, not a geocoder: explicit `lat`/`lon` win;
    then the state/province (code or full name, US/CA/AU), then the postal code's first character (US/CA/AU),
    then the country. Good to a few hundred km, which is plenty to rank partners on different continents or
    coasts; two partners in the same metro area are separated by the other routing scores instead.
    """

    country: str
    postal_code: str = ""
    region: str = ""
    lat: float | None = None
    lon: float | None = None

    @classmethod
    def from_address(cls, address: Address) -> Destination:
        """The routing-relevant part of an address (no name or street: those are PII routing never needs)."""
        return cls(country=address.country, postal_code=address.postal_code, region=address.region)

    @property
    def coordinates(self) -> tuple[float, float] | None:
        """(lat, lon) in degrees, or None when the country is not in the table."""
        located = self._locate()
        return None if located is None else (located[0], located[1])

    @property
    def located_by(self) -> str:
        """How `coordinates` was found, for the routing explanation: "state/province NY", "country DE"…"""
        located = self._locate()
        return "unknown" if located is None else located[2]

    def _locate(self) -> tuple[float, float, str] | None:
        if self.lat is not None and self.lon is not None:
            return self.lat, self.lon, "given coordinates"
        country = self.country.strip().upper()
        code = _subdivision_code(country, self.region) or _subdivision_from_postal(country, self.postal_code)
        if code is not None:
            _, lat, lon = _SUBDIVISIONS[(country, code)]
            return lat, lon, f"state/province {code}"
        postal = self.postal_code.strip()
        if country == "US" and postal[:1] in _US_ZIP_POINTS:
            lat, lon = _US_ZIP_POINTS[postal[:1]]
            return lat, lon, f"ZIP area {postal[:1]}"
        if country in _COUNTRY_POINTS:
            lat, lon = _COUNTRY_POINTS[country]
            return lat, lon, f"country {country}"
        return None


def _subdivision_code(country: str, region: str) -> str | None:
    region = region.strip()
    if not region:
        return None
    if (country, region.upper()) in _SUBDIVISIONS:
        return region.upper()
    return _SUBDIVISION_BY_NAME.get((country, region.casefold()))


def _subdivision_from_postal(country: str, postal_code: str) -> str | None:
    postal = postal_code.strip().upper()
    if not postal:
        return None
    if country == "CA":
        return _CA_POSTAL_PROVINCE.get(postal[0])
    if country == "AU" and postal.isdigit() and len(postal) == 4:
        number = int(postal)
        if 200 <= number <= 299 or 2600 <= number <= 2618 or 2900 <= number <= 2920:
            return "ACT"
        return _AU_POSTCODE_STATE.get(postal[0])
    return None


def destination_zone(destination: Destination) -> str:
    """The coarse market a parcel ships into — the "destination region" that batches are grouped by.

    The same words as the partners' and storefront's regions: "us-east", "us-west", "ca", "uk", "eu",
    "apac"; any other country is its own zone (its ISO code in lower case).
    """
    country = destination.country.strip().upper()
    if country == "US":
        point = destination.coordinates
        return "us-west" if point is not None and point[1] <= _US_WEST_OF_LON else "us-east"
    if country == "CA":
        return "ca"
    if country == "GB":
        return "uk"
    if country in _EU_ZONE:
        return "eu"
    if country in _APAC_ZONE:
        return "apac"
    return country.lower()


def crosses_customs_border(from_country: str, to_country: str) -> bool:
    """True when a parcel between the two countries goes through customs (the EU counts as one area)."""
    a, b = from_country.strip().upper(), to_country.strip().upper()
    return a != b and not (a in _EU_CUSTOMS_UNION and b in _EU_CUSTOMS_UNION)


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance between two (lat, lon) points in degrees, on a sphere of the Earth's mean radius."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


# ---- routing -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerView:
    """What routing knows about one print partner right now (catalogue facts plus live stock, load, quality).

    Args:
        capacity_per_hour: units per hour per print method.
        free_stock: blanks per SKU the partner can still print on (after reservations).
        load_units: units per print method already in flight or queued at the partner.
        defect_rate: share of recent prints that failed QA, 0..1.
    """

    id: str
    region: str
    country: str
    lat: float
    lon: float
    print_methods: frozenset[str]
    capacity_per_hour: Mapping[str, float]
    free_stock: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    load_units: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    defect_rate: float = 0.0
    active: bool = True

    def __post_init__(self) -> None:
        # Copies, so a caller mutating its dicts later cannot change a decision already explained.
        object.__setattr__(self, "print_methods", frozenset(str(m) for m in self.print_methods))
        object.__setattr__(self, "capacity_per_hour", _frozen(self.capacity_per_hour))
        object.__setattr__(self, "free_stock", _frozen(self.free_stock))
        object.__setattr__(self, "load_units", _frozen(self.load_units))


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingWeights:
    """How much each consideration counts when choosing a partner; ops managers edit these.

    Every consideration is first scored 0..1 (1 = best) on a fixed scale (not relative to the other
    candidates, so adding a partner never reorders the rest), and a partner's score is the weighted mean:
    also 0..1, and only the weights' ratios matter. Defaults (sum 1.0):

    - distance 0.55: the design routes to the nearest partner first; transit time and postage follow distance.
      Scored `distance_half_km / (distance_half_km + km)`: 1 next door, 0.5 at 1,500 km, ~0.1 across an ocean,
      so a coast-to-coast difference counts a lot and a 50 km difference almost nothing.
    - capacity 0.15: free share of `capacity_window_hours` (a shift) of the method's capacity, after the units
      already queued there. A queue costs hours where a far partner costs days of transit, so for a New York
      order a fully booked Columbus (770 km) still beats an idle Los Angeles (3,900 km).
    - defects 0.2: `1 - defect_rate / defect_rate_ceiling`, 0 at a 10 % defect rate or worse. A reprint costs
      days, so a bad record weighs a little more than a full queue; alone, a 9 % rate in Columbus still does
      not send that New York order west, but full *and* misprinting does.
    - stock 0.1: blanks left after this job, `left / (left + stock_half_units)`; a tiebreaker that steers work
      away from a partner about to run out (too little stock excludes a partner outright).

    `customs_border_km` (default 1,000): a parcel that crosses a customs border (the EU is one area) is
    scored as if it travelled this much further — duties, paperwork and a day or more at customs. Without
    it, New York orders would go to Toronto (550 km) rather than Columbus (760 km). 0 turns it off.
    """

    distance: float = 0.55
    stock: float = 0.1
    capacity: float = 0.15
    defects: float = 0.2
    distance_half_km: float = 1_500.0
    stock_half_units: float = 25.0
    capacity_window_hours: float = 8.0
    defect_rate_ceiling: float = 0.10
    customs_border_km: float = 1_000.0

    def __post_init__(self) -> None:
        _check_non_negative("customs border distance", {"customs_border_km": self.customs_border_km})
        _check_non_negative("routing weight", {"distance": self.distance, "stock": self.stock,
                                               "capacity": self.capacity, "defects": self.defects})
        if self.distance + self.stock + self.capacity + self.defects <= 0:
            raise ProductionSettingsInvalid("Set at least one routing weight above zero.")
        scales = {"distance_half_km": self.distance_half_km, "stock_half_units": self.stock_half_units,
                  "capacity_window_hours": self.capacity_window_hours,
                  "defect_rate_ceiling": self.defect_rate_ceiling}
        _check_non_negative("routing scale", scales)
        for name, value in scales.items():
            if value == 0:
                raise ProductionSettingsInvalid(f"The routing scale '{name}' must be above zero.")


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingCandidate:
    """One partner's assessment: excluded with reasons, or scored with its components and reasons."""

    partner_id: str
    eligible: bool
    score: float | None
    components: Mapping[str, float]
    reasons: tuple[str, ...]
    distance_km: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"partner_id": self.partner_id, "eligible": self.eligible, "score": self.score,
                "components": dict(self.components), "reasons": list(self.reasons),
                "distance_km": None if self.distance_km is None else round(self.distance_km, 1)}


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingDecision:
    """The chosen partner (None when nobody can print it) and every candidate's score and reasons.

    `candidates` is ranked: eligible partners by score (ties by partner id), then excluded ones by id.
    """

    partner_id: str | None
    sku: str
    quantity: int
    print_method: str
    destination_located_by: str
    candidates: tuple[RoutingCandidate, ...]

    @property
    def scores(self) -> Mapping[str, float]:
        """Partner id → score, for the eligible partners."""
        return MappingProxyType({c.partner_id: c.score for c in self.candidates if c.score is not None})

    @property
    def reasons(self) -> Mapping[str, tuple[str, ...]]:
        """Partner id → the reasons shown for it (why it scored as it did, or why it was excluded)."""
        return MappingProxyType({c.partner_id: c.reasons for c in self.candidates})

    def candidate(self, partner_id: str) -> RoutingCandidate:
        return next(c for c in self.candidates if c.partner_id == partner_id)

    @property
    def summary(self) -> str:
        """One sentence for the order timeline."""
        what = f"{self.quantity} × {self.sku} ({self.print_method})"
        if self.partner_id is None:
            why = "; ".join(f"{c.partner_id}: {', '.join(c.reasons)}" for c in self.candidates)
            return f"No partner can print {what}" + (f" — {why}." if why else ": no partners are configured.")
        chosen = self.candidate(self.partner_id)
        return f"{what} routed to {self.partner_id}: {', '.join(chosen.reasons)}."

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready payload for the timeline event."""
        return {"partner_id": self.partner_id, "sku": self.sku, "quantity": self.quantity,
                "print_method": self.print_method, "destination_located_by": self.destination_located_by,
                "summary": self.summary, "candidates": [c.as_dict() for c in self.candidates]}


def route(*, sku: str, quantity: int, print_method: str, destination: Destination,
          partners: Iterable[PartnerView], weights: RoutingWeights,
          exclude: frozenset[str] = frozenset()) -> RoutingDecision:
    """Choose the partner for `quantity` units of `sku` printed by `print_method`, and say why.

    A partner is excluded when it is inactive, in `exclude` (a reprint routed away after repeated failures),
    does not offer the method, has no capacity for it, or has fewer blanks than `quantity`. The rest are
    scored (see `RoutingWeights`); the highest wins, equal scores go to the smallest partner id.
    """
    method = str(print_method)
    point = destination.coordinates
    eligible: list[RoutingCandidate] = []
    excluded: list[RoutingCandidate] = []
    for partner in partners:
        why_not = _exclusions(partner, sku=sku, quantity=quantity, method=method, exclude=exclude)
        if why_not:
            excluded.append(RoutingCandidate(partner_id=partner.id, eligible=False, score=None,
                                             components=_EMPTY, reasons=why_not))
        else:
            eligible.append(_assess(partner, sku=sku, quantity=quantity, method=method, point=point,
                                    country=destination.country, weights=weights))
    eligible.sort(key=lambda c: (-(c.score or 0.0), c.partner_id))
    excluded.sort(key=lambda c: c.partner_id)
    return RoutingDecision(partner_id=eligible[0].partner_id if eligible else None, sku=sku, quantity=quantity,
                           print_method=method, destination_located_by=destination.located_by,
                           candidates=tuple(eligible + excluded))


def _exclusions(partner: PartnerView, *, sku: str, quantity: int, method: str,
                exclude: frozenset[str]) -> tuple[str, ...]:
    reasons: list[str] = []
    if not partner.active:
        reasons.append("inactive")
    if partner.id in exclude:
        reasons.append("excluded for this job")
    if method not in partner.print_methods:
        reasons.append(f"doesn't do {method}")
    elif partner.capacity_per_hour.get(method, 0) <= 0:
        reasons.append(f"no {method} capacity")
    stock = partner.free_stock.get(sku, 0)
    if stock < quantity:
        reasons.append(f"only {stock:,} in stock" + (f", {quantity:,} needed" if quantity > 1 else ""))
    return tuple(reasons)


def _assess(partner: PartnerView, *, sku: str, quantity: int, method: str, point: tuple[float, float] | None,
            country: str, weights: RoutingWeights) -> RoutingCandidate:
    reasons: list[str] = []
    if point is None:
        km = None
        distance = 0.0  # the same for every partner, so it cannot tip the choice
        reasons.append(f"distance unknown (no location for country {country!r})")
    else:
        km = great_circle_km((partner.lat, partner.lon), point)
        counted_km = km
        reasons.append(f"{km:,.0f} km from destination")
        if weights.customs_border_km and crosses_customs_border(partner.country, country):
            counted_km += weights.customs_border_km
            reasons.append(f"crosses a customs border ({partner.country.upper()} → {country.strip().upper()}, "
                           f"counted as {weights.customs_border_km:,.0f} km more)")
        distance = weights.distance_half_km / (weights.distance_half_km + counted_km)

    stock = partner.free_stock.get(sku, 0)
    left = max(0, stock - quantity)
    stock_score = left / (left + weights.stock_half_units)
    reasons.append(f"stock {stock:,}")

    window_units = partner.capacity_per_hour[method] * weights.capacity_window_hours
    free = max(0.0, 1.0 - partner.load_units.get(method, 0) / window_units)
    reasons.append(f"capacity {free * 100:.0f} % free")

    defects = max(0.0, 1.0 - partner.defect_rate / weights.defect_rate_ceiling)
    reasons.append(f"defect rate {partner.defect_rate * 100:.1f} %")

    components = {"distance": distance, "stock": stock_score, "capacity": free, "defects": defects}
    weight_of = {"distance": weights.distance, "stock": weights.stock, "capacity": weights.capacity,
                 "defects": weights.defects}
    score = sum(weight_of[name] * value for name, value in components.items()) / sum(weight_of.values())
    score = round(score, _SCORE_DIGITS)
    return RoutingCandidate(partner_id=partner.id, eligible=True, score=score,
                            components=MappingProxyType(components), reasons=tuple(reasons), distance_km=km)


# ---- priority ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityWeights:
    """Points each factor adds to a job's priority; ops managers edit these.

    Defaults, in points (the score has no unit; only the comparison between jobs matters):

    - express 10 and age_per_hour 0.5: an express order goes ahead of standard ones placed up to 20 hours
      before it. Age keeps growing without a cap, so no standard order starves: after ~20 h of waiting it
      overtakes fresh express orders again. That is the trade-off: express customers paid for speed, but a
      day-old standard order is close to missing its own promise.
    - reprint_boost 12 per extra attempt: a reprint has already lost days, so it beats a fresh express
      order; an express reprint beats both.
    - deadline 8: rises linearly from 0 to 8 over a calendar deadline's window (default a week) before its
      ship-by time, then drops to 0 once it has passed (the parcel can no longer make it).
    - high_value 3 at 15,000 cents or more: big orders go a little ahead, but only ~6 hours' worth, so value
      never outranks speed that a customer paid for.
    """

    express: float = 10.0
    high_value: float = 3.0
    high_value_threshold_cents: int = 15_000
    deadline: float = 8.0
    age_per_hour: float = 0.5
    reprint_boost: float = 12.0

    def __post_init__(self) -> None:
        # Negative points would turn "express goes first" or "older goes first" upside down.
        _check_non_negative("priority weight", {
            "express": self.express, "high_value": self.high_value,
            "high_value_threshold_cents": self.high_value_threshold_cents, "deadline": self.deadline,
            "age_per_hour": self.age_per_hour, "reprint_boost": self.reprint_boost})


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """A date customers plan around: parcels must ship by `ship_by`; urgency builds over `window` before it."""

    name: str
    ship_by: datetime
    window: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ProductionSettingsInvalid(f"The run-up to {self.name} must be longer than zero.")

    def urgency(self, now: datetime) -> float:
        """0 before the window opens and after ship-by; rising linearly to 1 at the ship-by moment."""
        if now > self.ship_by:
            return 0.0
        left = self.ship_by - now
        return max(0.0, 1.0 - left / self.window)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """The holidays and other deadlines that make orders urgent (e.g. Christmas: ship by 18 December)."""

    deadlines: tuple[Deadline, ...] = ()

    def most_urgent(self, now: datetime) -> tuple[Deadline, float] | None:
        """The deadline pressing hardest right now and its urgency (0..1), or None when none is pressing.

        Usually the nearest ship-by, but a later deadline with a longer run-up can press harder sooner.
        Ties go to the earlier ship-by, then the name.
        """
        pressing = [(d, d.urgency(now)) for d in self.deadlines]
        pressing = [item for item in pressing if item[1] > 0]
        return min(pressing, key=lambda item: (-item[1], item[0].ship_by, item[0].name), default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityScore:
    """A priority with its parts, so the dashboard can say why a job is where it is in the queue."""

    score: float
    components: Mapping[str, float]
    reasons: tuple[str, ...]
    deadline: Deadline | None = None


def priority_of(*, shipping_speed: ShippingSpeed | str, order_value_cents: int, placed_at: datetime,
                attempt: int, now: datetime, weights: PriorityWeights,
                calendar: Calendar = Calendar()) -> PriorityScore:
    """How urgent a job is: express, order value, the nearest calendar deadline, age and reprint attempts.

    Deterministic, and monotone with everything else equal: express ≥ standard, older ≥ newer, a reprint ≥
    a first attempt, nearer to an upcoming ship-by ≥ further from it, higher value ≥ lower.
    """
    express = weights.express if ShippingSpeed(shipping_speed) is ShippingSpeed.EXPRESS else 0.0
    high_value = weights.high_value if order_value_cents >= weights.high_value_threshold_cents else 0.0
    deadline, urgency = calendar.most_urgent(now) or (None, 0.0)
    age_hours = max(0.0, (now - placed_at) / timedelta(hours=1))
    reprints = max(0, attempt - 1)
    components = {
        "express": express,
        "high_value": high_value,
        "deadline": weights.deadline * urgency,
        "age": weights.age_per_hour * age_hours,
        "reprint": weights.reprint_boost * reprints,
    }
    reasons = []
    if express:
        reasons.append(f"express shipping +{express:g}")
    if high_value:
        reasons.append(f"order value ≥ {weights.high_value_threshold_cents / 100:,.2f} +{high_value:g}")
    if deadline is not None and components["deadline"]:
        hours_left = (deadline.ship_by - now) / timedelta(hours=1)
        reasons.append(f"{deadline.name} ship-by in {hours_left:,.0f} h +{components['deadline']:.1f}")
    reasons.append(f"waiting {age_hours:,.1f} h +{components['age']:.1f}")
    if reprints:
        reasons.append(f"reprint (attempt {attempt}) +{components['reprint']:g}")
    return PriorityScore(score=sum(components.values()), components=MappingProxyType(components),
                         reasons=tuple(reasons), deadline=deadline)


# ---- dynamic batching --------------------------------------------------------------------------------


class ReleaseReason(StrEnum):
    """Why a batch is due for release automatically."""

    SIZE = "size"
    AGE = "age"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """What batching knows about one print job that is ready to go to its partner."""

    id: str
    order_id: str
    partner_id: str
    product_type: str
    print_method: str
    region: str
    priority: float
    ready_at: datetime


class GroupKey(NamedTuple):
    """Jobs that can share a batch: same partner, product type, print method and destination region."""

    partner_id: str
    product_type: str
    print_method: str
    region: str

    @property
    def label(self) -> str:
        return " · ".join(str(part) for part in self)


def group_key(job: JobView) -> GroupKey:
    """The batching group of a job (partner × product type × print method × destination region)."""
    return GroupKey(job.partner_id, job.product_type, str(job.print_method), job.region)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPolicy:
    """How big batches get and how long a job may wait for one; ops managers edit these.

    Defaults: a batch aims at 30 minutes of the partner's capacity for the method (60 DTG shirts at a
    120/h partner), never fewer than 5 or more than 100 jobs, and no job waits more than 30 minutes for its
    batch to fill — short against the on-time-start target, long enough for same-kind orders to pool.
    """

    max_wait: timedelta = timedelta(minutes=30)
    min_size: int = 5
    max_size: int = 100
    capacity_window: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.max_wait <= timedelta(0):
            raise ProductionSettingsInvalid("The longest wait for a batch must be more than zero.")
        if self.capacity_window <= timedelta(0):
            raise ProductionSettingsInvalid("The capacity window for batch sizes must be more than zero.")
        if not 1 <= self.min_size <= self.max_size:
            raise ProductionSettingsInvalid(
                f"Batch sizes need 1 ≤ smallest ≤ largest (they are {self.min_size} and {self.max_size}).")

    def target_size(self, capacity_per_hour: float) -> int:
        """Capacity × window in whole jobs, clamped to [min_size, max_size]."""
        units = max(0.0, capacity_per_hour) * (self.capacity_window / timedelta(hours=1))
        return min(self.max_size, max(self.min_size, math.floor(units)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposedBatch:
    """A batch as the batcher (or an ops manager's edit) proposes it, before or after it is stored.

    `jobs` are in queue order: priority high to low, then longest waiting, then id. `as_of` is the moment
    the proposal was made; `oldest_wait` is measured at it.
    """

    key: GroupKey
    jobs: tuple[JobView, ...]
    target_size: int
    as_of: datetime
    release_reason: ReleaseReason | None
    priority_override: float | None = None

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(job.id for job in self.jobs)

    @property
    def size(self) -> int:
        return len(self.jobs)

    @property
    def oldest_ready_at(self) -> datetime:
        return min(job.ready_at for job in self.jobs)

    @property
    def oldest_wait(self) -> timedelta:
        return max(timedelta(0), self.as_of - self.oldest_ready_at)

    @property
    def release_due(self) -> bool:
        return self.release_reason is not None

    @property
    def priority(self) -> float:
        """The ops manager's priority if one was set, else the most urgent job's."""
        if self.priority_override is not None:
            return self.priority_override
        return max(job.priority for job in self.jobs)


def should_release(size: int, target: int, oldest_wait: timedelta, policy: BatchPolicy) -> ReleaseReason | None:
    """Release a batch when it is full ("size") or its oldest job has waited long enough ("age")."""
    if size <= 0:
        return None
    if size >= target:
        return ReleaseReason.SIZE
    if oldest_wait >= policy.max_wait:
        return ReleaseReason.AGE
    return None


def _queue_order(job: JobView) -> tuple[float, datetime, str]:
    return -job.priority, job.ready_at, job.id


def _proposal(key: GroupKey, jobs: Sequence[JobView], *, target: int, as_of: datetime, policy: BatchPolicy,
              priority_override: float | None = None) -> ProposedBatch:
    oldest_wait = max(timedelta(0), as_of - min(job.ready_at for job in jobs))
    return ProposedBatch(key=key, jobs=tuple(jobs), target_size=target, as_of=as_of,
                         release_reason=should_release(len(jobs), target, oldest_wait, policy),
                         priority_override=priority_override)


def _capacity(partners_capacity: Mapping[str, Mapping[str, float]], partner_id: str, method: str) -> float:
    return float(partners_capacity.get(partner_id, _EMPTY).get(method, 0.0))


def propose_batches(jobs: Iterable[JobView], *, partners_capacity: Mapping[str, Mapping[str, float]],
                    policy: BatchPolicy, now: datetime) -> list[ProposedBatch]:
    """Group ready jobs as the batcher would, cut each group into batches of its target size, and mark
    the ones due for release.

    Args:
        partners_capacity: partner id → print method → units per hour (live); a missing entry counts as 0,
            which gives the policy's smallest batch size.

    Returns:
        Proposals ordered by group key, and within a group from the most urgent jobs to the least; every
        proposal but a group's last holds exactly the target size.

    Raises:
        BatchingError: the same job id appears twice.
    """
    ordered = sorted(jobs, key=lambda job: (group_key(job), _queue_order(job)))
    seen: set[str] = set()
    for job in ordered:
        if job.id in seen:
            raise BatchingError(f"Job {job.id} is listed twice; each job can be in only one batch.")
        seen.add(job.id)
    proposals: list[ProposedBatch] = []
    for key, members in groupby(ordered, key=group_key):
        group = list(members)
        target = policy.target_size(_capacity(partners_capacity, key.partner_id, key.print_method))
        for start in range(0, len(group), target):
            proposals.append(_proposal(key, group[start:start + target], target=target, as_of=now, policy=policy))
    return proposals


def split(batch: ProposedBatch, at_index: int, *, policy: BatchPolicy) -> tuple[ProposedBatch, ProposedBatch]:
    """Cut a batch in two before position `at_index`; both parts keep the group, target and priority.

    Raises:
        BatchingError: a part would be empty.
    """
    if not 1 <= at_index < batch.size:
        raise BatchingError(
            f"A batch of {batch.size} jobs can only be split between its first and last job "
            f"(position 1 to {batch.size - 1}); position {at_index} would leave an empty batch.")
    def part(jobs: Sequence[JobView]) -> ProposedBatch:
        return _proposal(batch.key, jobs, target=batch.target_size, as_of=batch.as_of, policy=policy,
                         priority_override=batch.priority_override)

    return part(batch.jobs[:at_index]), part(batch.jobs[at_index:])


def merge(a: ProposedBatch, b: ProposedBatch, *, policy: BatchPolicy) -> ProposedBatch:
    """Join two batches of the same group into one, its jobs back in queue order.

    Raises:
        BatchingError: the batches belong to different groups, share jobs, or together exceed the
            policy's largest batch.
    """
    if a.key != b.key:
        differences = [f"{name.replace('_', ' ')} {x} vs {y}"
                       for name, x, y in zip(GroupKey._fields, a.key, b.key, strict=True) if x != y]
        raise BatchingError(
            "Only batches for the same partner, product type, print method and destination region can be "
            f"merged; these differ in {', '.join(differences)}.")
    shared = sorted(set(a.job_ids) & set(b.job_ids))
    if shared:
        raise BatchingError(f"These batches share job(s) {', '.join(shared)}; a batch cannot be merged with "
                            "itself or with a batch that holds the same jobs.")
    size = a.size + b.size
    if size > policy.max_size:
        raise BatchingError(f"Merging would make a batch of {size} jobs, but the largest allowed is "
                            f"{policy.max_size}; split one of them first or raise the limit.")
    override = (max(a.priority, b.priority)
                if a.priority_override is not None or b.priority_override is not None else None)
    return _proposal(a.key, sorted(a.jobs + b.jobs, key=_queue_order), target=max(a.target_size, b.target_size),
                     as_of=max(a.as_of, b.as_of), policy=policy, priority_override=override)


def reprioritise(batch: ProposedBatch, priority: float | None) -> ProposedBatch:
    """Set (or with None, clear) the priority an ops manager gives a whole batch; its jobs keep their own.

    Raises:
        BatchingError: the priority is not a finite number.
    """
    if priority is not None and not math.isfinite(priority):
        raise BatchingError(f"A batch priority must be an ordinary number (got {priority}).")
    return replace(batch, priority_override=priority)


def predicted_starts(proposals: Iterable[ProposedBatch], *, partners_capacity: Mapping[str, Mapping[str, float]],
                     load: Mapping[str, Mapping[str, int]], now: datetime,
                     policy: BatchPolicy | None = None) -> Mapping[str, datetime]:
    """When each job would start printing, for the what-if preview.

    Each partner × print method is one line printing `capacity` units an hour, first through the `load`
    already queued there, then through these batches. Whenever the line is free it takes the most urgent
    batch already released (priority, then longest waiting, then first job id), and prints its jobs in
    order. A batch that is not due is assumed released when its oldest job reaches `policy.max_wait`
    (arrivals that might fill it sooner are not forecast); without a policy every batch counts as released
    now. Raising a batch's priority therefore never makes it start later.

    Returns:
        Job id → predicted start; jobs at a partner with no capacity for their method are left out.
    """
    lines: dict[tuple[str, str], list[ProposedBatch]] = {}
    for proposal in proposals:
        lines.setdefault((proposal.key.partner_id, str(proposal.key.print_method)), []).append(proposal)
    starts: dict[str, datetime] = {}
    for (partner_id, method), batches in sorted(lines.items()):
        capacity = _capacity(partners_capacity, partner_id, method)
        if capacity <= 0:
            continue
        per_unit = timedelta(hours=1) / capacity
        free_at = now + per_unit * max(0, load.get(partner_id, _EMPTY).get(method, 0))
        pending = [(_released_at(b, now=now, policy=policy), b) for b in batches]
        while pending:
            ready = [item for item in pending if item[0] <= free_at]
            if not ready:
                free_at = min(released for released, _ in pending)
                continue
            chosen = min(ready, key=lambda item: (-item[1].priority, item[1].oldest_ready_at, item[1].job_ids))
            pending.remove(chosen)
            for index, job in enumerate(chosen[1].jobs):
                starts[job.id] = free_at + per_unit * index
            free_at += per_unit * chosen[1].size
    return MappingProxyType(starts)


def _released_at(batch: ProposedBatch, *, now: datetime, policy: BatchPolicy | None) -> datetime:
    if policy is None or batch.release_due:
        return now
    return max(now, batch.oldest_ready_at + policy.max_wait)


def start_shifts(before: Mapping[str, datetime], after: Mapping[str, datetime]) -> Mapping[str, timedelta]:
    """How far each job's predicted start moves (positive = later), for jobs predicted in both."""
    return MappingProxyType({job_id: after[job_id] - before[job_id] for job_id in sorted(before.keys() & after)})
