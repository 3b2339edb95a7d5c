"""Read side of the metrics page: each success metric as aggregate SQL over the rows behind it.

Every rate metric is a "trials" select (one row per checkout, render, job, inspection, label attempt or
notification: `at`, `hit` 0/1, `order_id`, `partner_id`, `ref`) that the same few aggregates count, bucket and
list; percentiles are nearest-rank, ranked in SQL with window functions. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import Float, String, and_, case, cast, func, literal, null, or_, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement, Select

from core.metrics import (
    METRIC_BY_KEY,
    PERCENTILES,
    TERMINAL,
    MetricResult,
    MetricScope,
    PartnerFacts,
    Target,
    percentile_result,
    scorecard,
    share_result,
    stage_event_types,
    stage_of,
    submission_budget_s,
)
from core.notifications import NotificationStatus
from core.states import Entity, InspectionStatus, JobStatus, OrderStatus, ShipmentStatus
from db import tables as t
from db.queries import Bind, _connected
from db.sql import seconds_between

RENDER_SOURCE = "worker:render"
SHIPPING_SOURCE = "worker:shipping"
NOTIFICATION_DUE = (NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.UNKNOWN)
RENDERED = f"{Entity.ORDER}.{OrderStatus.READY_FOR_PRODUCTION}"
HELD = f"{Entity.ORDER}.{OrderStatus.ON_HOLD}"
LABEL_BOUGHT = f"{Entity.SHIPMENT}.{ShipmentStatus.PURCHASED}"
SUBMITTED = f"{Entity.JOB}.{JobStatus.SUBMITTED}"
DRILL_LIMIT = 200
GRAINS = ("hour", "day")


# ---- portable SQL pieces -------------------------------------------------------------------------------------


class _bucket(FunctionElement):
    """The UTC hour or day a datetime falls in (text on SQLite, a timestamp on PostgreSQL)."""

    type = String()
    inherit_cache = True
    grain = "hour"


class _hour(_bucket):
    inherit_cache = True  # one class per grain: the grain is part of the compiled SQL, so of the cache key
    grain = "hour"


class _day(_bucket):
    inherit_cache = True
    grain = "day"


def time_bucket(grain: str, column) -> _bucket:
    """The UTC `grain` ("hour" or "day") that `column` falls in."""
    kinds = {"hour": _hour, "day": _day}
    if grain not in kinds:
        raise ValueError(f"grain must be one of {GRAINS}, got {grain!r}")
    return kinds[grain](column)


@compiles(_bucket)
def _bucket_pg(element, compiler, **kw) -> str:
    (column,) = list(element.clauses)
    return f"date_trunc('{element.grain}', {compiler.process(column, **kw)} AT TIME ZONE 'UTC')"


@compiles(_bucket, "sqlite")
def _bucket_sqlite(element, compiler, **kw) -> str:
    (column,) = list(element.clauses)
    pattern = "%Y-%m-%d %H:00:00" if element.grain == "hour" else "%Y-%m-%d 00:00:00"
    return f"strftime('{pattern}', {compiler.process(column, **kw)})"


def _in_range(column, scope: MetricScope) -> ColumnElement[bool]:
    return and_(column >= scope.start, column < scope.end)


def _partner_orders(partner_id: str):
    """Orders with any unit made (or to be made) by the partner."""
    j = t.print_jobs
    return select(j.c.order_id).where(j.c.partner_id == partner_id)


def _trial(at, hit, order_id, partner_id, ref) -> list:
    return [at.label("at"), hit.label("hit"), order_id.label("order_id"), partner_id.label("partner_id"),
            ref.label("ref")]


def _no() -> ColumnElement:
    """A typed NULL, so UNION ALL branches agree on PostgreSQL."""
    return cast(null(), String(80))


# ---- trials per rate metric ---------------------------------------------------------------------------------


def checkout_trials(scope: MetricScope) -> Select:
    """Accepted orders (hit 0) and refused checkouts (hit 1; one per (time, channel), whatever its reasons)."""
    o, r = t.orders, t.intake_rejections
    accepted = select(*_trial(o.c.placed_at, literal(0), o.c.id, _no(), o.c.number)).where(
        _in_range(o.c.placed_at, scope))
    refused = select(*_trial(r.c.at, literal(1), _no(), _no(), r.c.channel)).where(
        _in_range(r.c.at, scope)).group_by(r.c.at, r.c.channel)
    return union_all(accepted, refused)


def _outcome_trials(scope: MetricScope, *, source: str, success: str, failure: str) -> Select:
    e = t.order_events
    statement = select(*_trial(e.c.at, case((e.c.type == success, 1), else_=0), e.c.order_id, _no(),
                               e.c.type)).where(e.c.type.in_((success, failure)), e.c.source == source,
                                                _in_range(e.c.at, scope))
    if scope.partner_id:
        statement = statement.where(e.c.order_id.in_(_partner_orders(scope.partner_id)))
    return statement


def render_trials(scope: MetricScope) -> Select:
    """Render worker outcomes: ready for production (hit) or on hold."""
    return _outcome_trials(scope, source=RENDER_SOURCE, success=RENDERED, failure=HELD)


def label_trials(scope: MetricScope) -> Select:
    """Label attempts: a shipment bought (hit), or the shipping worker holding the order."""
    return _outcome_trials(scope, source=SHIPPING_SOURCE, success=LABEL_BOUGHT, failure=HELD)


def on_time_trials(scope: MetricScope, *, now: datetime, deadlines_s: Mapping[OrderStatus, float]) -> Select:
    """Jobs created in the range: submitted within budget (hit), late, or still unsubmitted past the budget."""
    j = t.print_jobs
    first, reprint = submission_budget_s(1, deadlines_s), submission_budget_s(2, deadlines_s)
    budget = case((j.c.attempt > 1, literal(reprint, Float())), else_=literal(first, Float()))
    in_time = case((seconds_between(j.c.created_at, j.c.submitted_at) <= budget, 1), else_=0)
    # submitted_at is stamped with the job.submitted transition (the partner panel reads the same stamp).
    submitted = (select(*_trial(j.c.created_at, in_time, j.c.order_id, j.c.partner_id, j.c.id))
                 .where(j.c.submitted_at >= scope.start, _in_range(j.c.created_at, scope)))
    overdue = or_(and_(j.c.attempt == 1, j.c.created_at < now - timedelta(seconds=first)),
                  and_(j.c.attempt > 1, j.c.created_at < now - timedelta(seconds=reprint)))
    waiting = select(*_trial(j.c.created_at, literal(0), j.c.order_id, j.c.partner_id, j.c.id)).where(
        j.c.status.in_([JobStatus.PENDING, JobStatus.BATCHED]), _in_range(j.c.created_at, scope), overdue)
    if scope.partner_id:
        submitted = submitted.where(j.c.partner_id == scope.partner_id)
        waiting = waiting.where(j.c.partner_id == scope.partner_id)
    return union_all(submitted, waiting)


def defect_trials(scope: MetricScope) -> Select:
    """QA verdicts: inspection.failed (hit, ref = its reason code) or inspection.passed."""
    e, i, j = t.order_events, t.inspections, t.print_jobs
    failed = f"{Entity.INSPECTION}.{InspectionStatus.FAILED}"
    reason = case((e.c.type == failed, e.c.payload["reason"].as_string()), else_=literal(None, String()))
    statement = (select(*_trial(e.c.at, case((e.c.type == failed, 1), else_=0), e.c.order_id, j.c.partner_id,
                                func.coalesce(reason, "")))
                 .select_from(e).join(i, i.c.id == e.c.payload["entity_id"].as_string())
                 .join(j, j.c.id == i.c.job_id)
                 .where(e.c.type.in_((failed, f"{Entity.INSPECTION}.{InspectionStatus.PASSED}")),
                        _in_range(e.c.at, scope)))
    if scope.partner_id:
        statement = statement.where(j.c.partner_id == scope.partner_id)
    return statement


def notification_trials(scope: MetricScope) -> Select:
    """Notifications due (created in the range, settled): sent (hit), failed or unknown outcome."""
    n = t.notifications
    sent = case((n.c.status == NotificationStatus.SENT, 1), else_=0)
    statement = select(*_trial(n.c.created_at, sent, n.c.order_id, _no(), n.c.id)).where(
        n.c.status.in_(NOTIFICATION_DUE), _in_range(n.c.created_at, scope))
    if scope.partner_id:
        statement = statement.where(n.c.order_id.in_(_partner_orders(scope.partner_id)))
    return statement


# ---- aggregates over trials ---------------------------------------------------------------------------------


def totals(bind: Bind, trials: Select) -> tuple[int, int]:
    """(hits, trials)."""
    sub = trials.subquery()
    with _connected(bind) as conn:
        hits, n = conn.execute(select(func.coalesce(func.sum(sub.c.hit), 0), func.count()).select_from(sub)).one()
    return int(hits), int(n)


def trend(bind: Bind, trials: Select, grain: str) -> list[dict[str, Any]]:
    """Per UTC hour or day with any trial: bucket, hits, trials (oldest first)."""
    sub = trials.subquery()
    bucket = time_bucket(grain, sub.c.at).label("bucket")
    with _connected(bind) as conn:
        rows = conn.execute(select(bucket, func.sum(sub.c.hit), func.count()).select_from(sub)
                            .group_by(bucket).order_by(bucket)).all()
    return [{"bucket": b, "hits": int(h), "trials": int(n)} for b, h, n in rows]


def per_partner(bind: Bind, trials: Select) -> dict[str, tuple[int, int]]:
    """partner → (hits, trials), trials without a partner left out."""
    sub = trials.subquery()
    with _connected(bind) as conn:
        rows = conn.execute(select(sub.c.partner_id, func.sum(sub.c.hit), func.count())
                            .where(sub.c.partner_id.is_not(None)).group_by(sub.c.partner_id)).all()
    return {partner: (int(h), int(n)) for partner, h, n in rows}


def outcomes(bind: Bind, trials: Select, *, hit: int, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """The trials with `hit` (the failing ones, for the drill-down), newest first, with order numbers."""
    sub = trials.subquery()
    o = t.orders
    with _connected(bind) as conn:
        rows = conn.execute(select(sub.c.at, o.c.number.label("order_number"), sub.c.partner_id, sub.c.ref)
                            .select_from(sub).outerjoin(o, o.c.id == sub.c.order_id).where(sub.c.hit == hit)
                            .order_by(sub.c.at.desc(), sub.c.ref).limit(limit)).all()
    return [row._asdict() for row in rows]


def failed_events(bind: Bind, scope: MetricScope, *, source: str, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """The worker's hold events in the range with why: at, order_number, reason, note (render and label drills)."""
    e, o = t.order_events, t.orders
    statement = (select(e.c.at, o.c.number, e.c.payload).join(o, o.c.id == e.c.order_id)
                 .where(e.c.type == HELD, e.c.source == source, _in_range(e.c.at, scope))
                 .order_by(e.c.at.desc(), e.c.id.desc()).limit(limit))
    if scope.partner_id:
        statement = statement.where(e.c.order_id.in_(_partner_orders(scope.partner_id)))
    with _connected(bind) as conn:
        rows = conn.execute(statement).all()
    return [{"at": at, "order_number": number, "reason": (payload or {}).get("reason", ""),
             "note": (payload or {}).get("note", "")} for at, number, payload in rows]


