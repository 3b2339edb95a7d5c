"""Production stages: route jobs to partners, batch them, submit at the production gate, follow webhooks."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from core.commands import InspectJob, SubmitBatch
from core.events import Noted
from core.model import Batch, PrintJob
from core.notifications import Milestone
from core.production import (
    BatchPolicy,
    Calendar,
    Destination,
    PriorityWeights,
    RoutingWeights,
    destination_zone,
    priority_of,
    route,
    should_release,
)
from core.services.notify import notify_milestone
from core.states import BatchStatus, HoldReason, JobStatus, OrderStatus, PartnerJobStatus

log = logging.getLogger(__name__)
SOURCE = "worker:production"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductionRules:
    """The weights and policy ops managers tune (stored settings; defaults from core.production)."""

    routing: RoutingWeights = RoutingWeights()
    priority: PriorityWeights = PriorityWeights()
    batching: BatchPolicy = BatchPolicy()
    calendar: Calendar = Calendar()


# ---- routing ---------------------------------------------------------------------------------------------


def route_order(order_id: str, *, uow, now: datetime, rules: ProductionRules) -> str:
    """Choose a partner for each pending job of a rendered order and give it a priority; the reasons go on
    the timeline. Safe to repeat: only jobs without a partner are routed.

    Returns:
        "missing", "skipped", "held" (no partner can make it) or "routed".
    """
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None:
            return "missing"
        if order.status not in (OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION):
            return "skipped"  # IN_PRODUCTION: a reprint waiting for a partner
        pending = [job for job in uow.jobs.for_order(order_id)
                   if job.status == JobStatus.PENDING and job.partner_id is None]
        if not pending:
            return "skipped"
        destination = Destination.from_address(order.shipping_address)
        region = destination_zone(destination)
        partners = uow.partners.views([line.sku for line in order.lines])
        for line in order.lines:
            jobs = [job for job in pending if job.line_id == line.id]
            if not jobs:
                continue
            product = uow.variants.describe(line.sku) or {}
            decision = route(sku=line.sku, quantity=len(jobs), print_method=product.get("print_method", ""),
                             destination=destination, partners=partners, weights=rules.routing,
                             exclude=frozenset(uow.jobs.failed_partners(order_id, line.id)))
            if decision.partner_id is None:
                order.hold(HoldReason.NO_PARTNER, at=now, source=SOURCE, note=decision.summary)
                uow.alerts.raise_(kind="routing", key=order_id, order_id=order_id, severity="warning", at=now,
                                  message=f"Order {order.number}: no partner can make line {line.line_no}.")
                uow.commit()
                return "held"
            chosen = decision.partner_id
            if line.partner_id != chosen and not uow.stock.move(line_id=line.id, to_partner=chosen,
                                                                quantity=len(jobs), at=now):
                chosen = line.partner_id or chosen  # the new partner's stock went meanwhile: keep the reservation
            line.partner_id = chosen
            for job in jobs:
                score = priority_of(shipping_speed=order.shipping_speed, order_value_cents=order.total_cents,
                                    placed_at=order.placed_at, attempt=job.attempt, now=now,
                                    weights=rules.priority, calendar=rules.calendar)
                job.partner_id, job.priority = chosen, score.score
                job.product_type, job.print_method, job.region = (product.get("product_type"),
                                                                  product.get("print_method"), region)
            uow.timeline.add(Noted(order_id=order_id, at=now, source=SOURCE, kind="job.routed",
                                   key=f"routed:{line.id}:{jobs[0].attempt}",
                                   details={"line_no": line.line_no, "partner": chosen, "units": len(jobs),
                                            "summary": decision.summary,
                                            "reasons": {c.partner_id: list(c.reasons)
                                                        for c in decision.candidates[:4]}}))
        uow.commit()
    return "routed"


# ---- batching (run by the scheduler) -------------------------------------------------------------------------


def batch_ready_jobs(uow, *, now: datetime, rules: ProductionRules, new_id: Callable[[str], str]) -> list[str]:
    """Put routed jobs into open batches of their group, then release batches that are full or old enough.

    Returns the ids of the batches released (their SubmitBatch messages go out after the commit).
    """
    released = []
    with uow:
        uow.batches.take_batcher_turn()  # one batcher at a time: concurrent ones collided on the same jobs
        capacity = uow.partners.capacity()
        open_batches = {b.id: b for b in uow.batches.open()}
        sizes = uow.batches.sizes(list(open_batches))
        for job in uow.jobs.routed_unbatched():
            key = (job.partner_id, job.product_type, job.print_method, job.region)
            target = rules.batching.target_size(capacity.get(job.partner_id, {}).get(job.print_method, 0.0))
            batch = next((b for b in open_batches.values() if _key(b) == key and b.status == BatchStatus.OPEN
                          and sizes.get(b.id, 0) < b.target_size), None)
            if batch is None:
                batch = Batch(id=new_id("bat"), partner_id=job.partner_id, product_type=job.product_type or "",
                              print_method=job.print_method or "", region=job.region or "", created_at=now,
                              target_size=target)
                uow.batches.add(batch)
                open_batches[batch.id] = batch
            job.batch_id = batch.id
            job.advance(JobStatus.BATCHED, at=now, source="worker:batcher", details={"batch": batch.id})
            sizes[batch.id] = sizes.get(batch.id, 0) + 1
        for batch in open_batches.values():
            if batch.status != BatchStatus.OPEN:
                continue
            reason = should_release(sizes.get(batch.id, 0), batch.target_size, now - batch.created_at,
                                    rules.batching)
            if reason is not None:
                release(batch, uow=uow, at=now, source="worker:batcher", reason=str(reason))
                released.append(batch.id)
        uow.commit()
    return released


def release(batch: Batch, *, uow, at: datetime, source: str, reason: str) -> None:
    """Release a batch to its partner (automatic on size or age, or an ops manager's click)."""
    batch.advance(BatchStatus.RELEASED, at=at, source=source, reason=reason)
    uow.defer(SubmitBatch(batch_id=batch.id))


def _key(batch: Batch) -> tuple:
    return batch.partner_id, batch.product_type, batch.print_method, batch.region


# ---- submission: the production gate ------------------------------------------------------------------------


def submit_batch(batch_id: str, *, uow, client, endpoint_for: Callable[[str], Any], file_url: Callable[[str], str],
                 callback_url: Callable[[str], str], now: Callable[[], datetime]) -> str:
    """Send each job of a released batch to its partner (idempotent on our job id), then mark it submitted.

    Each partner call happens outside any transaction; each job is recorded in its own short one, so a
    crash midway resubmits only what was not recorded — and the partner dedupes that on the job id.
    PartnerUnavailable propagates, so Dramatiq retries the message later.
    """
    with uow:
        batch = uow.batches.get(batch_id)
        if batch is None:
            return "missing"
        if batch.status not in (BatchStatus.RELEASED, BatchStatus.SUBMITTED):
            return "skipped"
        todo = [(job.id, _job_body(job, uow, batch, file_url, callback_url))
                for job in uow.jobs.in_batch(batch_id) if job.status == JobStatus.BATCHED]
        partner_id = batch.partner_id
    endpoint = endpoint_for(partner_id)
    for job_id, body in todo:
        if body is None:
            continue
        accepted = client.submit_job(endpoint, body)
        with uow:
            job = uow.jobs.get(job_id, lock=True)
            if job is not None and job.status == JobStatus.BATCHED:
                at = now()
                job.partner_job_id = accepted.id
                job.advance(JobStatus.SUBMITTED, at=at, source=SOURCE,
                            details={"partner": partner_id, "partner_job": accepted.id})
                order = uow.orders.get(job.order_id, lock=True)
                if order is not None and order.status == OrderStatus.READY_FOR_PRODUCTION:
                    order.advance(OrderStatus.IN_PRODUCTION, at=at, source=SOURCE,
                                  reason="production gate: sent to the partner")
                    notify_milestone(order.id, Milestone.PRODUCTION_STARTED, uow=uow)
                uow.commit()
    with uow:
        batch = uow.batches.get(batch_id, lock=True)
        if batch is not None and batch.status == BatchStatus.RELEASED:
            batch.advance(BatchStatus.SUBMITTED, at=now(), source=SOURCE, details={"jobs": len(todo)})
            uow.commit()
    return "submitted"


def _job_body(job: PrintJob, uow, batch: Batch, file_url, callback_url) -> dict[str, Any] | None:
    asset = uow.assets.for_line(job.line_id)
    if asset is None:
        log.error("job %s has no rendered asset; not submitted", job.id)
        return None
    return {"external_id": job.id, "batch_id": batch.id, "sku": uow.jobs.sku(job.id),
            "product_type": job.product_type, "print_method": job.print_method,
            "print_file_url": file_url(asset["id"]), "print_file_sha256": asset["sha256"],
            "width": asset["width"], "height": asset["height"], "dpi": asset["dpi"], "priority": job.priority,
            "ship_to_region": job.region, "callback_url": callback_url(batch.partner_id)}


# ---- partner webhooks ----------------------------------------------------------------------------------------

PARTNER_TO_JOB: Mapping[str, JobStatus] = {
    PartnerJobStatus.QUEUED: JobStatus.QUEUED,
    PartnerJobStatus.PRINTING: JobStatus.PRINTING,
    PartnerJobStatus.PRINTED: JobStatus.PRINTED,
    PartnerJobStatus.CANCELLED: JobStatus.CANCELLED,
}


NOT_YET_SUBMITTED = frozenset({JobStatus.BATCHED})
"""A job a partner reports on while batched was submitted, but the submission's answer is not recorded yet."""


def apply_partner_event(inbox_id: int, *, uow, now: datetime) -> str:
    """Apply one verified partner webhook from the inbox: move the job forward, or only record the event.

    Duplicates never reach here twice (the inbox is unique on the partner's event id, and a processed row is
    skipped); a late event (its status behind the job's) is recorded on the timeline and changes nothing.
    """
    with uow:
        row = uow.inbox.get(inbox_id, lock=True)
        if row is None or row["status"] == "processed":
            return "duplicate"
        partner_id = row["source"].split(":", 1)[-1]
        event = json.loads(row["body"])
        reported = event.get("job", {})
        job = uow.jobs.by_external(partner_id, str(reported.get("external_id", "")))
        if job is None:
            uow.inbox.mark(inbox_id, status="rejected", error="unknown job", at=now)
            uow.commit()
            return "unknown"
        source = f"partner:{partner_id}"
        target = PARTNER_TO_JOB.get(str(reported.get("status")))
        details = {"partner_event": event.get("event_id"), "partner_status": reported.get("status"),
                   "occurred_at": event.get("occurred_at")}
        if target is not None and job.status in NOT_YET_SUBMITTED and target != JobStatus.CANCELLED:
            # the partner answered our submission and reports on the job before the submitting worker has
            # recorded that answer (paused or slow between the call and its commit): the event is early, not
            # late. Left unapplied ("received"), so the reconciler's inbox re-drive applies it once the job is
            # submitted; recorded as late, it would be lost and leave the job `submitted` for good.
            uow.rollback()
            return "early"
        if target is not None and job.can_advance(target):
            job.advance(target, at=now, source=source, details=details)
            if target == JobStatus.PRINTED:
                job.photo_url = reported.get("photo_url")
                uow.defer(InspectJob(job_id=job.id))
                _order_to_qa_when_all_printed(job.order_id, uow=uow, at=now, source=source)
            outcome = "applied"
        else:
            uow.timeline.add(Noted(order_id=job.order_id, at=now, source=source, kind="partner.event_recorded",
                                   key=f"partner-event:{partner_id}:{event.get('event_id')}",
                                   details=details | {"job": job.id, "job_status": str(job.status),
                                                      "why": "late or repeated: the job is already further on"}))
            outcome = "recorded"
        uow.inbox.mark(inbox_id, status="processed", at=now)
        uow.commit()
    return outcome


def _order_to_qa_when_all_printed(order_id: str, *, uow, at: datetime, source: str) -> None:
    order = uow.orders.get(order_id, lock=True)
    live = [j for j in uow.jobs.for_order(order_id) if j.status not in (JobStatus.CANCELLED, JobStatus.QA_FAILED)]
    done = {JobStatus.PRINTED, JobStatus.QA_PASSED}
    if order is not None and order.status == OrderStatus.IN_PRODUCTION and all(j.status in done for j in live):
        order.advance(OrderStatus.QA, at=at, source=source, reason="every item printed")
