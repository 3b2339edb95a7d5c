"""Monitors, pure: measurements + per-stage thresholds → the alert conditions that should be open now.

The scheduler measures (queue stats from the broker, orders and jobs past their stage deadline, parcels with no
carrier scan) and `core.services.monitor` reconciles `evaluate`'s answer against the open alerts: a condition
not yet open is raised, a changed one updated, and an open monitor alert whose condition ended is cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from core.errors import PressroomError
from core.settings import Settings
from core.states import JobStatus, OrderStatus

THRESHOLDS_KEY = "monitor_thresholds"
"""The settings row holding staff's overrides of the thresholds (see `thresholds_to_document`)."""


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class MonitorKind(StrEnum):
    """Alert kinds the monitor owns: it raises and clears them by itself (exception-inbox kinds it never touches)."""

    QUEUE_DEPTH = "queue_depth"
    QUEUE_AGE = "queue_age"
    ERROR_RATE = "error_rate"
    STUCK = "stuck"
    SILENT_PARCEL = "silent_parcel"
    MONITOR_CONFIG = "monitor_config"


MONITOR_KINDS: frozenset[str] = frozenset(MonitorKind)
QUEUE_METRICS = ("depth", "oldest_age_s", "dead_lettered")
"""The per-queue measures, in the words of the thresholds document."""
_QUEUE_KIND = {"depth": MonitorKind.QUEUE_DEPTH, "oldest_age_s": MonitorKind.QUEUE_AGE,
               "dead_lettered": MonitorKind.ERROR_RATE}
EXAMPLES = 5
"""How many stuck orders, jobs or parcels an alert names (the rest are counted)."""


class MonitorSettingsInvalid(PressroomError):
    """A threshold is not a number, negative, or its critical level is below its warning level."""

    code = "monitor_settings_invalid"


# ---- thresholds ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """Above `warning` a condition opens as a warning; above `critical` it is critical."""

    warning: float
    critical: float

    def __post_init__(self) -> None:
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise MonitorSettingsInvalid(f"A {name} threshold must be a number of at least 0, not {value!r}.")
        if self.critical < self.warning:
            raise MonitorSettingsInvalid(f"The critical threshold ({self.critical:g}) must not be below the warning "
                                         f"threshold ({self.warning:g}).")

    def severity(self, value: float) -> Severity | None:
        if value > self.critical:
            return Severity.CRITICAL
        if value > self.warning:
            return Severity.WARNING
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueThresholds:
    depth: Limit
    oldest_age_s: Limit
    dead_lettered: Limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Every stage's limits. A queue, order status or job status absent from its mapping is not monitored.

    `orders`/`jobs` limits are seconds in that status; `silent_parcel_days` is days since the last carrier scan.
    """

    queues: Mapping[str, QueueThresholds]
    orders: Mapping[OrderStatus, Limit]
    jobs: Mapping[JobStatus, Limit]
    silent_parcel_days: Limit
    error_window_s: float = 900.0


STUCK_CRITICAL_FACTOR = 3.0
"""By default a stage deadline is the warning level and three deadlines the critical one."""


def default_thresholds(settings: Settings) -> Thresholds:
    """The thresholds in force until staff store others: the settings' stage deadlines and queue limits."""
    return Thresholds(
        queues=MappingProxyType({queue: QueueThresholds(**{m: Limit(warning=float(levels[m][0]),
                                                                    critical=float(levels[m][1]))
                                                           for m in QUEUE_METRICS})
                                 for queue, levels in settings.queue_thresholds.items()}),
        orders=MappingProxyType({status: Limit(warning=s, critical=s * STUCK_CRITICAL_FACTOR)
                                 for status, s in settings.stage_deadlines_s.items()}),
        jobs=MappingProxyType({status: Limit(warning=s, critical=s * STUCK_CRITICAL_FACTOR)
                               for status, s in settings.job_deadlines_s.items()}),
        silent_parcel_days=Limit(warning=settings.no_scan_days, critical=2 * settings.no_scan_days),
        error_window_s=settings.monitor_error_window_s)


def _limit_doc(limit: Limit) -> dict[str, float]:
    return {"warning": limit.warning, "critical": limit.critical}


def thresholds_to_document(thresholds: Thresholds) -> dict[str, Any]:
    """The JSON stored under THRESHOLDS_KEY: every limit as {"warning": …, "critical": …}."""
    return {"error_window_s": thresholds.error_window_s,
            "queues": {q: {m: _limit_doc(getattr(limits, m)) for m in QUEUE_METRICS}
                       for q, limits in thresholds.queues.items()},
            "orders": {str(s): _limit_doc(limit) for s, limit in thresholds.orders.items()},
            "jobs": {str(s): _limit_doc(limit) for s, limit in thresholds.jobs.items()},
            "silent_parcel_days": _limit_doc(thresholds.silent_parcel_days)}