def rejected_checkouts(bind: Bind, scope: MetricScope, *, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """Refusal rows in the range, newest first: at, channel, code (refused checkouts have no order)."""
    r = t.intake_rejections
    with _connected(bind) as conn:
        rows = conn.execute(select(r.c.at, r.c.channel, r.c.code).where(_in_range(r.c.at, scope))
                            .order_by(r.c.at.desc(), r.c.id.desc()).limit(limit)).all()
    return [row._asdict() for row in rows]


def notification_counts(bind: Bind, scope: MetricScope) -> dict[str, int]:
    """Notifications created in the range, per status (sent, failed, unknown, skipped_opt_out…)."""
    n = t.notifications
    statement = select(n.c.status, func.count()).where(_in_range(n.c.created_at, scope)).group_by(n.c.status)
    if scope.partner_id:
        statement = statement.where(n.c.order_id.in_(_partner_orders(scope.partner_id)))
    with _connected(bind) as conn:
        return {status: int(count) for status, count in conn.execute(statement)}


def failed_notifications(bind: Bind, scope: MetricScope, *, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """Due notifications that did not go out, newest first: at, order_number, milestone, channel, status, error."""
    n, o = t.notifications, t.orders
    statement = (select(n.c.created_at.label("at"), o.c.number.label("order_number"), n.c.milestone, n.c.channel,
                        n.c.status, n.c.attempts, n.c.error)
                 .join(o, o.c.id == n.c.order_id)
                 .where(n.c.status.in_(NOTIFICATION_DUE[1:]), _in_range(n.c.created_at, scope))
                 .order_by(n.c.created_at.desc(), n.c.id).limit(limit))
    if scope.partner_id:
        statement = statement.where(n.c.order_id.in_(_partner_orders(scope.partner_id)))
    with _connected(bind) as conn:
        return [row._asdict() for row in conn.execute(statement)]


# ---- percentiles --------------------------------------------------------------------------------------------


def _rank_of(pct: int, n) -> ColumnElement:
    """core.metrics.nearest_rank in SQL: (pct × n + 99) // 100, integer arithmetic on both databases."""
    return (literal(pct) * n + 99) // 100


def percentiles(bind: Bind, values: Select, *, groups: Iterable[str] = ("grp",),
                pcts: Iterable[int] = PERCENTILES) -> list[dict[str, Any]]:
    """Nearest-rank percentiles of `values` (columns: the group columns and `value`), per group.

    Returns one dict per group: the group columns, n, max and p<pct> for each pct.
    """
    groups = list(groups)
    sub = values.subquery()
    keys = [sub.c[g] for g in groups]
    ranked = select(*keys, sub.c.value,
                    func.row_number().over(partition_by=keys, order_by=sub.c.value).label("rn"),
                    func.count().over(partition_by=keys).label("n")).subquery()
    rkeys = [ranked.c[g] for g in groups]
    columns = [func.max(case((ranked.c.rn == _rank_of(p, ranked.c.n), ranked.c.value))).label(f"p{p}")
               for p in pcts]
    statement = (select(*rkeys, func.max(ranked.c.n).label("n"), func.max(ranked.c.value).label("max"), *columns)
                 .group_by(*rkeys).order_by(*rkeys))
    with _connected(bind) as conn:
        rows = conn.execute(statement).all()
    return [{k: (float(v) if k.startswith("p") or k == "max" else v) for k, v in row._asdict().items()}
            | {"n": int(row.n)} for row in rows]


def retrieval_values(scope: MetricScope) -> Select:
    r = t.asset_retrievals
    return select(literal("print files").label("grp"), r.c.at, r.c.ms.label("value")).where(_in_range(r.c.at, scope))


def queue_lag_values(scope: MetricScope) -> Select:
    """Each sample's oldest waiting message age per queue (an empty queue has no lag: 0 s)."""
    q = t.queue_samples
    return select(q.c.queue.label("grp"), q.c.at, func.coalesce(q.c.oldest_age_s, 0.0).label("value")).where(
        _in_range(q.c.at, scope))


def bucketed(values: Select, grain: str) -> Select:
    """The same values, grouped by (bucket, group) for trend lines."""
    sub = values.subquery()
    return select(time_bucket(grain, sub.c.at).label("bucket"), sub.c.grp, sub.c.value)


def slowest(bind: Bind, values: Select, *, above: float, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """Values over `above` (the target), slowest first: at, group, value."""
    sub = values.subquery()
    with _connected(bind) as conn:
        rows = conn.execute(select(sub.c.at, sub.c.grp, sub.c.value).where(sub.c.value >= above)
                            .order_by(sub.c.value.desc(), sub.c.at).limit(limit)).all()
    return [row._asdict() for row in rows]


def stage_stays(scope: MetricScope, *, now: datetime) -> Select:
    """Each stay of an order in a non-final status that began in the range: grp (its event type), at, value (s).

    A stay ends at the order's next status event; one still going counts up to `now`, so stuck orders show.
    """
    e = t.order_events
    types = stage_event_types()
    left_at = func.lead(e.c.at).over(partition_by=e.c.order_id, order_by=(e.c.at, e.c.id))
    moves = select(e.c.order_id, e.c.type, e.c.at, left_at.label("left_at")).where(
        e.c.type.in_(types), e.c.at >= scope.start)
    if scope.partner_id:
        moves = moves.where(e.c.order_id.in_(_partner_orders(scope.partner_id)))
    sub = moves.subquery()
    final = [f"{Entity.ORDER}.{status}" for status in TERMINAL]
    ended = func.coalesce(sub.c.left_at, literal(now, t.order_events.c.at.type))
    return select(sub.c.type.label("grp"), sub.c.at, seconds_between(sub.c.at, ended).label("value"),
                  sub.c.order_id).where(sub.c.at < scope.end, sub.c.type.not_in(final))


def stage_latency(bind: Bind, scope: MetricScope, *, now: datetime) -> list[dict[str, Any]]:
    """Per order status: stays, p50, p95, p99 and max in seconds, in lifecycle order."""
    rows = {row["grp"]: row for row in percentiles(bind, stage_stays(scope, now=now))}
    out = []
    for event_type in stage_event_types():
        status = stage_of(event_type)
        if event_type in rows and status is not None:
            out.append({"stage": str(status), **{k: v for k, v in rows[event_type].items() if k != "grp"}})
    return out


def slowest_stays(bind: Bind, scope: MetricScope, *, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """The longest stays, longest first: order_number, stage, entered, seconds."""
    sub = stage_stays(scope, now=now).subquery()
    o = t.orders
    with _connected(bind) as conn:
        rows = conn.execute(select(o.c.number, sub.c.grp, sub.c.at, sub.c.value).join(o, o.c.id == sub.c.order_id)
                            .order_by(sub.c.value.desc(), sub.c.at).limit(limit)).all()
    return [{"order_number": number, "stage": str(stage_of(grp)), "entered": at, "seconds": float(value)}
            for number, grp, at, value in rows]


# ---- partner scorecards ---------------------------------------------------------------------------------


def partners(bind: Bind) -> list[dict[str, Any]]:
    p = t.partners
    with _connected(bind) as conn:
        return [row._asdict() for row in conn.execute(select(p.c.id, p.c.name, p.c.active).order_by(p.c.id))]


def submitted_per_partner(bind: Bind, scope: MetricScope) -> dict[str, int]:
    """Jobs handed to each partner in the range (their submission stamps)."""
    j = t.print_jobs
    statement = (select(j.c.partner_id, func.count())
                 .where(_in_range(j.c.submitted_at, scope), j.c.partner_id.is_not(None))
                 .group_by(j.c.partner_id))
    if scope.partner_id:
        statement = statement.where(j.c.partner_id == scope.partner_id)
    with _connected(bind) as conn:
        return {partner: int(n) for partner, n in conn.execute(statement)}


def failures_by_reason(bind: Bind, scope: MetricScope) -> dict[str, dict[str, int]]:
    """partner → reason code → failed inspections in the range."""
    sub = defect_trials(scope).subquery()
    with _connected(bind) as conn:
        rows = conn.execute(select(sub.c.partner_id, sub.c.ref, func.count()).where(sub.c.hit == 1)
                            .group_by(sub.c.partner_id, sub.c.ref)).all()
    out: dict[str, dict[str, int]] = {}
    for partner, reason, n in rows:
        out.setdefault(partner or "", {})[reason or "unspecified"] = int(n)
    return out


def reprints_per_partner(bind: Bind, scope: MetricScope) -> dict[str, dict[str, int]]:
    """partner that printed the failed unit → SKU → reprints created in the range."""
    r, failed, line = t.print_jobs.alias("reprint"), t.print_jobs.alias("failed"), t.order_lines
    statement = (select(failed.c.partner_id, line.c.sku, func.count()).select_from(r)
                 .join(failed, failed.c.id == r.c.reprint_of).join(line, line.c.id == r.c.line_id)
                 .where(r.c.reprint_of.is_not(None), _in_range(r.c.created_at, scope))
                 .group_by(failed.c.partner_id, line.c.sku))
    if scope.partner_id:
        statement = statement.where(failed.c.partner_id == scope.partner_id)
    out: dict[str, dict[str, int]] = {}
    with _connected(bind) as conn:
        for partner, sku, n in conn.execute(statement):
            out.setdefault(partner or "", {})[sku] = int(n)
    return out


def reprints(bind: Bind, scope: MetricScope, *, limit: int = DRILL_LIMIT) -> list[dict[str, Any]]:
    """The reprints behind the scorecards, newest first: at, order_number, partner, sku, reason, base cost."""
    r, failed, line, v, o = (t.print_jobs.alias("reprint"), t.print_jobs.alias("failed"), t.order_lines,
                             t.variants, t.orders)
    statement = (select(r.c.created_at.label("at"), o.c.number.label("order_number"),
                        failed.c.partner_id.label("partner"), line.c.sku, r.c.reason_code.label("reason"),
                        r.c.attempt, v.c.base_cost_cents)
                 .select_from(r).join(failed, failed.c.id == r.c.reprint_of).join(line, line.c.id == r.c.line_id)
                 .join(o, o.c.id == r.c.order_id).outerjoin(v, v.c.sku == line.c.sku)
                 .where(r.c.reprint_of.is_not(None), _in_range(r.c.created_at, scope))
                 .order_by(r.c.created_at.desc(), r.c.id).limit(limit))
    if scope.partner_id:
        statement = statement.where(failed.c.partner_id == scope.partner_id)
    with _connected(bind) as conn:
        return [row._asdict() for row in conn.execute(statement)]


def base_costs(bind: Bind, skus: Iterable[str]) -> dict[str, int | None]:
    """SKU → base cost in cents (None where the catalogue has none)."""
    skus = sorted(set(skus))
    if not skus:
        return {}
    v = t.variants
    with _connected(bind) as conn:
        found = dict(conn.execute(select(v.c.sku, v.c.base_cost_cents).where(v.c.sku.in_(skus))).all())
    return {sku: found.get(sku) for sku in skus}


# ---- the page's figures, assembled ---------------------------------------------------------------------------


def success_metrics(bind: Bind, scope: MetricScope, *, now: datetime, targets: Mapping[str, Target],
                    deadlines_s: Mapping[OrderStatus, float]) -> list[MetricResult]:
    """Every success metric over `scope`, in the guide's stage order, with the counts behind each."""
    spec = METRIC_BY_KEY
    unscoped = replace(scope, partner_id=None)  # checkout, render, storage and queues come before any partner
    results = []
    refused, checkouts = totals(bind, checkout_trials(unscoped))
    results.append(share_result(spec["validation_errors"], refused, checkouts, targets["validation_errors"]))
    rendered, renders = totals(bind, render_trials(unscoped))
    results.append(share_result(spec["asset_generation"], rendered, renders, targets["asset_generation"]))
    retrievals = {row["grp"]: row for row in percentiles(bind, retrieval_values(unscoped))}
    results.append(percentile_result(spec["retrieval_latency_p95"], retrievals, 95, targets["retrieval_latency_p95"]))
    lag = {row["grp"]: row for row in percentiles(bind, queue_lag_values(unscoped))}
    results.append(percentile_result(spec["queue_lag_p95"], lag, 95, targets["queue_lag_p95"]))
    results.append(percentile_result(spec["queue_lag_p99"], lag, 99, targets["queue_lag_p99"]))
    in_time, decided = totals(bind, on_time_trials(scope, now=now, deadlines_s=deadlines_s))
    results.append(share_result(spec["on_time_start"], in_time, decided, targets["on_time_start"]))
    failed, inspected = totals(bind, defect_trials(scope))
    results.append(share_result(spec["defect_rate"], failed, inspected, targets["defect_rate"]))
    bought, attempts = totals(bind, label_trials(scope))
    results.append(share_result(spec["label_success"], bought, attempts, targets["label_success"]))
    sent, due = totals(bind, notification_trials(scope))
    counts = notification_counts(bind, scope)
    not_due = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()) if status not in NOTIFICATION_DUE)
    results.append(share_result(spec["notification_delivery"], sent, due, targets["notification_delivery"],
                                detail=f"failed {counts.get('failed', 0)}, unknown {counts.get('unknown', 0)}"
                                       + (f"; not due: {not_due}" if not_due else "")))
    return results


def trials_for(key: str, scope: MetricScope, *, now: datetime,
               deadlines_s: Mapping[OrderStatus, float]) -> Select | None:
    """The trials select behind a rate metric (None for the percentile metrics)."""
    unscoped = replace(scope, partner_id=None)
    return {
        "validation_errors": lambda: checkout_trials(unscoped),
        "asset_generation": lambda: render_trials(unscoped),
        "on_time_start": lambda: on_time_trials(scope, now=now, deadlines_s=deadlines_s),
        "defect_rate": lambda: defect_trials(scope),
        "label_success": lambda: label_trials(scope),
        "notification_delivery": lambda: notification_trials(scope),
    }.get(key, lambda: None)()


def values_for(key: str, scope: MetricScope) -> Select | None:
    """The values select behind a percentile metric (None for the rate metrics)."""
    unscoped = replace(scope, partner_id=None)
    if key == "retrieval_latency_p95":
        return retrieval_values(unscoped)
    if key in ("queue_lag_p95", "queue_lag_p99"):
        return queue_lag_values(unscoped)
    return None


def partner_scorecards(bind: Bind, scope: MetricScope, *, now: datetime, targets: Mapping[str, Target],
                       deadlines_s: Mapping[OrderStatus, float]) -> list[dict[str, Any]]:
    """One scorecard per partner (just the chosen one when the scope names a partner)."""
    volume = submitted_per_partner(bind, scope)
    on_time = per_partner(bind, on_time_trials(scope, now=now, deadlines_s=deadlines_s))
    defects = per_partner(bind, defect_trials(scope))
    reasons = failures_by_reason(bind, scope)
    reprinted = reprints_per_partner(bind, scope)
    costs = base_costs(bind, (sku for by_sku in reprinted.values() for sku in by_sku))
    cards = []
    for partner in partners(bind):
        pid = partner["id"]
        if scope.partner_id and pid != scope.partner_id:
            continue
        facts = PartnerFacts(partner_id=pid, name=partner["name"], submitted=volume.get(pid, 0),
                             on_time=on_time.get(pid, (0, 0))[0], start_decided=on_time.get(pid, (0, 0))[1],
                             inspected=defects.get(pid, (0, 0))[1], failed=defects.get(pid, (0, 0))[0],
                             failures_by_reason=reasons.get(pid, {}), reprints_by_sku=reprinted.get(pid, {}))
        cards.append(scorecard(facts, base_cost_cents=costs, targets=targets))
    return cards
