"""Stored vocabularies and the one transition table of each aggregate (DESIGN §4)."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Mapping


class Entity(StrEnum):
    ORDER = "order"
    JOB = "job"
    BATCH = "batch"
    INSPECTION = "inspection"
    SHIPMENT = "shipment"


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"
    RENDERING = "rendering"
    READY_FOR_PRODUCTION = "ready_for_production"
    IN_PRODUCTION = "in_production"
    QA = "qa"
    READY_TO_SHIP = "ready_to_ship"
    LABEL_CREATED = "label_created"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ON_HOLD = "on_hold"
    CANCELLED = "cancelled"
    FAILED = "failed"


class JobStatus(StrEnum):
    PENDING = "pending"
    BATCHED = "batched"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    QA_PASSED = "qa_passed"
    QA_FAILED = "qa_failed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class BatchStatus(StrEnum):
    OPEN = "open"
    HELD = "held"
    RELEASED = "released"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


class InspectionStatus(StrEnum):
    PENDING = "pending"
    NEEDS_REVIEW = "needs_review"
    PASSED = "passed"
    FAILED = "failed"


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    NEEDS_ADDRESS = "needs_address"
    CREATED = "created"
    PURCHASED = "purchased"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    RETURNED = "returned"
    FAILURE = "failure"
    LOST = "lost"


class HoldReason(StrEnum):
    ARTWORK_MISSING = "artwork_missing"
    RENDER_FAILED = "render_failed"
    NEEDS_ADDRESS = "needs_address"
    CARRIER_EXCEPTION = "carrier_exception"
    REPRINTS_EXHAUSTED = "reprints_exhausted"
    NO_PARTNER = "no_partner"
    STAFF = "staff"


class DefectReason(StrEnum):
    """Why a printed item failed QA: the controlled vocabulary of automatic and human verdicts."""

    COLOUR_SHIFT = "colour_shift"
    MISREGISTRATION = "misregistration"
    INK_BLOT = "ink_blot"
    MISSING_AREA = "missing_area"
    FADED_PRINT = "faded_print"
    WRONG_DESIGN = "wrong_design"
    DAMAGED = "damaged"


class PartnerJobStatus(StrEnum):
    """What print partners report about a job (their words, mapped onto JobStatus by the webhook stage)."""

    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    READY_FOR_SHIPMENT = "ready_for_shipment"
    CANCELLED = "cancelled"


class ShippingSpeed(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


class Channel(StrEnum):
    STOREFRONT = "storefront"
    SHOPIFY = "shopify"
    API = "api"


class PrintMethod(StrEnum):
    DTG = "dtg"
    SUBLIMATION = "sublimation"
    INKJET = "inkjet"
    UV = "uv"
    EMBROIDERY = "embroidery"


class Role(StrEnum):
    QA_INSPECTOR = "qa_inspector"
    OPS_MANAGER = "ops_manager"
    SUPPORT_AGENT = "support_agent"
    MANAGER = "manager"


def _table(entries: dict) -> Mapping:
    return MappingProxyType({k: frozenset(v) for k, v in entries.items()})


_O = OrderStatus
_RESUMABLE = (_O.ACCEPTED, _O.RENDERING, _O.READY_FOR_PRODUCTION, _O.IN_PRODUCTION, _O.QA,
              _O.READY_TO_SHIP, _O.LABEL_CREATED, _O.SHIPPED)
ORDER_ALLOWED: Mapping[OrderStatus, frozenset[OrderStatus]] = _table({
    _O.ACCEPTED: {_O.RENDERING, _O.ON_HOLD, _O.CANCELLED, _O.FAILED},
    _O.RENDERING: {_O.READY_FOR_PRODUCTION, _O.ON_HOLD, _O.CANCELLED, _O.FAILED},
    _O.READY_FOR_PRODUCTION: {_O.RENDERING, _O.IN_PRODUCTION, _O.ON_HOLD, _O.CANCELLED, _O.FAILED},
    _O.IN_PRODUCTION: {_O.QA, _O.ON_HOLD, _O.FAILED},
    _O.QA: {_O.READY_TO_SHIP, _O.IN_PRODUCTION, _O.ON_HOLD, _O.FAILED},
    _O.READY_TO_SHIP: {_O.LABEL_CREATED, _O.ON_HOLD, _O.FAILED},
    _O.LABEL_CREATED: {_O.SHIPPED, _O.ON_HOLD, _O.FAILED},
    _O.SHIPPED: {_O.DELIVERED, _O.ON_HOLD},
    _O.ON_HOLD: {*_RESUMABLE, _O.CANCELLED, _O.FAILED},
    _O.DELIVERED: set(),
    _O.CANCELLED: set(),
    _O.FAILED: set(),
})
"""READY_FOR_PRODUCTION → RENDERING is a customer edit before the gate (re-render)."""

# Statuses at or past the production gate: the partner has the job, so the customer can no longer edit.
PAST_GATE: frozenset[OrderStatus] = frozenset({
    _O.IN_PRODUCTION, _O.QA, _O.READY_TO_SHIP, _O.LABEL_CREATED, _O.SHIPPED, _O.DELIVERED})

_J = JobStatus
JOB_ALLOWED: Mapping[JobStatus, frozenset[JobStatus]] = _table({
    _J.PENDING: {_J.BATCHED, _J.CANCELLED, _J.FAILED},
    _J.BATCHED: {_J.PENDING, _J.SUBMITTED, _J.CANCELLED, _J.FAILED},
    _J.SUBMITTED: {_J.QUEUED, _J.PRINTING, _J.PRINTED, _J.CANCELLED, _J.FAILED},
    _J.QUEUED: {_J.PRINTING, _J.PRINTED, _J.CANCELLED, _J.FAILED},
    _J.PRINTING: {_J.PRINTED, _J.FAILED},
    _J.PRINTED: {_J.QA_PASSED, _J.QA_FAILED},
    _J.QA_PASSED: set(),
    _J.QA_FAILED: set(),
    _J.CANCELLED: set(),
    _J.FAILED: set(),
})
"""Partners may skip steps (a late `printing` after `printed`), so forward skips are allowed; never back."""

_B = BatchStatus
BATCH_ALLOWED: Mapping[BatchStatus, frozenset[BatchStatus]] = _table({
    _B.OPEN: {_B.RELEASED, _B.HELD, _B.CANCELLED},
    _B.HELD: {_B.OPEN, _B.RELEASED, _B.CANCELLED},
    _B.RELEASED: {_B.SUBMITTED},
    _B.SUBMITTED: {_B.IN_PROGRESS, _B.DONE},
    _B.IN_PROGRESS: {_B.DONE},
    _B.DONE: set(),
    _B.CANCELLED: set(),
})
"""CANCELLED is where a batch goes when it is merged into another or split away to nothing."""

_I = InspectionStatus
INSPECTION_ALLOWED: Mapping[InspectionStatus, frozenset[InspectionStatus]] = _table({
    _I.PENDING: {_I.PASSED, _I.FAILED, _I.NEEDS_REVIEW},
    _I.NEEDS_REVIEW: {_I.PASSED, _I.FAILED},
    _I.PASSED: set(),
    _I.FAILED: set(),
})

_S = ShipmentStatus
_SCANNED = {_S.IN_TRANSIT, _S.OUT_FOR_DELIVERY, _S.DELIVERED, _S.RETURNED, _S.FAILURE, _S.LOST}
SHIPMENT_ALLOWED: Mapping[ShipmentStatus, frozenset[ShipmentStatus]] = _table({
    _S.PENDING: {_S.CREATED, _S.NEEDS_ADDRESS},
    _S.NEEDS_ADDRESS: {_S.PENDING},
    _S.CREATED: {_S.PURCHASED, _S.NEEDS_ADDRESS},
    _S.PURCHASED: _SCANNED,
    _S.IN_TRANSIT: _SCANNED - {_S.IN_TRANSIT},
    _S.OUT_FOR_DELIVERY: {_S.DELIVERED, _S.RETURNED, _S.FAILURE, _S.LOST},
    _S.DELIVERED: set(),
    _S.RETURNED: set(),
    _S.FAILURE: set(),
    _S.LOST: set(),
})

TABLES: Mapping[Entity, Mapping] = MappingProxyType({
    Entity.ORDER: ORDER_ALLOWED,
    Entity.JOB: JOB_ALLOWED,
    Entity.BATCH: BATCH_ALLOWED,
    Entity.INSPECTION: INSPECTION_ALLOWED,
    Entity.SHIPMENT: SHIPMENT_ALLOWED,
})


def is_terminal(table: Mapping, status: StrEnum) -> bool:
    """A status with no way out."""
    return not table[status]