def _limit(raw: Any, default: Limit, where: str) -> Limit:
    if not isinstance(raw, Mapping):
        raise MonitorSettingsInvalid(f"{where}: expected warning and critical levels, got {raw!r}.")
    try:
        return Limit(warning=raw.get("warning", default.warning), critical=raw.get("critical", default.critical))
    except MonitorSettingsInvalid as error:
        raise MonitorSettingsInvalid(f"{where}: {error.message}") from error


def _merge(raw: Any, defaults: Mapping, parse_key, where: str) -> dict:
    merged = dict(defaults)
    if raw is None:
        return merged
    if not isinstance(raw, Mapping):
        raise MonitorSettingsInvalid(f"{where}: expected a mapping, got {raw!r}.")
    for name, value in raw.items():
        try:
            key = parse_key(name)
        except ValueError as error:
            raise MonitorSettingsInvalid(f"{where}: unknown stage {name!r}.") from error
        merged[key] = value
    return merged


def thresholds_from_document(document: Mapping[str, Any] | None, *, defaults: Thresholds) -> Thresholds:
    """Stored limits over `defaults`, limit by limit (anything not stored keeps its default).

    Raises:
        MonitorSettingsInvalid: a stored limit is not a number, is negative, or has critical below warning.
    """
    document = document or {}
    queues = {}
    for queue, raw in _merge(document.get("queues"), defaults.queues, str, "queues").items():
        base = defaults.queues.get(queue) or next(iter(defaults.queues.values()))
        if isinstance(raw, QueueThresholds):
            queues[queue] = raw
            continue
        if not isinstance(raw, Mapping):
            raise MonitorSettingsInvalid(f"queues.{queue}: expected its limits, got {raw!r}.")
        queues[queue] = QueueThresholds(**{m: _limit(raw.get(m, _limit_doc(getattr(base, m))), getattr(base, m),
                                                     f"queues.{queue}.{m}") for m in QUEUE_METRICS})

    def limits(section: str, parse) -> dict:
        merged = _merge(document.get(section), getattr(defaults, section), parse, section)
        return {k: v if isinstance(v, Limit) else _limit(v, getattr(defaults, section).get(k, Limit(
            warning=0.0, critical=0.0)), f"{section}.{k}") for k, v in merged.items()}

    window = document.get("error_window_s", defaults.error_window_s)
    if isinstance(window, bool) or not isinstance(window, int | float) or not math.isfinite(window) or window <= 0:
        raise MonitorSettingsInvalid(f"error_window_s must be a number of seconds above 0, not {window!r}.")
    silent = document.get("silent_parcel_days")
    return Thresholds(queues=MappingProxyType(queues), orders=MappingProxyType(limits("orders", OrderStatus)),
                      jobs=MappingProxyType(limits("jobs", JobStatus)),
                      silent_parcel_days=(defaults.silent_parcel_days if silent is None else
                                          _limit(silent, defaults.silent_parcel_days, "silent_parcel_days")),
                      error_window_s=float(window))


