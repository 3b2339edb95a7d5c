"""Carrier simulator: the slice of EasyPost's REST API v2 that Pressroom uses, for the official client.

Point `easypost.EasyPostClient(key, api_base="http://127.0.0.1:8200/v2")` at it and it behaves like EasyPost:
addresses are verified by deterministic rules, shipments get rates from several carriers, buying returns a
label (PNG and PDF served here) and a tracker that scans its way to delivery on a compressed clock, posting
`tracker.updated` events signed the way EasyPost signs them. Faults a carrier really has (returns, damaged and
lost parcels, 429 bursts, buys that commit and then time out, duplicate and reordered webhooks) are knobs, and
`GET /sim/ledger` counts what really happened so a test can prove, say, that an order was never double-bought.

Run: python -m sims.carrier --port 8200 --webhook-url http://127.0.0.1:8000/webhooks/carrier/easypost \
    --webhook-secret whsec_dev_easypost --time-scale 3600
See docs/CARRIER_SIM.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import math
import random
import re
import socket
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from html import escape
from typing import Any
from urllib.parse import parse_qsl

import httpx
import img2pdf
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, ImageDraw, ImageFont
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_PORT = 8200
USER_ID = "user_pressroomsim"
WEBHOOK_USER_AGENT = "EasyPost WebHook Agent 1.0"
SIGNATURE_HEADER = "X-Hmac-Signature"


# --------------------------------------------------------------------------------------------------
# Vocabularies


class TrackerStatus(StrEnum):
    """EasyPost's tracker statuses (the ones the sim produces)."""

    UNKNOWN = "unknown"
    PRE_TRANSIT = "pre_transit"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    RETURN_TO_SENDER = "return_to_sender"
    FAILURE = "failure"


class Fate(StrEnum):
    """How a parcel's journey ends, decided when its label is bought."""

    DELIVERED = "delivered"
    RETURN_TO_SENDER = "return_to_sender"
    FAILURE = "failure"
    LOST = "lost"  # scanned once (pre_transit), then never again


class TimeoutMode(StrEnum):
    """How a buy that "times out after committing" looks to the client."""

    SLEEP = "sleep"  # answer only after buy_timeout_seconds (or when the client hangs up): a read timeout
    DROP = "drop"  # send the status line and headers, then close the connection: a broken response


class Reach(StrEnum):
    """Where a service level ships: within the origin country or across a border."""

    DOMESTIC = "domestic"
    INTERNATIONAL = "international"


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceLevel:
    """One carrier service the sim rates: its price model and its promised days in transit."""

    carrier: str
    service: str
    scope: Reach
    days: int
    base: float
    per_lb: float
    origins: tuple[str, ...] = ()  # origin countries it ships from; empty = anywhere

    @property
    def carrier_account_id(self) -> str:
        return "ca_sim" + re.sub(r"[^a-z0-9]", "", self.carrier.lower())


