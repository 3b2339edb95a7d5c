"""Read side of the dashboard: index-friendly Core selects returning plain dicts, lists and DataFrames."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    case,
    func,
    or_,
    select,
    type_coerce,
    union,
    union_all,
)

from core.states import BatchStatus, Channel, InspectionStatus, JobStatus, OrderStatus
from db import tables as t
from db.sql import seconds_between
from db.types import keyring

if TYPE_CHECKING:  # pandas is imported by the dashboard reads that use it: a quarter of a worker's boot CPU
    import pandas as pd

SEARCH_LIMIT = 50

Bind = Engine | Connection


@contextmanager
def _connected(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


# ---- control room ------------------------------------------------------------------------------------


FINISHED = (OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED)


def orders_per_status(bind: Bind, *, finished_since: datetime) -> pd.DataFrame:
    """One row per order status (all statuses, zeros included, in lifecycle order): status, orders.

    Open statuses count every order in them; the final ones (delivered, cancelled, failed) only orders that
    reached them since `finished_since`. Both are range scans of the (status, status_changed_at) index, so
    the cost follows the open work and the day's throughput, not every order ever taken.
    """
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    o = t.orders
    still_open = select(o.c.status, func.count()).where(o.c.status.in_([s for s in OrderStatus if s not in FINISHED]))
    recently_finished = select(o.c.status, func.count()).where(o.c.status.in_(FINISHED),
                                                               o.c.status_changed_at >= finished_since)
    with _connected(bind) as conn:
        counts = {str(status): n for status, n in conn.execute(
            union_all(still_open.group_by(o.c.status), recently_finished.group_by(o.c.status)))}
    return pd.DataFrame({"status": [str(s) for s in OrderStatus],
                         "orders": [counts.get(str(s), 0) for s in OrderStatus]})


def intake_per_minute(bind: Bind, *, now: datetime, minutes: int = 60) -> pd.DataFrame:
    """Orders placed per minute over the last `minutes` (every minute present, zeros included)."""
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    o = t.orders
    since = now - timedelta(minutes=minutes)
    with _connected(bind) as conn:
        placed = list(conn.scalars(select(o.c.placed_at).where(o.c.placed_at >= since)))
    end = pd.Timestamp(now).floor("min")
    grid = pd.date_range(end=end, periods=minutes + 1, freq="min")
    counts = pd.Series(1, index=pd.DatetimeIndex(placed, tz="UTC")).resample("min").sum() if placed else None
    per_minute = counts.reindex(grid, fill_value=0) if counts is not None else pd.Series(0, index=grid)
    return pd.DataFrame({"minute": grid, "orders": per_minute.to_numpy(dtype="int64")})


def intake_outcomes(bind: Bind, *, since: datetime) -> dict[str, int]:
    """Checkouts accepted (orders placed) and refused (rejected checkouts) since `since`."""
    o, r = t.orders, t.intake_rejections
    # A refused checkout writes one row per distinct reason, all with the same time and channel.
    refused = select(r.c.at, r.c.channel).where(r.c.at >= since).group_by(r.c.at, r.c.channel).subquery()
    with _connected(bind) as conn:
        accepted = conn.scalar(select(func.count()).select_from(o).where(o.c.placed_at >= since)) or 0
        rejected = conn.scalar(select(func.count()).select_from(refused)) or 0
    return {"accepted": int(accepted), "rejected": int(rejected)}


def rejection_reasons(bind: Bind, *, since: datetime) -> pd.DataFrame:
    """Why checkouts were refused since `since`: code, count — most frequent first."""
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    r = t.intake_rejections
    n = func.count().label("count")
    with _connected(bind) as conn:
        rows = conn.execute(select(r.c.code, n).where(r.c.at >= since).group_by(r.c.code)
                            .order_by(n.desc(), r.c.code)).all()
    return pd.DataFrame(rows, columns=["code", "count"])


def latest_queue_samples(bind: Bind) -> list[dict[str, Any]]:
    """The newest sample of each queue: queue, at, depth, delayed, dead, oldest_age_s (by queue name)."""
    q = t.queue_samples
    newest = select(q.c.queue, func.max(q.c.at).label("at")).group_by(q.c.queue).subquery()
    with _connected(bind) as conn:
        rows = conn.execute(select(q.c.queue, q.c.at, q.c.depth, q.c.delayed, q.c.dead, q.c.oldest_age_s)
                            .join(newest, (q.c.queue == newest.c.queue) & (q.c.at == newest.c.at))
                            .order_by(q.c.queue, q.c.id.desc())).all()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # two samples with the same time: keep the later insert
        latest.setdefault(row.queue, row._asdict())
    return list(latest.values())


def queue_series(bind: Bind, *, since: datetime) -> pd.DataFrame:
    """Samples since `since`, oldest first, for sparklines: at, queue, depth, oldest_age_s."""
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    q = t.queue_samples
    with _connected(bind) as conn:
        rows = conn.execute(select(q.c.at, q.c.queue, q.c.depth, q.c.oldest_age_s).where(q.c.at >= since)
                            .order_by(q.c.at, q.c.id)).all()
    return pd.DataFrame(rows, columns=["at", "queue", "depth", "oldest_age_s"])


# ---- orders ------------------------------------------------------------------------------------------


def _summary_select():
    o, c = t.orders, t.customers
    # Selecting the table column (not a text expression) lets EncryptedText decrypt the name on the way out.
    return (select(o.c.id, o.c.number, o.c.status, o.c.placed_at, c.c.name_enc.label("customer"),
                   o.c.total_cents, o.c.currency)
            .join(c, c.c.id == o.c.customer_id))


def _summaries(conn: Connection, statement) -> list[dict[str, Any]]:
    return [_plain(row._asdict()) for row in conn.execute(statement)]


def recent_orders(bind: Bind, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest orders: id, number, status, placed_at, customer, total_cents, currency."""
    with _connected(bind) as conn:
        return _summaries(conn, _summary_select().order_by(t.orders.c.placed_at.desc()).limit(limit))