# ---- measurements and conditions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMeasure:
    """One stage queue now: messages waiting, the oldest one's age, messages dead-lettered in the window."""

    queue: str
    depth: int
    oldest_age_s: float | None
    dead_lettered: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckItem:
    """An order or print job and since when it has been in its status."""

    entity: str  # "order" | "job"
    id: str
    label: str  # what staff search by: the order number (a job's order number)
    status: str
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SilentParcel:
    """A bought parcel and the time of its last carrier scan (or of its last status change, without scans)."""

    order_id: str
    label: str
    tracking_code: str
    last_heard_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurements:
    queues: tuple[QueueMeasure, ...] = ()
    stuck: tuple[StuckItem, ...] = ()
    silent: tuple[SilentParcel, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """An alert that should be open: one per (kind, key)."""

    kind: MonitorKind
    key: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ident(self) -> tuple[str, str]:
        return (str(self.kind), self.key)


def _count(n: int, noun: str) -> str:
    """"1 order", "3 orders", "1,200 messages"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _queue_conditions(measure: QueueMeasure, limits: QueueThresholds, window_s: float) -> Iterable[Condition]:
    values = {"depth": measure.depth, "oldest_age_s": measure.oldest_age_s or 0.0,
              "dead_lettered": measure.dead_lettered}
    for metric in QUEUE_METRICS:
        limit: Limit = getattr(limits, metric)
        severity = limit.severity(values[metric])
        if severity is None:
            continue
        value, queue = values[metric], measure.queue
        if metric == "depth":
            message = (f"Queue {queue}: {_count(value, 'message')} waiting (warning above {limit.warning:,.0f}, "
                       f"critical above {limit.critical:,.0f}).")
        elif metric == "oldest_age_s":
            message = (f"Queue {queue}: the oldest message has waited {_age(value)} (warning above "
                       f"{_age(limit.warning)}, critical above {_age(limit.critical)}).")
        else:
            message = (f"Queue {queue}: {_count(value, 'message')} dead-lettered in the last {_age(window_s)} (warning "
                       f"above {limit.warning:,.0f}, critical above {limit.critical:,.0f}). Replay them once the "
                       "cause is fixed.")
        yield Condition(kind=_QUEUE_KIND[metric], key=queue, severity=severity, message=message,
                        details={"queue": queue, "metric": metric, "value": value,
                                 "warning": limit.warning, "critical": limit.critical})


def _stuck_conditions(items: Iterable[StuckItem], thresholds: Thresholds, now: datetime) -> Iterable[Condition]:
    groups: dict[tuple[str, str], list[tuple[float, StuckItem, Severity]]] = {}
    for item in items:
        table = thresholds.orders if item.entity == "order" else thresholds.jobs
        limit = table.get(item.status)  # type: ignore[call-overload]
        if limit is None:
            continue
        age = (now - item.since).total_seconds()
        severity = limit.severity(age)
        if severity is not None:
            groups.setdefault((item.entity, item.status), []).append((age, item, severity))
    for (entity, status), stuck in sorted(groups.items()):
        stuck.sort(key=lambda entry: -entry[0])
        limit = (thresholds.orders if entity == "order" else thresholds.jobs)[status]  # type: ignore[index]
        severity = Severity.CRITICAL if any(s is Severity.CRITICAL for _, _, s in stuck) else Severity.WARNING
        names = ", ".join(item.label for _, item, _ in stuck[:EXAMPLES])
        more = f" and {len(stuck) - EXAMPLES} more" if len(stuck) > EXAMPLES else ""
        noun = "order" if entity == "order" else "print job"
        message = (f"{_count(len(stuck), noun)} stuck in {status.replace('_', ' ')} past the {_age(limit.warning)} "
                   f"deadline (oldest {_age(stuck[0][0])}): {names}{more}.")
        yield Condition(kind=MonitorKind.STUCK, key=f"{entity}:{status}", severity=severity, message=message,
                        details={"entity": entity, "status": status, "count": len(stuck),
                                 "ids": [item.id for _, item, _ in stuck[:50]],
                                 "oldest_s": stuck[0][0], "deadline_s": limit.warning})


def _silent_conditions(parcels: Iterable[SilentParcel], limit: Limit, now: datetime) -> Iterable[Condition]:
    silent = []
    for parcel in parcels:
        days = (now - parcel.last_heard_at).total_seconds() / 86400
        severity = limit.severity(days)
        if severity is not None:
            silent.append((days, parcel, severity))
    if not silent:
        return
    silent.sort(key=lambda entry: -entry[0])
    severity = Severity.CRITICAL if any(s is Severity.CRITICAL for _, _, s in silent) else Severity.WARNING
    names = ", ".join(f"{p.label} ({p.tracking_code})" for _, p, _ in silent[:EXAMPLES])
    more = f" and {len(silent) - EXAMPLES} more" if len(silent) > EXAMPLES else ""
    yield Condition(kind=MonitorKind.SILENT_PARCEL, key="shipments", severity=severity,
                    message=(f"{_count(len(silent), 'shipped parcel')} with no carrier scan for over "
                             f"{limit.warning:g} days (longest {silent[0][0]:.1f} days): {names}{more}."),
                    details={"count": len(silent), "order_ids": [p.order_id for _, p, _ in silent[:50]],
                             "longest_days": silent[0][0], "days": limit.warning})


def evaluate(measurements: Measurements, thresholds: Thresholds, *, now: datetime) -> dict[tuple[str, str], Condition]:
    """The conditions that should be open now, by (kind, key).

    Monotone in the thresholds: raising any limit never opens a condition and never raises a severity. A queue
    without thresholds of its own is held to the first configured queue's (no stage goes unwatched).
    """
    conditions: list[Condition] = []
    fallback = next(iter(thresholds.queues.values()), None)
    for measure in measurements.queues:
        limits = thresholds.queues.get(measure.queue, fallback)
        if limits is not None:
            conditions.extend(_queue_conditions(measure, limits, thresholds.error_window_s))
    conditions.extend(_stuck_conditions(measurements.stuck, thresholds, now))
    conditions.extend(_silent_conditions(measurements.silent, thresholds.silent_parcel_days, now))
    return {c.ident: c for c in conditions}


# ---- reconciling against open alerts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPlan:
    """What to do to the open alerts: raise these (new), update these (changed), clear these (condition ended)."""

    raise_: tuple[Condition, ...] = ()
    update: tuple[Condition, ...] = ()
    clear: tuple[tuple[str, str], ...] = ()


def plan_alerts(open_alerts: Mapping[tuple[str, str], tuple[str, str]],
                conditions: Mapping[tuple[str, str], Condition]) -> AlertPlan:
    """Compare open alerts ((kind, key) → (severity, message)) with the conditions that should be open.

    Only monitor kinds are considered: an open alert of another kind (the exception inbox) is never cleared.
    """
    mine = {ident: seen for ident, seen in open_alerts.items() if ident[0] in MONITOR_KINDS}
    raise_ = tuple(c for ident, c in sorted(conditions.items()) if ident not in mine)
    update = tuple(c for ident, c in sorted(conditions.items())
                   if ident in mine and mine[ident] != (str(c.severity), c.message))
    clear = tuple(ident for ident in sorted(mine) if ident not in conditions)
    return AlertPlan(raise_=raise_, update=update, clear=clear)