DEFAULT_SERVICES: tuple[ServiceLevel, ...] = (
    ServiceLevel(carrier="USPS", service="GroundAdvantage", scope=Reach.DOMESTIC, days=4, base=4.95,
                 per_lb=0.85, origins=("US",)),
    ServiceLevel(carrier="USPS", service="Priority", scope=Reach.DOMESTIC, days=2, base=8.45, per_lb=1.10,
                 origins=("US",)),
    ServiceLevel(carrier="USPS", service="Express", scope=Reach.DOMESTIC, days=1, base=27.90, per_lb=2.40,
                 origins=("US",)),
    ServiceLevel(carrier="USPS", service="PriorityMailInternational", scope=Reach.INTERNATIONAL, days=8,
                 base=32.50, per_lb=4.10, origins=("US",)),
    ServiceLevel(carrier="UPS", service="Ground", scope=Reach.DOMESTIC, days=5, base=9.20, per_lb=0.95),
    ServiceLevel(carrier="UPS", service="2ndDayAir", scope=Reach.DOMESTIC, days=2, base=18.60, per_lb=1.90),
    ServiceLevel(carrier="UPS", service="NextDayAir", scope=Reach.DOMESTIC, days=1, base=31.75, per_lb=3.20),
    ServiceLevel(carrier="UPS", service="Expedited", scope=Reach.INTERNATIONAL, days=5, base=41.00,
                 per_lb=5.20),
    ServiceLevel(carrier="FedEx", service="FEDEX_GROUND", scope=Reach.DOMESTIC, days=4, base=9.55,
                 per_lb=0.98),
    ServiceLevel(carrier="FedEx", service="FEDEX_2_DAY", scope=Reach.DOMESTIC, days=2, base=19.10,
                 per_lb=1.95),
    ServiceLevel(carrier="FedEx", service="STANDARD_OVERNIGHT", scope=Reach.DOMESTIC, days=1, base=34.20,
                 per_lb=3.45),
    ServiceLevel(carrier="FedEx", service="INTERNATIONAL_PRIORITY", scope=Reach.INTERNATIONAL, days=3,
                 base=58.30, per_lb=6.80),
    ServiceLevel(carrier="DHLExpress", service="ExpressWorldwideNonDoc", scope=Reach.INTERNATIONAL, days=3,
                 base=49.90, per_lb=6.10),
    ServiceLevel(carrier="DHLExpress", service="DomesticExpress", scope=Reach.DOMESTIC, days=1, base=16.40,
                 per_lb=1.60, origins=("DE", "GB", "AU", "CA", "NL", "AT")),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """The knobs a test turns to make the carrier misbehave; rates are probabilities per event."""

    return_to_sender_rate: float = 0.0
    failure_rate: float = 0.0
    lost_rate: float = 0.0
    fates_by_reference: Mapping[str, Fate] = field(default_factory=dict)
    rate_limit_every: int = 0  # every Nth authenticated /v2 request gets a 429
    retry_after_seconds: float = 1.0
    # EasyPost-style rate limit (0: off): requests beyond this sustained rate, after a burst of
    # `rate_limit_burst` (0: one second's worth), get a 429 with Retry-After until a request fits again
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0
    server_error_rate: float = 0.0  # 503 before anything is done
    buy_timeout_rate: float = 0.0
    buy_timeout_mode: TimeoutMode = TimeoutMode.SLEEP
    buy_timeout_seconds: float = 30.0
    webhook_duplicate_rate: float = 0.0
    webhook_out_of_order_rate: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierSimConfig:
    """Everything the sim needs to start; `faults` may be changed later through POST /sim/control."""

    api_keys: tuple[str, ...] = ()  # accepted besides any key starting with EZTK (test) or EZAK (production)
    webhook_url: str | None = None
    webhook_secret: str = "whsec_dev_easypost"
    time_scale: float = 3600.0  # simulated seconds per real second
    seed: int = 0
    services: tuple[ServiceLevel, ...] = DEFAULT_SERVICES
    public_url: str | None = None  # base of label URLs; default: the URL the request came in on
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: float = 0.5  # doubles per attempt, capped at 60 s
    webhook_timeout_seconds: float = 5.0
    tick_seconds: float = 0.05
    faults: Faults = field(default_factory=Faults)


_RATE_KNOBS = {"return_to_sender_rate", "failure_rate", "lost_rate", "server_error_rate", "buy_timeout_rate",
               "webhook_duplicate_rate", "webhook_out_of_order_rate"}
_ONE_SHOT_KNOBS = {"rate_limit_next", "rate_limit_for_seconds", "buy_timeouts_next"}


# --------------------------------------------------------------------------------------------------
# EasyPost-shaped errors


class ApiError(Exception):
    """An error answered the way EasyPost answers it: {"error": {"code", "message", "errors"}}."""

    def __init__(self, status: int, code: str, message: str, *, errors: Sequence[Mapping[str, Any]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, "errors": self.errors}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"The requested {kind} could not be found: {ident}")


def _invalid(code: str, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> ApiError:
    return ApiError(422, code, message, errors=errors)


# --------------------------------------------------------------------------------------------------
# Address verification: deterministic rules a test can steer


POSTAL_FORMATS: dict[str, str] = {
    "US": r"\d{5}(-\d{4})?",
    "CA": r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] \d[ABCEGHJ-NPRSTV-Z]\d",
    "GB": r"GIR 0AA|[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}",
    "DE": r"\d{5}", "FR": r"\d{5}", "IT": r"\d{5}", "ES": r"\d{5}", "FI": r"\d{5}",
    "AU": r"\d{4}", "AT": r"\d{4}", "CH": r"\d{4}", "BE": r"\d{4}", "DK": r"\d{4}", "NO": r"\d{4}",
    "NZ": r"\d{4}",
    "NL": r"\d{4} [A-Z]{2}", "SE": r"\d{3} \d{2}", "PL": r"\d{2}-\d{3}", "JP": r"\d{3}-\d{4}",
    "IE": r"[AC-FHKNPRTV-Y]\d[\dW] [AC-FHKNPRTV-Y\d]{4}",
}
_UNDELIVERABLE = re.compile(r"undeliverable|\bnowhere\b", re.IGNORECASE)
_TIME_ZONES = {"US": "America/New_York", "CA": "America/Toronto", "GB": "Europe/London", "IE": "Europe/Dublin",
               "DE": "Europe/Berlin", "AT": "Europe/Vienna", "NL": "Europe/Amsterdam", "FR": "Europe/Paris",
               "AU": "Australia/Sydney", "NZ": "Pacific/Auckland", "JP": "Asia/Tokyo"}
_US_ZONE_BY_DIGIT = {"0": "America/New_York", "1": "America/New_York", "2": "America/New_York",
                     "3": "America/New_York", "4": "America/Chicago", "5": "America/Chicago",
                     "6": "America/Chicago", "7": "America/Chicago", "8": "America/Denver",
                     "9": "America/Los_Angeles"}
ADDRESS_FIELDS = ("name", "company", "street1", "street2", "city", "state", "zip", "country", "phone", "email",
                  "residential", "carrier_facility", "federal_tax_id", "state_tax_id")


def normalise_postal_code(country: str, raw: str) -> str:
    """The postal code as a postal service writes it: upper case, single spaces, the country's separator."""
    code = re.sub(r"\s+", " ", raw.strip().upper())
    compact = code.replace(" ", "").replace("-", "")
    if country == "US" and re.fullmatch(r"\d{9}", compact):
        return f"{compact[:5]}-{compact[5:]}"
    if country in {"CA", "GB", "IE"} and " " not in code and len(code) >= 5:
        return f"{code[:-3]} {code[-3:]}" if country != "IE" else f"{code[:3]} {code[3:]}"
    if country == "NL" and re.fullmatch(r"\d{4}[A-Z]{2}", compact):
        return f"{compact[:4]} {compact[4:]}"
    if country == "SE" and re.fullmatch(r"\d{5}", compact):
        return f"{compact[:3]} {compact[3:]}"
    if country == "JP" and re.fullmatch(r"\d{7}", compact):
        return f"{compact[:3]}-{compact[3:]}"
    if country == "PL" and re.fullmatch(r"\d{5}", compact):
        return f"{compact[:2]}-{compact[2:]}"
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """The outcome of verifying one address: EasyPost's verifications.delivery plus the corrected fields."""

    success: bool
    errors: tuple[dict[str, Any], ...]
    corrected: dict[str, Any]
    details: dict[str, Any] | None

    def as_easypost(self) -> dict[str, Any]:
        return {"success": self.success, "errors": list(self.errors), "details": self.details}


def _error(code: str, field_name: str, message: str, suggestion: str | None = None) -> dict[str, Any]:
    return {"code": code, "field": field_name, "message": message, "suggestion": suggestion}


def verify_address(address: Mapping[str, Any]) -> Verification:
    """Verify an address by fixed rules: required lines, the country's postal format, and undeliverable markers.

    An address is undeliverable when street1, city or (where the country has postal codes) zip is missing,
    when the postal code does not fit the country's format, or when a street line says "UNDELIVERABLE" or
    "Nowhere". A deliverable one comes back normalised (upper case, ZIP+4 in the US), as EasyPost does.
    """
    country = _text(address.get("country")).upper() or "US"
    street1, street2 = _text(address.get("street1")), _text(address.get("street2"))
    city, state = _text(address.get("city")), _text(address.get("state"))
    raw_zip = _text(address.get("zip"))
    errors: list[dict[str, Any]] = []
    if not re.fullmatch(r"[A-Z]{2}", country):
        errors.append(_error("E.COUNTRY.INVALID", "country", "Country must be an ISO 3166 alpha-2 code"))
    if not street1:
        errors.append(_error("E.STREET.MISSING", "street1", "Street is missing"))
    if not city:
        errors.append(_error("E.CITY.MISSING", "city", "City is missing"))
    postal = normalise_postal_code(country, raw_zip)
    pattern = POSTAL_FORMATS.get(country)
    if pattern and not postal:
        errors.append(_error("E.ZIP.MISSING", "zip", "Postal code is missing"))
    elif pattern and not re.fullmatch(pattern, postal):
        suggestion = None
        if re.fullmatch(r"\d{4}", postal) and pattern.startswith(r"\d{5}"):
            suggestion = "0" + postal  # a spreadsheet ate the leading zero
        errors.append(_error("E.ZIP.INVALID", "zip", f"Postal code {postal!r} is not a valid {country} postal code",
                             suggestion))
    if street1 and any(_UNDELIVERABLE.search(line) for line in (street1, street2)):
        errors.append(_error("E.ADDRESS.NOT_FOUND", "address", "Address not found"))
    corrected = {k: address.get(k) for k in ADDRESS_FIELDS}
    if errors:
        return Verification(success=False, errors=tuple(errors), corrected=corrected, details=None)
    if country == "US" and re.fullmatch(r"\d{5}", postal):
        postal = f"{postal}-{int(_digest(street1.upper(), city.upper())[:8], 16) % 10000:04d}"
    corrected.update(street1=_fold_spaces(street1).upper(), street2=_fold_spaces(street2).upper(),
                     city=_fold_spaces(city).upper(), state=state.upper(), zip=postal, country=country)
    seed = int(_digest(postal, country)[:12], 16)
    details = {"latitude": round(-60 + (seed % 12000) / 100, 5),
               "longitude": round(-180 + (seed // 12000 % 36000) / 100, 5),
               "time_zone": _US_ZONE_BY_DIGIT.get(postal[:1], "America/New_York") if country == "US"
               else _TIME_ZONES.get(country, "UTC")}
    return Verification(success=True, errors=(), corrected=corrected, details=details)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _fold_spaces(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _wants_verification(value: Any) -> bool:
    """EasyPost takes verify=true, verify=["delivery"], verify[]=delivery or "delivery"."""
    if isinstance(value, str):
        return value.lower() not in {"", "false", "0"}
    return bool(value)


# --------------------------------------------------------------------------------------------------
# Request parameters: JSON (the official client) or Rails-style form fields (curl)


def _parse_form(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`address[street1]=…&verify[]=delivery` into nested dicts and lists."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        node: Any = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = parts[i + 1] if not last else None
            if part == "[]":
                continue
            if last:
                node[part] = value
            elif nxt == "[]":
                node.setdefault(part, []).append(value)
                break
            else:
                node = node.setdefault(part, {})
    return result


async def _params(request: Request) -> dict[str, Any]:
    """The request's parameters whichever way they came: JSON body, form body or query string."""
    params: dict[str, Any] = _parse_form(list(request.query_params.multi_items()))
    body = await request.body()
    if body:
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type:
            params.update(_parse_form(parse_qsl(body.decode(), keep_blank_values=True)))
        else:
            try:
                parsed = json.loads(body)
            except json.JSONDecodeError as exc:
                raise _invalid("PARAMETER.INVALID", f"The request body is not valid JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise _invalid("PARAMETER.INVALID", "The request body must be a JSON object")
            params.update(parsed)
    return params


# --------------------------------------------------------------------------------------------------
# Labels: a 4x6 in thermal label at 203 dpi, PNG and PDF


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelContent:
    """What is printed on a label."""

    carrier: str
    service: str
    tracking_code: str
    from_lines: tuple[str, ...]
    to_lines: tuple[str, ...]
    reference: str | None
    label_date: str


_LABEL_DPI = 203
_LABEL_SIZE = (4 * _LABEL_DPI, 6 * _LABEL_DPI)


def _ascii(text: str) -> str:
    """Labels are printed in ASCII, as many carriers require: fold accents, drop the rest."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _barcode_modules(code: str) -> list[tuple[int, bool]]:
    """A barcode-like run of (width, is_bar) modules: guards, then two bars per character from its bits."""
    modules: list[tuple[int, bool]] = [(2, True), (1, False), (2, True), (1, False)]
    for ch in code:
        value = ord(ch)
        for shift in (0, 2, 4):
            modules += [(1 + (value >> shift & 1), True), (1 + (value >> (shift + 1) & 1), False)]
    return modules + [(2, True), (1, False), (1, True), (1, False), (2, True)]


def render_label_png(label: LabelContent) -> bytes:
    """Draw the label: carrier and service, addresses, a barcode-like pattern and the tracking code."""
    width, height = _LABEL_SIZE
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    small, medium, large = (ImageFont.load_default(size=s) for s in (22, 30, 46))
    draw.rectangle((6, 6, width - 7, height - 7), outline=0, width=4)
    draw.text((24, 20), _ascii(f"{label.carrier}  {label.service}"), font=large, fill=0)
    draw.text((24, 78), "SIMULATED LABEL - NOT VALID POSTAGE", font=small, fill=0)
    draw.line((6, 112, width - 7, 112), fill=0, width=3)
    y = 124
    draw.text((24, y), "FROM:", font=small, fill=0)
    for line in label.from_lines:
        y += 26
        draw.text((24, y), _ascii(line), font=small, fill=0)
    y = max(y + 40, 300)
    draw.line((6, y - 14, width - 7, y - 14), fill=0, width=3)
    draw.text((24, y), "SHIP TO:", font=medium, fill=0)
    for line in label.to_lines:
        y += 40
        draw.text((60, y), _ascii(line).upper(), font=medium, fill=0)
    top = max(y + 70, 700)
    draw.line((6, top - 30, width - 7, top - 30), fill=0, width=3)
    modules = _barcode_modules(label.tracking_code)
    unit = max(1, (width - 60) // sum(w for w, _ in modules))
    x = (width - unit * sum(w for w, _ in modules)) // 2
    for module_width, is_bar in modules:
        if is_bar:
            draw.rectangle((x, top, x + module_width * unit - 1, top + 220), fill=0)
        x += module_width * unit
    spaced = " ".join(label.tracking_code[i:i + 4] for i in range(0, len(label.tracking_code), 4))
    text_width = draw.textlength(spaced, font=medium)
    draw.text(((width - text_width) / 2, top + 236), spaced, font=medium, fill=0)
    footer = f"{label.label_date}  REF {label.reference}" if label.reference else label.label_date
    draw.text((24, height - 60), _ascii(footer), font=small, fill=0)
    out = io.BytesIO()
    image.convert("1").save(out, format="PNG", optimize=True, dpi=(_LABEL_DPI, _LABEL_DPI))
    return out.getvalue()


def label_pdf_from_png(png: bytes) -> bytes:
    """The same label as a one-page 4x6 in PDF."""
    return img2pdf.convert(png, layout_fun=img2pdf.get_fixed_dpi_layout_fun((_LABEL_DPI, _LABEL_DPI)))


# --------------------------------------------------------------------------------------------------
# The sim's state


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class _Scan:
    """A scan waiting to happen, `at_hours` simulated hours after the label was bought."""

    at_hours: float
    status: TrackerStatus
    status_detail: str
    message: str
    location: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class _Tracker:
    id: str
    mode: str
    tracking_code: str
    carrier: str
    service: str
    shipment_id: str | None
    fate: Fate | None
    started_at_hours: float  # on the sim clock
    created_at: str
    est_delivery_date: str | None
    origin: dict[str, Any]
    destination: dict[str, Any]
    pending: list[_Scan]
    public_url: str
    status: TrackerStatus = TrackerStatus.UNKNOWN
    status_detail: str = "unknown"
    updated_at: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)
    held_event: bytes | None = None  # a webhook held back to be delivered after the next one

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "Tracker", "mode": self.mode, "tracking_code": self.tracking_code,
            "status": self.status.value, "status_detail": self.status_detail,
            "created_at": self.created_at, "updated_at": self.updated_at or self.created_at,
            "signed_by": "J SMITH" if self.status is TrackerStatus.DELIVERED else None, "weight": None,
            "est_delivery_date": self.est_delivery_date, "shipment_id": self.shipment_id,
            "carrier": self.carrier, "tracking_details": [dict(d) for d in self.details], "fees": [],
            "carrier_detail": {
                "object": "CarrierDetail", "service": self.service, "container_type": None,
                "est_delivery_date_local": None, "est_delivery_time_local": None,
                "origin_location": _location_text(self.origin), "origin_tracking_location": self.origin,
                "destination_location": _location_text(self.destination),
                "destination_tracking_location": self.destination, "guaranteed_delivery_date": None,
                "alternate_identifier": None, "initial_delivery_attempt": None,
            },
            "public_url": self.public_url,
        }


@dataclass(slots=True, kw_only=True)
class _Shipment:
    id: str
    mode: str
    reference: str | None
    created_at: str
    updated_at: str
    to_address: dict[str, Any]
    from_address: dict[str, Any]
    return_address: dict[str, Any]
    parcel: dict[str, Any]
    options: dict[str, Any]
    rates: list[dict[str, Any]]
    usps_zone: int | None
    is_return: bool
    postage_label: dict[str, Any] | None = None
    selected_rate: dict[str, Any] | None = None
    tracking_code: str | None = None
    tracker_id: str | None = None
    insurance: str | None = None


def _location_text(location: Mapping[str, Any]) -> str:
    return " ".join(str(location.get(k) or "") for k in ("city", "state", "zip")).strip()


def _tracking_location(address: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "TrackingLocation", "city": _text(address.get("city")).upper() or None,
            "state": _text(address.get("state")).upper() or None,
            "country": _text(address.get("country")).upper() or None, "zip": _text(address.get("zip")) or None}


def _scan_script(fate: Fate, days: int, origin: dict[str, Any], destination: dict[str, Any],
                 carrier: str) -> list[_Scan]:
    """The scans of one journey in simulated hours; the last one is the fate's terminal status."""
    total = max(1, days) * 24.0
    scans = [_Scan(at_hours=0.0, status=TrackerStatus.PRE_TRANSIT, status_detail="label_created",
                   message=f"Shipping Label Created, {carrier} Awaiting Item", location=origin)]
    if fate is Fate.LOST:
        return scans
    scans += [
        _Scan(at_hours=6.0, status=TrackerStatus.IN_TRANSIT, status_detail="arrived_at_facility",
              message="Accepted at Origin Facility", location=origin),
        _Scan(at_hours=total * 0.5, status=TrackerStatus.IN_TRANSIT, status_detail="arrived_at_facility",
              message="Arrived at Regional Destination Facility", location=destination),
    ]
    if fate is Fate.FAILURE:
        scans.append(_Scan(at_hours=total * 0.75, status=TrackerStatus.FAILURE, status_detail="package_damaged",
                           message="Package damaged in transit and cannot be delivered", location=destination))
        return scans
    scans.append(_Scan(at_hours=total - 10, status=TrackerStatus.OUT_FOR_DELIVERY,
                       status_detail="out_for_delivery", message="Out for Delivery", location=destination))
    if fate is Fate.RETURN_TO_SENDER:
        scans.append(_Scan(at_hours=total - 4, status=TrackerStatus.RETURN_TO_SENDER,
                           status_detail="return_to_sender",
                           message="Undeliverable as Addressed, Returned to Sender", location=destination))
    else:
        scans.append(_Scan(at_hours=total - 4, status=TrackerStatus.DELIVERED, status_detail="arrived_at_destination",
                           message="Delivered, Front Door/Porch", location=destination))
    return scans


@dataclass(slots=True, kw_only=True)
class _Delivery:
    tracker_id: str
    body: bytes
    attempt: int = 0


class CarrierSim:
    """All of the sim's state and behaviour; the HTTP layer only parses requests and renders answers.

    Every method runs on the server's event loop and none awaits between reading and writing state,
    so each one is atomic without locks.
    """

    def __init__(self, config: CarrierSimConfig) -> None:
        self.initial = config
        self.config = config
        self.rng = random.Random(config.seed)  # fault decisions: reproducible for a seed
        self.ids = random.SystemRandom()  # ids and tracking codes: unique across restarts, like EasyPost's
        self.addresses: dict[str, dict[str, Any]] = {}
        self.parcels: dict[str, dict[str, Any]] = {}
        self.shipments: dict[str, _Shipment] = {}
        self.newest_by_reference: dict[tuple[str, str], str] = {}  # (mode, reference) → the newest shipment
        self.trackers: dict[str, _Tracker] = {}
        self.trackers_by_code: dict[str, str] = {}
        self.labels: dict[str, LabelContent] = {}
        self.label_files: dict[tuple[str, str], bytes] = {}
        self.sim_hours = 0.0
        self.requests = 0
        self.rate_limit_next = 0
        self.rate_limited_until = 0.0  # time.monotonic()
        self.rate_tokens: float | None = None  # the rate limit's bucket (None: full), refilled since rate_at
        self.rate_at = 0.0
        self.buy_timeouts_next = 0
        self.counts: Counter[str] = Counter()
        self.purchases_by_shipment: Counter[str] = Counter()
        self.purchases_by_reference: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        self.outbox: asyncio.Queue[_Delivery] | None = None

    # ---- identities and clock

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.ids.getrandbits(128):032x}"

    def real_seconds(self, sim_hours: float) -> float:
        return sim_hours * 3600.0 / self.config.time_scale

    # ---- control

    def control(self, changes: Mapping[str, Any]) -> None:
        """Apply a POST /sim/control body: config fields, fault knobs and one-shot faults, all or nothing."""
        changes = dict(changes)
        reset = bool(changes.pop("reset", False))
        top = {"webhook_url", "webhook_secret", "time_scale", "webhook_max_attempts", "webhook_backoff_seconds"}
        fault_names = {f.name for f in fields(Faults)}
        unknown = set(changes) - top - fault_names - _ONE_SHOT_KNOBS
        if unknown:
            raise _invalid("PARAMETER.INVALID", f"Unknown control knobs: {sorted(unknown)}")
        errors = _check_knobs(changes)
        if errors:
            raise _invalid("PARAMETER.INVALID", "Invalid control values", errors)
        if reset:
            self.config = self.initial
            self.rate_limit_next, self.rate_limited_until, self.buy_timeouts_next = 0, 0.0, 0
            self.rate_tokens = None
        fault_changes = {k: v for k, v in changes.items() if k in fault_names}
        if "buy_timeout_mode" in fault_changes:
            fault_changes["buy_timeout_mode"] = TimeoutMode(fault_changes["buy_timeout_mode"])
        if "fates_by_reference" in fault_changes:
            fault_changes["fates_by_reference"] = {
                str(k): Fate(v) for k, v in dict(fault_changes["fates_by_reference"]).items()}
        faults = replace(self.config.faults, **fault_changes)
        self.config = replace(self.config, faults=faults, **{k: v for k, v in changes.items() if k in top})
        self.rate_limit_next = int(changes.get("rate_limit_next", self.rate_limit_next))
        self.buy_timeouts_next = int(changes.get("buy_timeouts_next", self.buy_timeouts_next))
        if "rate_limit_for_seconds" in changes:
            self.rate_limited_until = time.monotonic() + float(changes["rate_limit_for_seconds"])

    def describe(self) -> dict[str, Any]:
        config = asdict(self.config)
        config.pop("services")
        config["webhook_secret"] = "(set)" if self.config.webhook_secret else ""
        config["services"] = [f"{s.carrier} {s.service}" for s in self.config.services]
        return {"config": config,
                "one_shot": {"rate_limit_next": self.rate_limit_next, "buy_timeouts_next": self.buy_timeouts_next,
                             "rate_limited_for_seconds": max(0.0, self.rate_limited_until - time.monotonic())}}

    # ---- the gate in front of every /v2 call

    def authenticate(self, authorization: str | None) -> str:
        """The key's mode ("test" or "production"); 401 like EasyPost for a missing or unknown key."""
        key = ""
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                key = credentials.strip()
            elif scheme.lower() == "basic":
                with contextlib.suppress(ValueError):
                    key = base64.b64decode(credentials.strip()).decode().partition(":")[0]
        if not key:
            raise ApiError(401, "APIKEY.REQUIRED", "No API key provided: send 'Authorization: Bearer <key>'")
        if key.startswith("EZAK"):
            return "production"
        if key.startswith("EZTK") or key in self.config.api_keys:
            return "test"
        self.counts["unauthorized"] += 1
        raise ApiError(401, "APIKEY.INACTIVE", "The API key provided is invalid or inactive")

    def throttle(self) -> None:
        """Inject the configured 429s and 503s, before the request does anything."""
        self.requests += 1
        faults = self.config.faults
        remaining = self.rate_limited_until - time.monotonic()
        retry_after: float | None = None
        if remaining > 0:
            retry_after = remaining
        elif self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            retry_after = faults.retry_after_seconds
        elif faults.rate_limit_every and self.requests % faults.rate_limit_every == 0:
            retry_after = faults.retry_after_seconds
        elif faults.rate_limit_per_second:
            retry_after = self._over_rate(faults, time.monotonic())
        if retry_after is not None:
            self.counts["rate_limited"] += 1
            raise ApiError(429, "RATE_LIMITED", "You have exceeded the rate limit, try again later",
                           headers={"Retry-After": str(max(1, math.ceil(retry_after)))})
        if faults.server_error_rate and self.rng.random() < faults.server_error_rate:
            self.counts["server_errors"] += 1
            raise ApiError(503, "SERVICE.UNAVAILABLE", "The service is temporarily unavailable")

    def _over_rate(self, faults: Faults, now: float) -> float | None:
        """Take one token from the rate limit's bucket; None when there was one, else the seconds until one."""
        rate = faults.rate_limit_per_second
        burst = float(faults.rate_limit_burst or max(1, math.ceil(rate)))
        tokens = burst if self.rate_tokens is None else min(burst, self.rate_tokens + (now - self.rate_at) * rate)
        self.rate_at = now
        if tokens >= 1 - 1e-9:  # (a float's rounding never refuses a request that is on time)
            self.rate_tokens = max(0.0, tokens - 1)
            return None
        self.rate_tokens = tokens  # a refused request spends nothing
        self.counts["rate_limited_by_rate"] += 1
        return (1 - tokens) / rate

    # ---- addresses

    def address_record(self, params: Mapping[str, Any], mode: str) -> dict[str, Any]:
        now = _iso(_now())
        record = {"id": self.new_id("adr"), "object": "Address", "mode": mode, "created_at": now, "updated_at": now}
        record.update({k: params.get(k) for k in ADDRESS_FIELDS})
        record["country"] = _text(record.get("country")).upper() or "US"
        record["verifications"] = {}
        return record

    def create_address(self, params: Mapping[str, Any], mode: str, *, verify: bool, strict: bool) -> dict[str, Any]:
        record = self.address_record(params, mode)
        if verify or strict:
            self._verify_into(record, strict=strict)
        self.addresses[record["id"]] = record
        self.counts["addresses_created"] += 1
        return record

    def verify_existing(self, address_id: str) -> dict[str, Any]:
        record = self.addresses.get(address_id)
        if record is None:
            raise _not_found("address", address_id)
        self._verify_into(record, strict=False)
        return record

    def _verify_into(self, record: dict[str, Any], *, strict: bool) -> None:
        result = verify_address(record)
        self.counts["verifications"] += 1
        if not result.success:
            self.counts["verification_failures"] += 1
            if strict:
                raise _invalid("ADDRESS.VERIFY.FAILURE", "Unable to verify address.", result.errors)
        else:
            record.update(result.corrected)
        delivery = result.as_easypost()
        record["verifications"] = {"zip4": dict(delivery), "delivery": delivery}
        record["updated_at"] = _iso(_now())

    def _resolve_address(self, value: Any, mode: str, field_name: str) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not value:
            raise _invalid("SHIPMENT.INVALID_PARAMS", f"{field_name} is required",
                           [{"field": field_name, "message": "is required"}])
        if value.get("id") and not value.get("street1"):
            record = self.addresses.get(str(value["id"]))
            if record is None:
                raise _not_found("address", str(value["id"]))
            return record
        record = self.address_record(value, mode)
        self.addresses[record["id"]] = record
        return record

    # ---- parcels and shipments

    def create_parcel(self, params: Mapping[str, Any], mode: str) -> dict[str, Any]:
        errors = []
        try:
            weight = float(params.get("weight") or 0)
        except (TypeError, ValueError):
            weight = 0.0
        if weight <= 0:
            errors.append({"field": "parcel.weight", "message": "must be a number of ounces greater than 0"})
        dims: dict[str, float | None] = {}
        for name in ("length", "width", "height"):
            raw = params.get(name)
            try:
                dims[name] = float(raw) if raw not in (None, "") else None
            except (TypeError, ValueError):
                errors.append({"field": f"parcel.{name}", "message": "must be a number of inches"})
        if errors:
            raise _invalid("PARCEL.INVALID", "The parcel is invalid", errors)
        now = _iso(_now())
        parcel = {"id": self.new_id("prcl"), "object": "Parcel", "mode": mode, "created_at": now,
                  "updated_at": now, **dims, "weight": weight,
                  "predefined_package": params.get("predefined_package")}
        self.parcels[parcel["id"]] = parcel
        return parcel

    def create_shipment(self, params: Mapping[str, Any], mode: str) -> _Shipment:
        if params.get("service") or params.get("carrier"):
            raise _invalid("SIM.UNSUPPORTED", "One-call buy (service/carrier on create) is not simulated: "
                           "create, then buy a rate")
        to_address = self._resolve_address(params.get("to_address"), mode, "to_address")
        from_address = self._resolve_address(params.get("from_address"), mode, "from_address")
        return_address = (self._resolve_address(params["return_address"], mode, "return_address")
                          if params.get("return_address") else from_address)
        parcel_param = params.get("parcel")
        if isinstance(parcel_param, Mapping) and parcel_param.get("id") and "weight" not in parcel_param:
            parcel = self.parcels.get(str(parcel_param["id"]))
            if parcel is None:
                raise _not_found("parcel", str(parcel_param["id"]))
        elif isinstance(parcel_param, Mapping):
            parcel = self.create_parcel(parcel_param, mode)
        else:
            raise _invalid("SHIPMENT.INVALID_PARAMS", "parcel is required",
                           [{"field": "parcel", "message": "is required"}])
        options = dict(params.get("options") or {})
        options.setdefault("currency", "USD")
        now = _iso(_now())
        reference = _text(params.get("reference")) or None
        shipment = _Shipment(id=self.new_id("shp"), mode=mode, reference=reference, created_at=now,
                             updated_at=now, to_address=to_address, from_address=from_address,
                             return_address=return_address, parcel=parcel, options=options, rates=[],
                             usps_zone=_usps_zone(from_address, to_address),
                             is_return=bool(params.get("is_return")))
        shipment.rates = self._rates(shipment, mode, params.get("carrier_accounts"))
        self.shipments[shipment.id] = shipment
        if reference:
            self.newest_by_reference[(mode, reference)] = shipment.id
        self.counts["shipments_created"] += 1
        return shipment

    def _rates(self, shipment: _Shipment, mode: str, carrier_accounts: Any) -> list[dict[str, Any]]:
        origin = _text(shipment.from_address.get("country")).upper() or "US"
        destination = _text(shipment.to_address.get("country")).upper() or "US"
        scope = Reach.DOMESTIC if origin == destination else Reach.INTERNATIONAL
        wanted: set[str] | None = None
        if carrier_accounts:
            items = carrier_accounts if isinstance(carrier_accounts, list) else [carrier_accounts]
            wanted = {str(i.get("id") if isinstance(i, Mapping) else i) for i in items}
        pounds = max(float(shipment.parcel.get("weight") or 0) / 16.0, 0.25)
        zone = shipment.usps_zone or 1
        now = _iso(_now())
        rates = []
        for level in self.config.services:
            if level.scope is not scope or (level.origins and origin not in level.origins):
                continue
            if wanted is not None and level.carrier_account_id not in wanted:
                continue
            amount = level.base + level.per_lb * pounds + 0.35 * (zone - 1)
            rates.append({
                "id": self.new_id("rate"), "object": "Rate", "mode": mode, "created_at": now, "updated_at": now,
                "service": level.service, "carrier": level.carrier, "rate": f"{amount:.2f}", "currency": "USD",
                "retail_rate": f"{amount * 1.18:.2f}", "retail_currency": "USD", "list_rate": f"{amount:.2f}",
                "list_currency": "USD", "billing_type": "easypost", "delivery_days": level.days,
                "delivery_date": None, "delivery_date_guaranteed": level.days == 1,
                "est_delivery_days": level.days, "shipment_id": shipment.id,
                "carrier_account_id": level.carrier_account_id,
            })
        return rates

    def shipment(self, shipment_id: str) -> _Shipment:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise _not_found("shipment", shipment_id)
        return shipment

    def shipment_by_id_or_reference(self, ident: str, mode: str) -> _Shipment:
        """GET /v2/shipments/{id}: EasyPost lets a `reference` stand in for the id ("may be used in place of id
        values in many API endpoints"), but does not promise references are unique and does not say which
        shipment several with one reference resolve to. The sim answers the newest one created under the key's
        mode (a test key never sees a production shipment's reference), so a client that lets two shipments
        share a reference gets whichever came last, and must not rely on that choice."""
        shipment = self.shipments.get(ident)
        if shipment is None:
            by_reference = self.newest_by_reference.get((mode, ident))
            shipment = self.shipments.get(by_reference) if by_reference else None
        if shipment is None:
            raise _not_found("shipment", ident)
        if shipment.id != ident:
            self.counts["shipments_found_by_reference"] += 1
        return shipment

    def buy(self, shipment_id: str, params: Mapping[str, Any], base_url: str) -> _Shipment:
        """Buy postage once per shipment: the purchase is recorded before anything is answered."""
        shipment = self.shipment(shipment_id)
        self.counts["buy_attempts"] += 1
        if shipment.postage_label is not None:
            self.counts["buys_refused_postage_exists"] += 1
            raise _invalid("SHIPMENT.POSTAGE.EXISTS", "Shipment already has postage. Please create a new shipment.")
        rate_param = params.get("rate")
        rate_id = _text(rate_param.get("id") if isinstance(rate_param, Mapping) else rate_param)
        if not rate_id:
            raise _invalid("PARAMETER.REQUIRED", "rate is required", [{"field": "rate", "message": "is required"}])
        rate = next((r for r in shipment.rates if r["id"] == rate_id), None)
        if rate is None:
            raise _invalid("SHIPMENT.RATE.INVALID", f"Rate {rate_id} is not one of this shipment's rates",
                           [{"field": "rate.id", "message": "is not a rate of this shipment"}])
        if params.get("insurance") not in (None, ""):
            shipment.insurance = str(params["insurance"])
        tracking_code = self._tracking_code(rate["carrier"])
        now_dt = _now()
        now = _iso(now_dt)
        label_id = self.new_id("pl")
        pdf_wanted = str(shipment.options.get("label_format", "PNG")).upper() == "PDF"
        png_url, pdf_url = f"{base_url}/labels/{label_id}.png", f"{base_url}/labels/{label_id}.pdf"
        shipment.postage_label = {
            "id": label_id, "object": "PostageLabel", "created_at": now, "updated_at": now, "date_advance": 0,
            "integrated_form": "none", "label_date": now, "label_resolution": _LABEL_DPI, "label_size": "4x6",
            "label_type": "default", "label_file_type": "application/pdf" if pdf_wanted else "image/png",
            "label_url": pdf_url if pdf_wanted else png_url, "label_pdf_url": pdf_url if pdf_wanted else None,
            "label_zpl_url": None, "label_epl2_url": None, "label_file": None,
        }
        shipment.selected_rate = dict(rate)
        shipment.tracking_code = tracking_code
        shipment.updated_at = now
        self.labels[label_id] = LabelContent(
            carrier=rate["carrier"], service=rate["service"], tracking_code=tracking_code,
            from_lines=_address_lines(shipment.from_address), to_lines=_address_lines(shipment.to_address),
            reference=shipment.reference, label_date=now_dt.strftime("%Y-%m-%d"))
        self.counts["labels_bought"] += 1
        self.purchases_by_shipment[shipment.id] += 1
        if shipment.reference:
            self.purchases_by_reference[shipment.reference] += 1
        fate = self._fate(shipment)
        days = int(rate["delivery_days"] or 3)
        tracker = self._start_tracker(
            tracking_code=tracking_code, carrier=rate["carrier"], service=rate["service"], mode=shipment.mode,
            shipment_id=shipment.id, fate=fate, days=days, origin=_tracking_location(shipment.from_address),
            destination=_tracking_location(shipment.to_address), base_url=base_url)
        shipment.tracker_id = tracker.id
        return shipment

    def _fate(self, shipment: _Shipment) -> Fate:
        faults = self.config.faults
        if shipment.reference and shipment.reference in faults.fates_by_reference:
            return Fate(faults.fates_by_reference[shipment.reference])
        if not verify_address(shipment.to_address).success:
            return Fate.RETURN_TO_SENDER  # nobody verified it, and the carrier cannot find it either
        draw = self.rng.random()
        for fate, rate in ((Fate.RETURN_TO_SENDER, faults.return_to_sender_rate), (Fate.FAILURE, faults.failure_rate),
                           (Fate.LOST, faults.lost_rate)):
            if draw < rate:
                return fate
            draw -= rate
        return Fate.DELIVERED

    def _tracking_code(self, carrier: str) -> str:
        while True:
            digits = "".join(str(self.ids.randrange(10)) for _ in range(18))
            alnum = "".join(self.ids.choice("0123456789ABCDEFGHJKLMNPRSTVWXYZ") for _ in range(6))
            code = {"USPS": f"9400{digits}", "UPS": f"1Z{alnum}03{digits[:8]}", "FedEx": digits[:12],
                    "DHLExpress": digits[:10]}.get(carrier, f"EZ{digits[:10]}")
            if code not in self.trackers_by_code:
                return code

    def take_buy_timeout(self) -> bool:
        """Whether this (already committed) buy should look to the client like a timeout."""
        if self.buy_timeouts_next > 0:
            self.buy_timeouts_next -= 1
            hit = True
        else:
            hit = self.rng.random() < self.config.faults.buy_timeout_rate
        if hit:
            self.counts["buy_timeouts_injected"] += 1
        return hit

    def convert_label(self, shipment_id: str, file_format: str) -> _Shipment:
        shipment = self.shipment(shipment_id)
        if shipment.postage_label is None:
            raise _invalid("SHIPMENT.POSTAGE.REQUIRED", "The shipment has no postage to convert")
        wanted = file_format.upper()
        if wanted == "PDF":
            label = shipment.postage_label
            label["label_pdf_url"] = label["label_url"].rsplit(".", 1)[0] + ".pdf"
            label["updated_at"] = _iso(_now())
        elif wanted != "PNG":
            raise _invalid("SIM.UNSUPPORTED", f"Label format {file_format!r} is not simulated (PNG and PDF are)",
                           [{"field": "file_format", "message": "must be PNG or PDF"}])
        return shipment

    def label_file(self, label_id: str, extension: str) -> bytes:
        if (label_id, extension) not in self.label_files:
            content = self.labels.get(label_id)
            if content is None:
                raise _not_found("label", label_id)
            png = self.label_files.get((label_id, "png")) or render_label_png(content)
            self.label_files[(label_id, "png")] = png
            if extension == "pdf":
                self.label_files[(label_id, "pdf")] = label_pdf_from_png(png)
        return self.label_files[(label_id, extension)]

    def shipment_json(self, shipment: _Shipment) -> dict[str, Any]:
        tracker = self.trackers.get(shipment.tracker_id) if shipment.tracker_id else None
        return {
            "id": shipment.id, "object": "Shipment", "mode": shipment.mode, "reference": shipment.reference,
            "status": tracker.status.value if tracker else "unknown", "tracking_code": shipment.tracking_code,
            "created_at": shipment.created_at, "updated_at": shipment.updated_at, "is_return": shipment.is_return,
            "messages": [], "options": shipment.options, "batch_id": None, "batch_status": None,
            "batch_message": None, "customs_info": None, "from_address": shipment.from_address,
            "to_address": shipment.to_address, "return_address": shipment.return_address,
            "buyer_address": shipment.to_address, "insurance": shipment.insurance, "order_id": None,
            "parcel": shipment.parcel, "postage_label": shipment.postage_label, "rates": shipment.rates,
            "refund_status": None, "scan_form": None, "selected_rate": shipment.selected_rate,
            "tracker": tracker.to_json() if tracker else None, "usps_zone": shipment.usps_zone, "forms": [],
            "fees": _fees(shipment),
        }

    # ---- trackers and their clock

    def _start_tracker(self, *, tracking_code: str, carrier: str, service: str, mode: str, shipment_id: str | None,
                       fate: Fate | None, days: int, origin: dict[str, Any], destination: dict[str, Any],
                       base_url: str) -> _Tracker:
        now_dt = _now()
        pending = _scan_script(fate, days, origin, destination, carrier) if fate else []
        eta = now_dt + timedelta(seconds=self.real_seconds(days * 24.0 - 4)) if fate else None
        tracker = _Tracker(id=self.new_id("trk"), mode=mode, tracking_code=tracking_code, carrier=carrier,
                           service=service, shipment_id=shipment_id, fate=fate, started_at_hours=self.sim_hours,
                           created_at=_iso(now_dt), est_delivery_date=_iso(eta) if eta else None,
                           origin=origin, destination=destination, pending=pending,
                           public_url=f"{base_url}/track/{tracking_code}")
        self.trackers[tracker.id] = tracker
        self.trackers_by_code[tracking_code] = tracker.id
        self.counts["trackers_created"] += 1
        self._advance(tracker)
        return tracker

    def create_tracker(self, params: Mapping[str, Any], mode: str, base_url: str) -> _Tracker:
        code = _text(params.get("tracking_code"))
        if not code:
            raise _invalid("TRACKER.INVALID_PARAMS", "tracking_code is required",
                           [{"field": "tracking_code", "message": "is required"}])
        existing = self.trackers_by_code.get(code)
        if existing:
            return self.trackers[existing]
        # A code this carrier never issued: the tracker exists, but nobody ever scans it.
        return self._start_tracker(tracking_code=code, carrier=_text(params.get("carrier")) or "USPS", service="",
                                   mode=mode, shipment_id=None, fate=None, days=1, origin={}, destination={},
                                   base_url=base_url)

    def tracker(self, tracker_id: str) -> _Tracker:
        tracker = self.trackers.get(tracker_id)
        if tracker is None:
            raise _not_found("tracker", tracker_id)
        return tracker

    def tick(self, real_elapsed: float) -> None:
        """Move the sim clock on and let every tracker scan whatever is now due."""
        self.sim_hours += real_elapsed * self.config.time_scale / 3600.0
        for tracker in self.trackers.values():
            if tracker.pending:
                self._advance(tracker)

    def _advance(self, tracker: _Tracker) -> None:
        while tracker.pending and tracker.started_at_hours + tracker.pending[0].at_hours <= self.sim_hours:
            scan = tracker.pending.pop(0)
            previous = tracker.status
            now = _iso(_now())
            tracker.status, tracker.status_detail, tracker.updated_at = scan.status, scan.status_detail, now
            tracker.details.append({
                "object": "TrackingDetail", "message": scan.message, "description": None,
                "status": scan.status.value, "status_detail": scan.status_detail, "datetime": now,
                "source": tracker.carrier, "carrier_code": None, "tracking_location": dict(scan.location)})
            self.counts[f"scans_{scan.status.value}"] += 1
            self._emit(tracker, previous)

    def _emit(self, tracker: _Tracker, previous: TrackerStatus) -> None:
        """Record a tracker.updated Event and queue its webhook, with the configured duplicates and reordering."""
        now = _iso(_now())
        url = self.config.webhook_url
        event = {"id": self.new_id("evt"), "object": "Event", "mode": tracker.mode, "description": "tracker.updated",
                 "user_id": USER_ID, "status": "pending", "previous_attributes": {"status": previous.value},
                 "pending_urls": [url] if url else [], "completed_urls": [], "created_at": now, "updated_at": now,
                 "result": tracker.to_json()}
        body = json.dumps(event, separators=(",", ":")).encode()
        self.webhooks["events"] += 1
        if not url or self.outbox is None:
            return
        faults = self.config.faults
        batch = [body]
        if self.rng.random() < faults.webhook_duplicate_rate:
            batch.append(body)
            self.webhooks["duplicates_injected"] += 1
        if tracker.held_event is not None:
            batch.append(tracker.held_event)
            tracker.held_event = None
        elif tracker.pending and self.rng.random() < faults.webhook_out_of_order_rate:
            tracker.held_event, batch = body, batch[1:]
            self.webhooks["reordered_injected"] += 1
        for item in batch:
            self.outbox.put_nowait(_Delivery(tracker_id=tracker.id, body=item))

    # ---- the ledger

    def ledger(self) -> dict[str, Any]:
        by_status = Counter(t.status.value for t in self.trackers.values())
        return {
            "labels_bought": self.counts["labels_bought"],
            "buy_attempts": self.counts["buy_attempts"],
            "buys_refused_postage_exists": self.counts["buys_refused_postage_exists"],
            "buy_timeouts_injected": self.counts["buy_timeouts_injected"],
            "purchases_by_shipment": dict(self.purchases_by_shipment),
            "purchases_by_reference": dict(self.purchases_by_reference),
            "double_bought_references": sorted(r for r, n in self.purchases_by_reference.items() if n > 1),
            "shipments_created": self.counts["shipments_created"],
            "shipments_by_reference": dict(Counter(s.reference for s in self.shipments.values() if s.reference)),
            "shipments_found_by_reference": self.counts["shipments_found_by_reference"],
            "addresses_created": self.counts["addresses_created"],
            "verifications": self.counts["verifications"],
            "verification_failures": self.counts["verification_failures"],
            "trackers": {"count": len(self.trackers), "by_status": dict(by_status),
                         "by_fate": dict(Counter(t.fate.value for t in self.trackers.values() if t.fate))},
            "webhooks": {"events": self.webhooks["events"], "attempts": self.webhooks["attempts"],
                         "delivered": self.webhooks["delivered"], "failed_attempts": self.webhooks["failed_attempts"],
                         "abandoned": self.webhooks["abandoned"],
                         "duplicates_injected": self.webhooks["duplicates_injected"],
                         "reordered_injected": self.webhooks["reordered_injected"]},
            "requests": {"total": self.requests, "rate_limited": self.counts["rate_limited"],
                         "rate_limited_by_rate": self.counts["rate_limited_by_rate"],
                         "server_errors": self.counts["server_errors"], "unauthorized": self.counts["unauthorized"]},
        }


def _check_knobs(changes: Mapping[str, Any]) -> list[dict[str, str]]:
    errors = []
    for name, value in changes.items():
        if name in _RATE_KNOBS and not (isinstance(value, int | float) and 0 <= value <= 1):
            errors.append({"field": name, "message": "must be a probability between 0 and 1"})
        elif name in {"rate_limit_every", "rate_limit_next", "buy_timeouts_next", "webhook_max_attempts",
                      "rate_limit_burst"} and not (
                isinstance(value, int) and value >= 0):
            errors.append({"field": name, "message": "must be a whole number >= 0"})
        elif name in {"retry_after_seconds", "buy_timeout_seconds", "rate_limit_for_seconds",
                      "webhook_backoff_seconds"} and not (isinstance(value, int | float) and value >= 0):
            errors.append({"field": name, "message": "must be a number of seconds >= 0"})
        elif name == "rate_limit_per_second" and not (isinstance(value, int | float) and value >= 0):
            errors.append({"field": name, "message": "must be a number of requests per second >= 0"})
        elif name == "time_scale" and not (isinstance(value, int | float) and value > 0):
            errors.append({"field": name, "message": "must be > 0"})
        elif name == "buy_timeout_mode" and value not in set(TimeoutMode):
            errors.append({"field": name, "message": f"must be one of {[m.value for m in TimeoutMode]}"})
        elif name == "fates_by_reference" and not (
                isinstance(value, Mapping) and all(v in set(Fate) for v in value.values())):
            errors.append({"field": name, "message": f"must map references to one of {[f.value for f in Fate]}"})
    return errors


def _usps_zone(from_address: Mapping[str, Any], to_address: Mapping[str, Any]) -> int | None:
    a, b = _text(from_address.get("zip")), _text(to_address.get("zip"))
    if (_text(from_address.get("country")).upper() or "US") != "US" or (
            _text(to_address.get("country")).upper() or "US") != "US":
        return None
    if not (a[:1].isdigit() and b[:1].isdigit()):
        return None
    return 1 + min(8, abs(int(a[0]) - int(b[0])))


def _fees(shipment: _Shipment) -> list[dict[str, Any]]:
    if shipment.selected_rate is None:
        return []
    return [{"object": "Fee", "type": "LabelFee", "amount": "0.00000", "charged": True, "refunded": False},
            {"object": "Fee", "type": "PostageFee", "amount": shipment.selected_rate["rate"], "charged": True,
             "refunded": False}]


def _address_lines(address: Mapping[str, Any]) -> tuple[str, ...]:
    lines = [_text(address.get("name")), _text(address.get("company")), _text(address.get("street1")),
             _text(address.get("street2")),
             " ".join(p for p in (_text(address.get("city")), _text(address.get("state")),
                                  _text(address.get("zip"))) if p),
             _text(address.get("country"))]
    return tuple(line for line in lines if line)


# --------------------------------------------------------------------------------------------------
# Webhooks: signed like EasyPost, retried with backoff


def sign_webhook(body: bytes, secret: str) -> str:
    """The X-Hmac-Signature value EasyPost sends: HMAC-SHA256 of the raw body, keyed by the NFKD-normalised secret."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


async def _deliver_webhooks(sim: CarrierSim) -> None:
    """Post queued events one at a time (so they arrive in order), re-queueing failures after a backoff."""
    assert sim.outbox is not None
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=sim.config.webhook_timeout_seconds) as client:
        while True:
            delivery = await sim.outbox.get()
            url, secret = sim.config.webhook_url, sim.config.webhook_secret
            if not url:
                continue
            delivery.attempt += 1
            sim.webhooks["attempts"] += 1
            headers = {"Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT,
                       SIGNATURE_HEADER: sign_webhook(delivery.body, secret)}
            try:
                response = await client.post(url, content=delivery.body, headers=headers)
                ok, why = response.is_success, f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            if ok:
                sim.webhooks["delivered"] += 1
                continue
            sim.webhooks["failed_attempts"] += 1
            if delivery.attempt >= sim.config.webhook_max_attempts:
                sim.webhooks["abandoned"] += 1
                log.warning("webhook for tracker %s abandoned after %d attempts (%s)", delivery.tracker_id,
                            delivery.attempt, why)
                continue
            delay = min(60.0, sim.config.webhook_backoff_seconds * 2 ** (delivery.attempt - 1))
            log.info("webhook for tracker %s failed (%s); retry %d in %.1fs", delivery.tracker_id, why,
                     delivery.attempt + 1, delay)
            loop.call_later(delay, sim.outbox.put_nowait, delivery)


async def _run_clock(sim: CarrierSim) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(sim.config.tick_seconds)
        now = time.monotonic()
        sim.tick(now - last)
        last = now


# --------------------------------------------------------------------------------------------------
# HTTP


class _CutOffResponse(Response):
    """Status line and headers, then the connection closes: what a client sees when the far side drops."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"65536")]})


async def _wait_out(request: Request, seconds: float) -> None:
    """Sleep past the client's timeout, stopping early once it has hung up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


def create_app(config: CarrierSimConfig | None = None) -> FastAPI:
    """The sim as an ASGI app; its state is `app.state.sim`."""
    sim = CarrierSim(config or CarrierSimConfig())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        sim.outbox = asyncio.Queue()
        tasks = [asyncio.create_task(_run_clock(sim)), asyncio.create_task(_deliver_webhooks(sim))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="Pressroom carrier sim (EasyPost-compatible)", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.sim = sim

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD.NOT_ALLOWED"}.get(exc.status_code, "HTTP.ERROR")
        return ApiError(exc.status_code, code, str(exc.detail)).response()

    def base_url(request: Request) -> str:
        return (sim.config.public_url or str(request.base_url)).rstrip("/")

    def gate(request: Request) -> str:
        mode = sim.authenticate(request.headers.get("authorization"))
        sim.throttle()
        return mode

    # ---- addresses

    @app.post("/v2/addresses")
    async def create_address(request: Request) -> JSONResponse:
        mode = gate(request)
        params = await _params(request)
        record = sim.create_address(params.get("address") or {}, mode, verify=_wants_verification(params.get("verify")),
                                    strict=_wants_verification(params.get("verify_strict")))
        return JSONResponse(record, status_code=201)

    @app.post("/v2/addresses/create_and_verify")
    async def create_and_verify_address(request: Request) -> JSONResponse:
        mode = gate(request)
        params = await _params(request)
        record = sim.create_address(params.get("address") or {}, mode, verify=True, strict=True)
        return JSONResponse({"address": record})

    @app.get("/v2/addresses/{address_id}/verify")
    async def verify_address_endpoint(address_id: str, request: Request) -> JSONResponse:
        gate(request)
        return JSONResponse({"address": sim.verify_existing(address_id)})

    @app.get("/v2/addresses/{address_id}")
    async def retrieve_address(address_id: str, request: Request) -> JSONResponse:
        gate(request)
        record = sim.addresses.get(address_id)
        if record is None:
            raise _not_found("address", address_id)
        return JSONResponse(record)

    # ---- parcels and shipments

    @app.post("/v2/parcels")
    async def create_parcel(request: Request) -> JSONResponse:
        mode = gate(request)
        params = await _params(request)
        return JSONResponse(sim.create_parcel(params.get("parcel") or {}, mode), status_code=201)

    @app.post("/v2/shipments")
    async def create_shipment(request: Request) -> JSONResponse:
        mode = gate(request)
        params = await _params(request)
        shipment = sim.create_shipment(params.get("shipment") or {}, mode)
        return JSONResponse(sim.shipment_json(shipment), status_code=201)

    @app.get("/v2/shipments/{id_or_reference}")
    async def retrieve_shipment(id_or_reference: str, request: Request) -> JSONResponse:
        mode = gate(request)
        return JSONResponse(sim.shipment_json(sim.shipment_by_id_or_reference(id_or_reference, mode)))

    @app.post("/v2/shipments/{shipment_id}/buy")
    async def buy_shipment(shipment_id: str, request: Request) -> Response:
        gate(request)
        params = await _params(request)
        shipment = sim.buy(shipment_id, params, base_url(request))
        if sim.take_buy_timeout():
            faults = sim.config.faults
            log.info("buy of %s committed; answering it as a %s timeout", shipment_id, faults.buy_timeout_mode)
            if faults.buy_timeout_mode is TimeoutMode.DROP:
                return _CutOffResponse()
            await _wait_out(request, faults.buy_timeout_seconds)
        return JSONResponse(sim.shipment_json(shipment))

    @app.get("/v2/shipments/{shipment_id}/label")
    async def convert_label(shipment_id: str, request: Request) -> JSONResponse:
        gate(request)
        params = await _params(request)
        return JSONResponse(sim.shipment_json(sim.convert_label(shipment_id, _text(params.get("file_format")))))

    # ---- trackers

    @app.post("/v2/trackers")
    async def create_tracker(request: Request) -> JSONResponse:
        mode = gate(request)
        params = await _params(request)
        return JSONResponse(sim.create_tracker(params.get("tracker") or {}, mode, base_url(request)).to_json())

    @app.get("/v2/trackers")
    async def list_trackers(request: Request) -> JSONResponse:
        gate(request)
        params = await _params(request)
        code = _text(params.get("tracking_code"))
        found = [t.to_json() for t in sim.trackers.values() if not code or t.tracking_code == code]
        return JSONResponse({"trackers": found[-int(params.get("page_size") or 20):][::-1], "has_more": False})

    @app.get("/v2/trackers/{tracker_id}")
    async def retrieve_tracker(tracker_id: str, request: Request) -> JSONResponse:
        gate(request)
        return JSONResponse(sim.tracker(tracker_id).to_json())

    # ---- what the sim serves besides the API

    @app.get("/labels/{label_id}.{extension}")
    async def label_file(label_id: str, extension: str) -> Response:
        if extension not in {"png", "pdf"}:
            raise _not_found("label format", extension)
        media = "image/png" if extension == "png" else "application/pdf"
        return Response(sim.label_file(label_id, extension), media_type=media)

    @app.get("/track/{tracking_code}")
    async def public_tracking_page(tracking_code: str) -> HTMLResponse:
        tracker_id = sim.trackers_by_code.get(tracking_code)
        if tracker_id is None:
            raise _not_found("tracking code", tracking_code)
        tracker = sim.trackers[tracker_id]
        rows = "".join(f"<li>{escape(d['datetime'])} — {escape(d['message'])}</li>" for d in reversed(tracker.details))
        return HTMLResponse(f"<!doctype html><title>Tracking {escape(tracking_code)}</title>"
                            f"<h1>{escape(tracker.carrier)} {escape(tracking_code)}</h1>"
                            f"<p>Status: {escape(tracker.status.value)}</p><ul>{rows}</ul>")

    @app.get("/sim/ledger")
    async def ledger() -> JSONResponse:
        return JSONResponse(sim.ledger())

    @app.get("/sim/control")
    async def show_control() -> JSONResponse:
        return JSONResponse(sim.describe())

    @app.post("/sim/control")
    async def control(request: Request) -> JSONResponse:
        body = await _params(request)
        sim.control(body)
        log.info("control: %s", sorted(body))
        return JSONResponse(sim.describe())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "shipments": len(sim.shipments), "trackers": len(sim.trackers),
                             "webhook_queue": sim.outbox.qsize() if sim.outbox else 0})

    return app


# --------------------------------------------------------------------------------------------------
# Running it


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """The sim on a real port in a background thread, for tests: `with BackgroundServer(config) as sim: …`."""

    def __init__(self, config: CarrierSimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(config)
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.api_base = f"{self.url}/v2"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=self.port, log_level="warning",
                                                     lifespan="on", timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self._server.run, name=f"carrier-sim-{self.port}", daemon=True)

    @property
    def sim(self) -> CarrierSim:
        return self.app.state.sim

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"carrier sim did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sims.carrier", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--webhook-url", help="where tracker.updated events are posted (none: events are only counted)")
    p.add_argument("--webhook-secret", default="whsec_dev_easypost")
    p.add_argument("--time-scale", type=float, default=3600.0,
                   help="simulated seconds per real second (3600: one day in transit takes 24 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key", action="append", default=[], dest="api_keys",
                   help="an accepted API key besides EZTK…/EZAK… ones (repeatable)")
    p.add_argument("--public-url", help="base URL of label and tracking links (default: the request's)")
    p.add_argument("--log-level", default="info")
    faults = p.add_argument_group("faults")
    for f in fields(Faults):
        if f.name == "fates_by_reference":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = type(default) if not isinstance(default, StrEnum) else str
        faults.add_argument(flag, type=kind, default=default, help=f"default {default}")
    return p


def config_from_args(args: argparse.Namespace) -> CarrierSimConfig:
    fault_values = {f.name: getattr(args, f.name) for f in fields(Faults) if f.name != "fates_by_reference"}
    errors = _check_knobs(fault_values)
    if errors:
        raise SystemExit("; ".join(f"--{e['field'].replace('_', '-')} {e['message']}" for e in errors))
    fault_values["buy_timeout_mode"] = TimeoutMode(fault_values["buy_timeout_mode"])
    return CarrierSimConfig(api_keys=tuple(args.api_keys), webhook_url=args.webhook_url,
                            webhook_secret=args.webhook_secret, time_scale=args.time_scale, seed=args.seed,
                            public_url=args.public_url, faults=Faults(**fault_values))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s carrier-sim %(message)s")
    config = config_from_args(args)
    log.info("carrier sim on http://%s:%d/v2, webhooks to %s, time scale %gx", args.host, args.port,
             config.webhook_url or "(nowhere)", config.time_scale)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