def search_orders(bind: Bind, term: str, *, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Orders matching one search box: order number, order id, external id, customer e-mail or tracking no.

    Every branch is an equality on an indexed column; the e-mail is matched through its blind index, so
    no customer row is ever decrypted to search. Newest first.
    """
    term = term.strip()
    if not term:
        return []
    o, c, s = t.orders, t.customers, t.shipments
    branches = [
        select(o.c.id).where(o.c.number == term.upper()),
        select(o.c.id).where(o.c.id == term),
        # (channel, external_id) is the unique index: naming every channel lets it serve this lookup.
        select(o.c.id).where(o.c.channel.in_([str(ch) for ch in Channel]), o.c.external_id == term),
        select(s.c.order_id).where(s.c.tracking_code.in_(sorted({term, term.upper()}))),
    ]
    if "@" in term:
        owners = select(c.c.id).where(c.c.email_hash == keyring().blind_index(term))
        branches.append(select(o.c.id).where(o.c.customer_id.in_(owners)))
    hits = union(*branches).subquery()
    statement = (_summary_select().where(o.c.id.in_(select(hits.c[0])))
                 .order_by(o.c.placed_at.desc()).limit(limit))
    with _connected(bind) as conn:
        return _summaries(conn, statement)


def order_detail(bind: Bind, order_id: str) -> dict[str, Any] | None:
    """Everything support reads at the top of an order: the order, its customer, lines, jobs, shipments."""
    o, c, ln, j, s = t.orders, t.customers, t.order_lines, t.print_jobs, t.shipments
    with _connected(bind) as conn:
        row = conn.execute(
            select(o.c.id, o.c.number, o.c.status, o.c.held_from, o.c.hold_reason, o.c.channel,
                   o.c.external_id, o.c.shipping_speed, o.c.total_cents, o.c.currency, o.c.priority,
                   o.c.placed_at, o.c.status_changed_at, c.c.name_enc.label("customer_name"),
                   c.c.email_enc.label("customer_email"))
            .join(c, c.c.id == o.c.customer_id).where(o.c.id == order_id)).first()
        if row is None:
            return None
        lines = conn.execute(
            select(ln.c.id, ln.c.line_no, ln.c.sku, ln.c.quantity, ln.c.texts, ln.c.template_key,
                   ln.c.template_version, ln.c.artwork_id, ln.c.asset_id, ln.c.partner_id,
                   ln.c.unit_price_cents)
            .where(ln.c.order_id == order_id).order_by(ln.c.line_no)).all()
        jobs = conn.execute(
            select(j.c.id, j.c.line_id, j.c.unit_index, j.c.status, j.c.attempt, j.c.reprint_of,
                   j.c.reason_code, j.c.partner_id, j.c.batch_id, j.c.partner_job_id, j.c.status_changed_at)
            .where(j.c.order_id == order_id).order_by(j.c.created_at, j.c.unit_index)).all()
        shipments = conn.execute(
            select(s.c.id, s.c.status, s.c.carrier, s.c.service, s.c.tracking_code, s.c.status_changed_at)
            .where(s.c.order_id == order_id).order_by(s.c.created_at)).all()
    order = _plain(row._asdict())
    line_no = {line.id: line.line_no for line in lines}
    return {
        "order": order,
        "lines": [_plain(line._asdict()) for line in lines],
        "jobs": [_plain(job._asdict()) | {"line_no": line_no.get(job.line_id)} for job in jobs],
        "shipments": [_plain(shipment._asdict()) for shipment in shipments],
    }


def timeline(bind: Bind, order_id: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """The order's timeline, newest first: at, type, source, payload."""
    e = t.order_events
    with _connected(bind) as conn:
        rows = conn.execute(select(e.c.at, e.c.type, e.c.source, e.c.payload).where(e.c.order_id == order_id)
                            .order_by(e.c.at.desc(), e.c.id.desc()).limit(limit)).all()
        events = [row._asdict() for row in rows]
        staff = _staff_actions_not_on_timeline(conn, order_id, events, limit=limit)
    if not staff:
        return events
    return sorted(events + staff, key=lambda line: line["at"], reverse=True)[:limit]


def _staff_actions_not_on_timeline(conn: Connection, order_id: str, events: list[dict[str, Any]], *,
                                   limit: int) -> list[dict[str, Any]]:
    """Audit rows about the order that wrote no timeline line of their own, as staff.action lines.

    Actions that write their own line do so in the same transaction, as `user:<actor>` at the audit row's
    instant: those are on the timeline already and are not repeated.
    """
    a = t.audit_log
    written = {(line["source"], line["at"]) for line in events}
    rows = conn.execute(select(a.c.at, a.c.actor, a.c.action, a.c.target_type, a.c.target_id, a.c.before, a.c.after)
                        .where(a.c.order_id == order_id).order_by(a.c.at.desc(), a.c.id.desc()).limit(limit)).all()
    return [{"at": row.at, "type": "staff.action", "source": f"user:{row.actor}",
             "payload": {"action": row.action, "note": f"{row.actor}: {row.action} on {row.target_type} "
                                                       f"{row.target_id}",
                         "before": row.before, "after": row.after}}
            for row in rows if (f"user:{row.actor}", row.at) not in written]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Stored enums as their string values, so callers and caches hold only builtins."""
    return {key: str(value) if isinstance(value, StrEnum) else value for key, value in row.items()}


# ---- render cache and print files ----------------------------------------------------------------------


def render_cache(bind: Bind) -> dict[str, float]:
    """Distinct designs rendered, cache hits, and the hit ratio (hits / all line renders asked for)."""
    a = t.assets
    with _connected(bind) as conn:
        rendered, hits = conn.execute(select(func.count(), func.coalesce(func.sum(a.c.hits), 0))).one()
    asked = rendered + hits
    return {"rendered": int(rendered), "hits": int(hits), "hit_ratio": (hits / asked) if asked else 0.0}


def retrieval_latency(bind: Bind, *, since: datetime) -> dict[str, float | int | None]:
    """Print-file retrieval latency since `since` (the guide's target: p95 under 200 ms)."""
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    r = t.asset_retrievals
    with _connected(bind) as conn:
        ms = pd.Series(list(conn.scalars(select(r.c.ms).where(r.c.at >= since))), dtype="float64")
    if ms.empty:
        return {"count": 0, "p50_ms": None, "p95_ms": None}
    return {"count": int(ms.size), "p50_ms": float(ms.quantile(0.5)), "p95_ms": float(ms.quantile(0.95))}


def order_assets(bind: Bind, order_id: str) -> list[dict[str, Any]]:
    """Each line's rendered asset: line, SKU, template and pinned version, size, and which files exist."""
    line, a = t.order_lines, t.assets
    with _connected(bind) as conn:
        rows = conn.execute(
            select(line.c.line_no, line.c.sku, line.c.template_key, line.c.template_version, a.c.id,
                   a.c.width, a.c.height, a.c.dpi, a.c.bytes, a.c.pdf_key, a.c.preview_key, a.c.hits)
            .join(a, a.c.id == line.c.asset_id).where(line.c.order_id == order_id).order_by(line.c.line_no)).all()
    return [{"line_no": r.line_no, "sku": r.sku, "template": r.template_key, "version": r.template_version,
             "asset_id": r.id, "size": f"{r.width}×{r.height} px @ {r.dpi} DPI", "bytes": r.bytes,
             "has_pdf": r.pdf_key is not None, "has_preview": r.preview_key is not None, "reused": r.hits}
            for r in rows]


# ---- production: batch builder and partner panel ----------------------------------------------------------


def setting(bind: Bind, key: str) -> Any | None:
    """A stored settings document (weights, policies…), or None when none is stored yet."""
    with _connected(bind) as conn:
        return conn.scalar(select(t.settings.c.value).where(t.settings.c.key == key))


def partner_capacity(bind: Bind) -> dict[str, dict[str, float]]:
    """Active partners' print capacity: partner id → print method → units per hour."""
    p = t.partners
    with _connected(bind) as conn:
        rows = conn.execute(select(p.c.id, p.c.capacity_per_hour).where(p.c.active).order_by(p.c.id)).all()
    return {pid: {method: float(units) for method, units in (capacity or {}).items()} for pid, capacity in rows}


OPEN_JOBS_PER_GROUP = 200
"""How many unbatched jobs of each batching group the batch builder reads: the next few batches' worth."""

GroupCounts = dict[tuple[str, str, str, str], int]


def unbatched_per_group(bind: Bind) -> GroupCounts:
    """Routed jobs in no batch yet, per batching group (partner, product type, print method, region).

    Counted in SQL over the partial index of pending jobs, so the batch builder never loads them all.
    """
    j = t.print_jobs
    key = (j.c.partner_id, j.c.product_type, j.c.print_method, j.c.region)
    with _connected(bind) as conn:
        rows = conn.execute(select(*key, func.count()).where(j.c.status == JobStatus.PENDING,
                                                             j.c.partner_id.is_not(None)).group_by(*key)).all()
    return {(partner, product or "", method or "", region or ""): int(n) for partner, product, method, region, n
            in rows}


def _open_job_select():
    j, o, b = t.print_jobs, t.orders, t.batches
    # Stored words read as plain strings: the page's callers want builtins, and a thousand rows of enum
    # round trips are a measurable share of this read.
    return (select(j.c.id, j.c.order_id, j.c.partner_id, j.c.product_type, j.c.print_method, j.c.region,
                   j.c.priority, j.c.attempt, type_coerce(o.c.shipping_speed, String).label("shipping_speed"),
                   o.c.total_cents.label("order_value_cents"),
                   o.c.placed_at, j.c.batch_id, type_coerce(b.c.status, String).label("batch_status"),
                   b.c.created_at.label("batch_created_at"), b.c.target_size.label("batch_target"),
                   o.c.number.label("order_number"), j.c.unit_index, j.c.created_at)
            .join(o, o.c.id == j.c.order_id))


def _same(column, value: str):
    """Equality on a grouping column whose empty value is stored as NULL (index-friendly either way)."""
    return or_(column.is_(None), column == "") if value == "" else column == value


def open_jobs(bind: Bind, *, per_group: int = OPEN_JOBS_PER_GROUP,
              groups: GroupCounts | None = None) -> list[dict[str, Any]]:
    """Routed jobs not yet at their partner, bounded: every job of an open or held batch (a batch holds at
    most the policy's largest size), and each group's `per_group` most urgent unbatched jobs in queue order.

    One dict per job with the fields of `core.services.batches.OpenJob` (the batcher's grouping facts,
    the priority inputs from the order, and the batch's status, opening time and target). `groups` (from
    `unbatched_per_group`, read in the same transaction) saves counting the groups again.
    """
    j, b = t.print_jobs, t.batches
    groups = unbatched_per_group(bind) if groups is None else groups
    waiting = select(b.c.id).where(b.c.status.in_([BatchStatus.OPEN, BatchStatus.HELD]))
    # Driven from the few open batches through the batch_id index (a join can walk that whole index instead).
    stored = (_open_job_select().join(b, b.c.id == j.c.batch_id)
              .where(j.c.batch_id.is_not(None), j.c.batch_id.in_(waiting), j.c.status == JobStatus.BATCHED))
    heads = [_open_job_select().outerjoin(b, b.c.id == j.c.batch_id)
             .where(j.c.status == JobStatus.PENDING, j.c.partner_id == partner, _same(j.c.product_type, product),
                    _same(j.c.print_method, method), _same(j.c.region, region))
             .order_by(j.c.priority.desc(), j.c.id).limit(per_group).subquery()
             for partner, product, method, region in sorted(groups)]
    with _connected(bind) as conn:
        rows = conn.execute(stored).all()
        if heads:
            rows += conn.execute(union_all(*(select(head) for head in heads))).all()
    rows.sort(key=lambda row: (row.created_at, row.id))
    jobs = []
    fields = rows[0]._fields if rows else ()
    for row in rows:
        job = dict(zip(fields, row, strict=True))
        del job["created_at"]
        job["product_type"], job["print_method"], job["region"] = (row.product_type or "", row.print_method or "",
                                                                   row.region or "")
        jobs.append(job)
    return jobs


AT_PARTNER = (JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING)


def line_load(bind: Bind) -> dict[str, dict[str, int]]:
    """Units ahead of the open batches on each partner × method line: released, submitted, queued, printing."""
    j, b = t.print_jobs, t.batches
    key = (j.c.partner_id, j.c.print_method)
    # Two range scans (the partial index of jobs at partners; released batches' jobs) rather than one OR.
    at_partner = select(*key, func.count()).where(j.c.status.in_(AT_PARTNER), j.c.partner_id.is_not(None))
    released = (select(*key, func.count()).where(
        j.c.batch_id.is_not(None), j.c.batch_id.in_(select(b.c.id).where(b.c.status == BatchStatus.RELEASED)),
        j.c.status == JobStatus.BATCHED, j.c.partner_id.is_not(None)))
    with _connected(bind) as conn:
        rows = conn.execute(union_all(at_partner.group_by(*key), released.group_by(*key))).all()
    load: dict[str, dict[str, int]] = {}
    for partner_id, method, units in rows:
        lines = load.setdefault(partner_id, {})
        lines[method or ""] = lines.get(method or "", 0) + int(units)
    return load


def partner_panel(bind: Bind, *, now: datetime, start_sla: timedelta, window: timedelta) -> pd.DataFrame:
    """Per partner: work at the partner per method against capacity, lag, and on-time start rate.

    Columns: partner, name, in_flight, by_method (text), queue_hours (the busiest method's units at the
    partner ÷ its capacity per hour), lag_s (age of the oldest job submitted but not yet printing, from
    its submission stamp), on_time (share of jobs submitted in the last `window` that started printing
    within `start_sla`, counting those still waiting past it as late; None before any is decided),
    decided, waiting (submitted in the window, not started, still within the SLA).

    Every figure is aggregated in SQL over the jobs' `submitted_at` / `started_at` stamps (written with
    the transitions), the same stamps the on-time metric reads.
    """
    import pandas as pd  # noqa: PLC0415 - see the TYPE_CHECKING import
    p, j = t.partners, t.print_jobs
    with _connected(bind) as conn:
        partners = conn.execute(select(p.c.id, p.c.name, p.c.capacity_per_hour).order_by(p.c.id)).all()
        in_flight = conn.execute(select(j.c.partner_id, j.c.print_method, func.count())
                                 .where(j.c.status.in_(AT_PARTNER)).group_by(j.c.partner_id, j.c.print_method)).all()
        oldest = dict(conn.execute(select(j.c.partner_id, func.min(j.c.submitted_at))
                                   .where(j.c.status.in_(NOT_STARTED)).group_by(j.c.partner_id)).all())
        starts = {row.partner_id: row for row in conn.execute(
            start_verdicts(since=now - window, now=now, start_sla=start_sla))}
    load: dict[str, dict[str, int]] = {}
    for partner_id, method, units in in_flight:
        load.setdefault(partner_id, {})[method or ""] = int(units)
    rows = []
    for partner in partners:
        capacity = {method: float(units) for method, units in (partner.capacity_per_hour or {}).items()}
        units = load.get(partner.id, {})
        verdicts = starts.get(partner.id)
        on_time, late = (int(verdicts.on_time), int(verdicts.late)) if verdicts else (0, 0)
        decided = on_time + late
        rows.append({
            "partner": partner.id, "name": partner.name, "in_flight": sum(units.values()),
            "by_method": " · ".join(f"{method} {units.get(method, 0)}/{per_hour:g}"
                                    for method, per_hour in sorted(capacity.items())),
            "queue_hours": max((units.get(m, 0) / c for m, c in capacity.items() if c > 0), default=0.0),
            "lag_s": (now - oldest[partner.id]).total_seconds() if oldest.get(partner.id) else None,
            "on_time": (on_time / decided) if decided else None,
            "decided": decided, "waiting": int(verdicts.waiting) if verdicts else 0})
    return pd.DataFrame(rows, columns=["partner", "name", "in_flight", "by_method", "queue_hours", "lag_s",
                                       "on_time", "decided", "waiting"])


NOT_STARTED = (JobStatus.SUBMITTED, JobStatus.QUEUED)


def start_verdicts(*, since: datetime, now: datetime, start_sla: timedelta):
    """Per partner, jobs submitted since `since`: on_time, late (started late, or waiting past the SLA), waiting.

    A select over the index on (submitted_at, partner_id, started_at): no timeline event is read.
    """
    j = t.print_jobs
    sla_s = start_sla.total_seconds()
    started = j.c.started_at.is_not(None)
    in_time = and_(started, seconds_between(j.c.submitted_at, j.c.started_at) <= sla_s)
    waiting = and_(j.c.started_at.is_(None), j.c.submitted_at >= now - start_sla)
    return (select(j.c.partner_id, func.count(case((in_time, 1))).label("on_time"),
                   func.count(case((waiting, 1))).label("waiting"),
                   func.count(case((and_(~in_time, ~waiting), 1))).label("late"))
            .where(j.c.submitted_at >= since).group_by(j.c.partner_id))


# ---- QA review -------------------------------------------------------------------------------------------

REVIEW_QUEUE_LIMIT = 200


def review_queue(bind: Bind, *, since: datetime, limit: int = REVIEW_QUEUE_LIMIT) -> dict[str, Any]:
    """The inspectors' work: needs-review items oldest first, with counts.

    Returns items (id, order_number, review_reason, reasons, created_at), waiting, by_reason
    (review_reason → count) and decided (items an inspector decided since `since`).
    """
    i, o = t.inspections, t.orders
    waiting = and_(i.c.status == InspectionStatus.NEEDS_REVIEW, i.c.pending_verdict.is_(None))
    with _connected(bind) as conn:
        items = [dict(row._mapping) for row in conn.execute(
            select(i.c.id, o.c.number.label("order_number"), i.c.review_reason, i.c.reasons, i.c.created_at)
            .join(o, o.c.id == i.c.order_id).where(waiting).order_by(i.c.created_at, i.c.id).limit(limit))]
        by_reason = {str(reason or "unspecified"): n for reason, n in conn.execute(
            select(i.c.review_reason, func.count()).where(waiting).group_by(i.c.review_reason)
            .order_by(i.c.review_reason))}
        decided = conn.scalar(select(func.count()).select_from(i).where(
            i.c.decided_by.is_not(None), i.c.decided_at >= since))
    return {"items": items, "waiting": sum(by_reason.values()), "by_reason": by_reason, "decided": int(decided)}


def undoable_verdicts(bind: Bind, *, user: str, since: datetime) -> list[dict[str, Any]]:
    """`user`'s verdicts given since `since` that have not taken effect yet, newest first (the undo list)."""
    i, o = t.inspections, t.orders
    with _connected(bind) as conn:
        return [dict(row._mapping) for row in conn.execute(
            select(i.c.id, o.c.number.label("order_number"), i.c.pending_verdict, i.c.pending_reason,
                   i.c.decided_at)
            .join(o, o.c.id == i.c.order_id)
            .where(i.c.status == InspectionStatus.NEEDS_REVIEW, i.c.pending_verdict.is_not(None),
                   i.c.decided_by == user, i.c.decided_at >= since)
            .order_by(i.c.decided_at.desc()))]


def inspection_detail(bind: Bind, inspection_id: str) -> dict[str, Any] | None:
    """One inspection with its job, order number and the print file it was compared against."""
    i, j, line, a, o = t.inspections, t.print_jobs, t.order_lines, t.assets, t.orders
    statement = (select(i.c.id, i.c.status, i.c.order_id, o.c.number.label("order_number"), i.c.job_id,
                        j.c.attempt, j.c.partner_id, line.c.sku, i.c.scores, i.c.reasons, i.c.review_reason,
                        i.c.photo_key, i.c.heatmap_key, i.c.aligned_key, i.c.worst_region, i.c.created_at,
                        a.c.preview_key, a.c.print_file_key)
                 .join(j, j.c.id == i.c.job_id).join(o, o.c.id == i.c.order_id)
                 .join(line, line.c.id == j.c.line_id).outerjoin(a, a.c.id == line.c.asset_id)
                 .where(i.c.id == inspection_id))
    with _connected(bind) as conn:
        row = conn.execute(statement).first()
    return None if row is None else dict(row._mapping)


# ---- audit log ---------------------------------------------------------------------------------------------


def _audit_select(*, actor: str = "", action: str = "", target: str = "", order_number: str = "",
                  since: datetime | None = None, until: datetime | None = None):
    a, o = t.audit_log, t.orders
    query = (select(a.c.id, a.c.at, a.c.actor, a.c.action, a.c.target_type, a.c.target_id, a.c.order_id,
                    o.c.number.label("order_number"), a.c.before, a.c.after)
             .select_from(a.outerjoin(o, o.c.id == a.c.order_id)))
    for column, term in ((a.c.actor, actor), (a.c.action, action), (o.c.number, order_number)):
        if term.strip():
            query = query.where(func.lower(column).contains(term.strip().lower(), autoescape=True))
    if target.strip():
        wanted = target.strip().lower()
        query = query.where(or_(func.lower(a.c.target_id).contains(wanted, autoescape=True),
                                func.lower(a.c.target_type).contains(wanted, autoescape=True)))
    if since is not None:
        query = query.where(a.c.at >= since)
    if until is not None:
        query = query.where(a.c.at <= until)
    return query


def audit_search(bind: Bind, *, limit: int, offset: int = 0, **filters: Any) -> dict[str, Any]:
    """Audit rows matching `filters` (actor, action, target, order_number: contained, any case; since/until:
    inclusive), newest first: total and rows (id, at, actor, action, target_type, target_id, order_id,
    order_number, before, after)."""
    query = _audit_select(**filters)
    with _connected(bind) as conn:
        total = conn.scalar(select(func.count()).select_from(query.subquery()))
        rows = conn.execute(query.order_by(t.audit_log.c.at.desc(), t.audit_log.c.id.desc())
                            .limit(limit).offset(offset)).all()
    return {"total": int(total or 0), "rows": [row._asdict() for row in rows]}


def audit_actions(bind: Bind) -> list[str]:
    """Every action word the audit log holds, alphabetically (for the search's suggestions)."""
    with _connected(bind) as conn:
        return list(conn.scalars(select(t.audit_log.c.action).distinct().order_by(t.audit_log.c.action)))


# ---- exception inbox -------------------------------------------------------------------------------------


def exception_inbox(bind: Bind, *, kinds: tuple[str, ...], limit: int = 200) -> dict[str, Any]:
    """Open exception alerts of `kinds`, oldest first, each with its order and newest shipment: entries (id,
    kind, severity, message, details, opened_at, updated_at, order_id, order_number, order_status,
    hold_reason, address, tracking_code, shipment_status) and counts per kind (every kind, zeros included)."""
    a, o, s = t.alerts, t.orders, t.shipments
    newest = (select(s.c.tracking_code, s.c.status).where(s.c.order_id == a.c.order_id)
              .order_by(s.c.created_at.desc(), s.c.id.desc()).limit(1))
    open_ = and_(a.c.cleared_at.is_(None), a.c.kind.in_(list(kinds)))
    with _connected(bind) as conn:
        counts = dict(conn.execute(select(a.c.kind, func.count()).where(open_).group_by(a.c.kind)).all())
        rows = conn.execute(
            select(a.c.id, a.c.kind, a.c.severity, a.c.message, a.c.details, a.c.opened_at, a.c.updated_at,
                   a.c.order_id, o.c.number.label("order_number"), o.c.status.label("order_status"),
                   o.c.hold_reason, o.c.shipping_address_enc.label("address"),
                   newest.with_only_columns(s.c.tracking_code).scalar_subquery().label("tracking_code"),
                   newest.with_only_columns(s.c.status).scalar_subquery().label("shipment_status"))
            .outerjoin(o, o.c.id == a.c.order_id).where(open_).order_by(a.c.opened_at, a.c.id).limit(limit)).all()
    return {"entries": [_plain(row._asdict()) for row in rows],
            "counts": {kind: int(counts.get(kind, 0)) for kind in kinds}}
