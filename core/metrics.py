"""The source guide's success metrics: targets and statuses, rates, nearest-rank percentiles, reprint cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from core.errors import PressroomError
from core.states import OrderStatus

PERCENTILES = (50, 95, 99)


class Compare(StrEnum):
    """How a value is held against its goal."""

    BELOW = "below"  # value < goal
    AT_MOST = "at_most"  # value ≤ goal
    AT_LEAST = "at_least"  # value ≥ goal


class Status(StrEnum):
    MET = "met"
    AT_RISK = "at risk"
    MISSED = "missed"
    NO_DATA = "no data"


class Unit(StrEnum):
    SHARE = "share"  # a fraction, shown as a percentage
    MS = "ms"
    SECONDS = "s"


class BadTarget(PressroomError):
    """A metric target that cannot be judged against (unknown comparison, warn line on the wrong side)."""


class BadRange(PressroomError):
    """A date range the metrics cannot be read over (it ends before it starts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The line a metric must stay on (`goal`), and the line (`warn`) past which it is "at risk".

    For lower-is-better targets `warn` ≤ `goal`; for higher-is-better ones `warn` ≥ `goal`. Equal lines mean
    no at-risk band (e.g. 100 % generation success: anything less is missed).
    """

    compare: Compare
    goal: float
    warn: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.goal) and math.isfinite(self.warn)):
            raise BadTarget(f"target lines must be numbers, got goal={self.goal} warn={self.warn}")
        lower_is_better = self.compare != Compare.AT_LEAST
        if lower_is_better and self.warn > self.goal:
            raise BadTarget(f"a '{self.compare}' target's at-risk line ({self.warn}) must not be above its goal "
                            f"({self.goal})")
        if not lower_is_better and self.warn < self.goal:
            raise BadTarget(f"an 'at_least' target's at-risk line ({self.warn}) must not be below its goal "
                            f"({self.goal})")

    @property
    def lower_is_better(self) -> bool:
        return self.compare != Compare.AT_LEAST

    def text(self, unit: Unit) -> str:
        """The target as people say it: "< 1 %", "≥ 95 %", "< 200 ms"."""
        sign = {Compare.BELOW: "<", Compare.AT_MOST: "≤", Compare.AT_LEAST: "≥"}[self.compare]
        return f"{sign} {format_value(self.goal, unit)}"


def status_of(value: float | None, target: Target) -> Status:
    """Met, at risk (within the goal but past the warn line), missed; no data when there is nothing to judge."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Status.NO_DATA
    if target.compare == Compare.BELOW:
        missed = value >= target.goal
    elif target.compare == Compare.AT_MOST:
        missed = value > target.goal
    else:
        missed = value < target.goal
    if missed:
        return Status.MISSED
    at_risk = value > target.warn if target.lower_is_better else value < target.warn
    return Status.AT_RISK if at_risk else Status.MET


def targets_from(document: Mapping[str, Any] | None,
                 defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Target]:
    """The targets in force: the stored document's entries over the defaults, key by key.

    Raises:
        BadTarget: an entry names an unknown metric or comparison, or its lines are not numbers.
    """
    merged = {key: dict(value) for key, value in defaults.items()}
    for key, entry in (document or {}).items():
        if key not in merged:
            raise BadTarget(f"no metric called {key!r}; known: {', '.join(sorted(merged))}")
        merged[key] |= dict(entry)
    targets = {}
    for key, entry in merged.items():
        try:
            targets[key] = Target(compare=Compare(entry["compare"]), goal=float(entry["goal"]),
                                  warn=float(entry["warn"]))
        except (KeyError, ValueError, TypeError) as broken:
            raise BadTarget(f"target {key!r} needs compare (below, at_most, at_least), goal and warn numbers "
                            f"({type(broken).__name__}: {broken})") from None
    return targets


# ---- rates and percentiles ---------------------------------------------------------------------------------


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator; None when there is nothing to divide (no data is not 0 % and not 100 %).

    Raises:
        ValueError: negative counts, or more hits than trials.
    """
    if numerator < 0 or denominator < 0:
        raise ValueError(f"counts cannot be negative ({numerator}/{denominator})")
    if numerator > denominator:
        raise ValueError(f"{numerator} of {denominator}: a part cannot exceed the whole")
    return None if denominator == 0 else numerator / denominator


def nearest_rank(pct: int, n: int) -> int:
    """The 1-based rank of the `pct`-th percentile among `n` sorted values: ceil(pct × n / 100).

    Nearest-rank is always one of the observed values, so every percentile shown points at a real row;
    the SQL read side computes the same rank with integer arithmetic, (pct × n + 99) // 100.

    Raises:
        ValueError: pct outside 1..100 or n < 1.
    """
    if not 1 <= pct <= 100:
        raise ValueError(f"percentile must be 1..100, got {pct}")
    if n < 1:
        raise ValueError("no values to rank")
    return (pct * n + 99) // 100


def percentile(values: Sequence[float], pct: int) -> float | None:
    """The nearest-rank `pct`-th percentile of `values`; None when there are none."""
    if not values:
        return None
    return sorted(values)[nearest_rank(pct, len(values)) - 1]


# ---- what each metric is ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    """One success metric: what it counts (`numerator` of `denominator`) and how, in a sentence."""

    key: str
    title: str
    stage: str
    unit: Unit
    numerator: str
    denominator: str
    how: str
    per_partner: bool = True  # False: decided before a partner is chosen, so the partner filter does not apply


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(key="validation_errors", title="Validation errors", stage="Checkout", unit=Unit.SHARE,
               numerator="checkouts refused", denominator="checkouts", per_partner=False,
               how="Refused checkouts (intake_rejections, one per checkout whatever its number of reasons) "
                   "÷ refused + accepted orders (orders.placed_at) in the range."),
    MetricSpec(key="asset_generation", title="Asset generation success", stage="Asset generation",
               unit=Unit.SHARE, numerator="renders finished", denominator="renders", per_partner=False,
               how="Render worker outcomes on the timeline: order.ready_for_production ÷ that plus "
                   "order.on_hold (render failed or artwork missing; each also raised a render alert)."),
    MetricSpec(key="retrieval_latency_p95", title="Print-file retrieval latency p95", stage="Storage",
               unit=Unit.MS, numerator="rank", denominator="downloads", per_partner=False,
               how="Nearest-rank 95th percentile of asset_retrievals.ms (each served print-file download) "
                   "in the range."),
    MetricSpec(key="queue_lag_p95", title="Queue lag p95 (worst stage)", stage="Queue", unit=Unit.SECONDS,
               numerator="rank", denominator="samples", per_partner=False,
               how="Per stage queue, the nearest-rank 95th percentile of the oldest waiting message's age "
                   "(queue_samples, an empty queue counting 0 s); the worst queue is shown. Samples are kept "
                   "two days."),
    MetricSpec(key="queue_lag_p99", title="Queue lag p99 (worst stage)", stage="Queue", unit=Unit.SECONDS,
               numerator="rank", denominator="samples", per_partner=False,
               how="As p95, at the 99th percentile."),
    MetricSpec(key="on_time_start", title="On-time production start", stage="Production", unit=Unit.SHARE,
               numerator="jobs submitted in time", denominator="jobs decided",
               how="Jobs created in the range that reached their partner (the job's submission stamp, written "
                   "with its job.submitted event) within their budget (the stage "
                   "deadlines before the production gate: accepted + rendering + ready for production; a "
                   "reprint only ready for production) ÷ those submitted plus those still unsubmitted past it."),
    MetricSpec(key="defect_rate", title="Defect rate", stage="QA", unit=Unit.SHARE,
               numerator="items failed", denominator="items inspected",
               how="inspection.failed ÷ inspection.passed + inspection.failed events in the range "
                   "(automatic and human verdicts)."),
    MetricSpec(key="label_success", title="Label generation success", stage="Shipping", unit=Unit.SHARE,
               numerator="labels bought", denominator="label attempts",
               how="Shipping worker outcomes on the timeline: shipment.purchased ÷ that plus order.on_hold "
                   "(carrier refused, or the address could not be verified)."),
    MetricSpec(key="notification_delivery", title="Notification delivery", stage="Notification",
               unit=Unit.SHARE, numerator="handed over", denominator="due",
               how="Notifications created in the range now sent ÷ sent + failed + unknown outcome; opted-out "
                   "or address-less ones are not due, in-flight ones not yet decided."),
)
METRIC_BY_KEY: Mapping[str, MetricSpec] = MappingProxyType({m.key: m for m in METRICS})


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricResult:
    """A metric's figure with the counts behind it, its target and its status."""

    spec: MetricSpec
    value: float | None
    numerator: int
    denominator: int
    target: Target
    detail: str = ""

    @property
    def status(self) -> Status:
        return status_of(self.value, self.target)

    @property
    def counts(self) -> str:
        """The counts behind the figure in words: "3 checkouts refused of 13 checkouts", "rank 20 of 21 …"."""
        if self.spec.numerator == "rank":
            return f"rank {self.numerator} of {self.denominator} {self.spec.denominator}"
        return f"{self.numerator} {self.spec.numerator} of {self.denominator} {self.spec.denominator}"

    def row(self) -> dict[str, Any]:
        """One line of the metrics table (and of its CSV export)."""
        return {"stage": self.spec.stage, "metric": self.spec.title, "value": format_value(self.value, self.spec.unit),
                "target": self.target.text(self.spec.unit), "status": str(self.status),
                "numerator": self.numerator, "denominator": self.denominator,
                "counts": self.counts,
                "detail": self.detail, "raw_value": self.value}


def share_result(spec: MetricSpec, hits: int, trials: int, target: Target, detail: str = "") -> MetricResult:
    return MetricResult(spec=spec, value=rate(hits, trials), numerator=hits, denominator=trials, target=target,
                        detail=detail)


def percentile_result(spec: MetricSpec, values: Mapping[str, Mapping[str, Any]], pct: int,
                      target: Target) -> MetricResult:
    """The worst group's `pct`-th percentile (one group for retrievals, one per queue for queue lag).

    `values` maps group → {"n": count, "p50"…: value}. The numerator is the percentile's rank in its group.
    """
    filled = {group: v for group, v in values.items() if v.get("n")}
    if not filled:
        return MetricResult(spec=spec, value=None, numerator=0, denominator=0, target=target, detail="no samples")
    worst = max(filled, key=lambda group: (filled[group][f"p{pct}"], group))
    n = int(filled[worst]["n"])
    detail = f"worst: {worst}" if len(filled) > 1 else ""
    return MetricResult(spec=spec, value=float(filled[worst][f"p{pct}"]), numerator=nearest_rank(pct, n),
                        denominator=n, target=target, detail=detail)


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return "–"
    if unit == Unit.SHARE:
        return f"{value * 100:.2f} %".replace(".00 %", " %")
    if unit == Unit.MS:
        return f"{value:.0f} ms"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


# ---- production start budget and stages ----------------------------------------------------------------------

BEFORE_GATE = (OrderStatus.ACCEPTED, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION)
TERMINAL = frozenset({OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED})


def submission_budget_s(attempt: int, deadlines_s: Mapping[OrderStatus, float]) -> float:
    """How long after a job is created it should reach its partner to count as an on-time start.

    A first print waits through intake, rendering and routing/batching: the sum of those stage deadlines.
    A reprint is created at the failed QA verdict and needs no new render: the ready-for-production deadline.
    """
    if attempt < 1:
        raise ValueError(f"attempt starts at 1, got {attempt}")
    stages = BEFORE_GATE if attempt == 1 else (OrderStatus.READY_FOR_PRODUCTION,)
    return float(sum(deadlines_s[status] for status in stages))


def stage_of(event_type: str) -> OrderStatus | None:
    """The order status an order-timeline event puts the order in (order.received: accepted); None otherwise."""
    if event_type == "order.received":
        return OrderStatus.ACCEPTED
    entity, _, status = event_type.partition(".")
    if entity != "order":
        return None
    try:
        return OrderStatus(status)
    except ValueError:
        return None


def stage_event_types() -> list[str]:
    """Every timeline type that moves an order into a status, for the stage-latency query."""
    return ["order.received", *(f"order.{status}" for status in OrderStatus)]


# ---- partner scorecards ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReprintCost:
    cents: int
    units: int
    unpriced_units: int  # reprints of a variant with no base cost in the catalogue (not in `cents`)


def reprint_cost(reprints_by_sku: Mapping[str, int], base_cost_cents: Mapping[str, int | None]) -> ReprintCost:
    """What the reprints cost to make: Σ units × the variant's base cost; unknown costs counted apart.

    Raises:
        ValueError: a negative unit count or base cost.
    """
    cents = units = unpriced = 0
    for sku, count in reprints_by_sku.items():
        if count < 0:
            raise ValueError(f"{sku}: {count} reprints")
        cost = base_cost_cents.get(sku)
        units += count
        if cost is None:
            unpriced += count
            continue
        if cost < 0:
            raise ValueError(f"{sku}: base cost {cost} cents")
        cents += count * cost
    return ReprintCost(cents=cents, units=units, unpriced_units=unpriced)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerFacts:
    """Per-partner counts from the read side, in the range."""

    partner_id: str
    name: str
    submitted: int = 0
    on_time: int = 0
    start_decided: int = 0
    inspected: int = 0
    failed: int = 0
    failures_by_reason: Mapping[str, int] = field(default_factory=dict)
    reprints_by_sku: Mapping[str, int] = field(default_factory=dict)


def scorecard(facts: PartnerFacts, *, base_cost_cents: Mapping[str, int | None],
              targets: Mapping[str, Target]) -> dict[str, Any]:
    """One partner's scorecard row: volume, on-time start, defect rate (and by reason), reprints and cost."""
    on_time = rate(facts.on_time, facts.start_decided)
    defects = rate(facts.failed, facts.inspected)
    cost = reprint_cost(facts.reprints_by_sku, base_cost_cents)
    reasons = {reason: rate(n, facts.inspected) for reason, n in sorted(facts.failures_by_reason.items())}
    return {
        "partner": facts.partner_id, "name": facts.name, "volume": facts.submitted,
        "on_time_start": on_time, "on_time_status": str(status_of(on_time, targets["on_time_start"])),
        "started_in_time": facts.on_time, "start_decided": facts.start_decided,
        "defect_rate": defects, "defect_status": str(status_of(defects, targets["defect_rate"])),
        "failed": facts.failed, "inspected": facts.inspected,
        "defects_by_reason": "; ".join(f"{reason} {n}" for reason, n in sorted(facts.failures_by_reason.items())),
        **{f"defect_rate_{reason}": value for reason, value in reasons.items()},
        "reprints": cost.units, "reprint_cost_cents": cost.cents, "unpriced_reprints": cost.unpriced_units,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricScope:
    """Which events the metrics read: [start, end) in UTC, optionally one partner's work only."""

    start: datetime
    end: datetime
    partner_id: str | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("metric ranges are in UTC: give timezone-aware datetimes")
        if self.end <= self.start:
            raise BadRange(f"the range ends ({self.end:%Y-%m-%d}) before it starts ({self.start:%Y-%m-%d}): "
                            "pick an end date on or after the start date")
