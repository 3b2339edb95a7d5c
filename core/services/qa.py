"""The QA stage: inspect each printed item against its print file; pass it, reprint it, or ask a human."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np
from PIL import Image

from core.commands import BuyLabel, RouteOrder
from core.errors import NotAllowed, NotFound
from core.events import Noted
from core.model import Inspection, PrintJob
from core.notifications import Milestone
from core.ports import ObjectStore
from core.qa import inspect
from core.render import product_colour
from core.sampling import SpotCheckPolicy, double_assigned, spot_check_reason
from core.services.notify import notify_milestone
from core.states import DefectReason, HoldReason, InspectionStatus, JobStatus, OrderStatus

log = logging.getLogger(__name__)
SOURCE = "worker:qa"


@dataclass(frozen=True, slots=True, kw_only=True)
class QaRules:
    spot_checks: SpotCheckPolicy = SpotCheckPolicy()
    max_attempts: int = 3


def inspect_job(job_id: str, *, uow, store: ObjectStore, fetch_photo: Callable[[str, str], bytes],
                new_id: Callable[[str], str], now: Callable[[], datetime], rules: QaRules) -> str:
    """Inspect a printed job once: store the photo, heat-map and aligned photo, then decide.

    Safe to run twice: a job that already has an inspection, or is no longer `printed`, is left alone.

    Returns:
        "missing", "skipped", "passed", "failed", "review".
    """
    with uow:
        job = uow.jobs.get(job_id)
        if job is None:
            return "missing"
        if job.status != JobStatus.PRINTED or uow.inspections.for_job(job_id) is not None:
            return "skipped"
        asset = uow.assets.for_line(job.line_id)
        colour = (uow.variants.describe(uow.jobs.sku(job_id)) or {}).get("colour")
        partner_id, photo_url = job.partner_id, job.photo_url
        stats = uow.inspections.history(partner_id=partner_id, line_id=job.line_id)
    if asset is None or not photo_url:
        return _ask_a_human(job_id, uow=uow, now=now, new_id=new_id, note="no photo or print file to compare")
    photo = _decode(fetch_photo(partner_id, photo_url))
    reference = _decode(store.get(asset["print_file_key"]), keep_alpha=True)
    result = inspect(reference, photo, dpi=float(asset["dpi"]), substrate=product_colour(colour))
    inspection_id = new_id("ins")
    keys = {"photo_key": f"qa/{inspection_id}/photo.jpg", "heatmap_key": f"qa/{inspection_id}/heatmap.jpg",
            "aligned_key": f"qa/{inspection_id}/aligned.jpg"}
    store.put(keys["photo_key"], _jpeg(photo), content_type="image/jpeg")
    store.put(keys["heatmap_key"], _jpeg(result.heatmap), content_type="image/jpeg")
    store.put(keys["aligned_key"], _jpeg(result.aligned), content_type="image/jpeg")
    review = spot_check_reason(job_id=job_id, verdict=result.verdict, policy=rules.spot_checks,
                               prints_of_template_version=stats["template_version_prints"],
                               prints_at_partner=stats["partner_prints"],
                               partner_failure_rate=stats["partner_failure_rate"])
    with uow:
        job = uow.jobs.get(job_id, lock=True)
        if job is None or job.status != JobStatus.PRINTED or uow.inspections.for_job(job_id) is not None:
            return "skipped"
        at = now()
        inspection = Inspection(id=inspection_id, job_id=job_id, order_id=job.order_id, created_at=at)
        inspection.scores = {k: round(float(v), 4) for k, v in result.scores.items()}
        inspection.reasons = [str(r) for r in result.reasons]
        inspection.photo_key, inspection.heatmap_key, inspection.aligned_key = (
            keys["photo_key"], keys["heatmap_key"], keys["aligned_key"])
        inspection.worst_region = [int(v) for v in result.worst_region]
        uow.inspections.add(inspection)
        if review is not None:
            inspection.review_reason = review
            inspection.advance(InspectionStatus.NEEDS_REVIEW, at=at, source=SOURCE, reason=review,
                               details={"scores": inspection.scores, "suspected": inspection.reasons})
            if double_assigned(inspection_id, policy=rules.spot_checks):
                inspection.second_assignee = "second-opinion"
            outcome = "review"
        elif result.verdict == "pass":
            inspection.advance(InspectionStatus.PASSED, at=at, source=SOURCE, details={"scores": inspection.scores})
            pass_job(job, uow=uow, at=at, source=SOURCE)
            outcome = "passed"
        else:
            reason = result.reasons[0] if result.reasons else DefectReason.WRONG_DESIGN
            inspection.advance(InspectionStatus.FAILED, at=at, source=SOURCE, reason=str(reason),
                               details={"scores": inspection.scores, "reasons": inspection.reasons})
            fail_job(job, reason=str(reason), uow=uow, at=at, source=SOURCE, new_id=new_id, rules=rules)
            outcome = "failed"
        uow.commit()
    return outcome


def decide(inspection_id: str, *, approve: bool, reason: str | None, user: str, uow, now: datetime,
           new_id: Callable[[str], str], rules: QaRules) -> str:
    """A QA inspector's verdict on a needs-review item: approve, or reject with a reason code (a reprint).

    Raises:
        NotFound: no such inspection.
        NotAllowed: it was already decided, or a rejection has no valid reason code.
    """
    if not approve and reason not in set(DefectReason):
        raise NotAllowed("Choose a reason code for the rejection (it goes on the reprint).")
    with uow:
        inspection = uow.inspections.get(inspection_id, lock=True)
        if inspection is None:
            raise NotFound("That inspection does not exist.")
        if inspection.status != InspectionStatus.NEEDS_REVIEW:
            raise NotAllowed(f"This item was already decided ({inspection.status}); refresh the queue.")
        job = uow.jobs.get(inspection.job_id, lock=True)
        source = f"user:{user}"
        inspection.decided_by = user
        if approve:
            inspection.advance(InspectionStatus.PASSED, at=now, source=source, reason="approved by inspector")
            pass_job(job, uow=uow, at=now, source=source)
        else:
            inspection.advance(InspectionStatus.FAILED, at=now, source=source, reason=reason)
            fail_job(job, reason=reason, uow=uow, at=now, source=source, new_id=new_id, rules=rules)
        uow.audit.record(actor=user, action="qa.approve" if approve else "qa.reject", target_type="inspection",
                         target_id=inspection_id, order_id=inspection.order_id,
                         before={"status": "needs_review"}, after={"status": str(inspection.status),
                                                                   "reason": reason}, at=now)
        uow.commit()
    return "passed" if approve else "failed"


def pass_job(job: PrintJob, *, uow, at: datetime, source: str) -> None:
    job.advance(JobStatus.QA_PASSED, at=at, source=source)
    order = uow.orders.get(job.order_id, lock=True)
    live = [j for j in uow.jobs.for_order(job.order_id) if j.status not in (JobStatus.QA_FAILED, JobStatus.CANCELLED)]
    if order is not None and order.status == OrderStatus.QA and all(j.status == JobStatus.QA_PASSED for j in live):
        order.advance(OrderStatus.READY_TO_SHIP, at=at, source=source, reason="every item passed QA")
        uow.defer(BuyLabel(order_id=order.id))
        notify_milestone(order.id, Milestone.QA_PASSED, uow=uow)


def fail_job(job: PrintJob, *, reason: str, uow, at: datetime, source: str, new_id: Callable[[str], str],
             rules: QaRules) -> None:
    """Failed QA: a reprint (attempt + 1, linked, higher priority, routed again), or a hold after the last."""
    job.advance(JobStatus.QA_FAILED, at=at, source=source, reason=reason)
    order = uow.orders.get(job.order_id, lock=True)
    if job.attempt >= rules.max_attempts:
        if order is not None and order.can_advance(OrderStatus.ON_HOLD):
            order.hold(HoldReason.REPRINTS_EXHAUSTED, at=at, source=source,
                       note=f"job {job.id} failed QA {job.attempt} times ({reason})")
        uow.alerts.raise_(kind="qa", key=job.order_id, order_id=job.order_id, severity="critical", at=at,
                          message=f"Order {order.number if order else job.order_id}: an item failed QA "
                                  f"{job.attempt} times ({reason}); it is on hold.")
        return
    reprint = PrintJob(id=new_id("job"), order_id=job.order_id, line_id=job.line_id, unit_index=job.unit_index,
                       created_at=at, attempt=job.attempt + 1, reprint_of=job.id, reason_code=reason)
    uow.jobs.add(reprint)
    uow.timeline.add(Noted(order_id=job.order_id, at=at, source=source, kind="job.reprint_ordered",
                           key=f"reprint:{job.id}", details={"failed_job": job.id, "reprint_job": reprint.id,
                                                             "reason": reason, "attempt": reprint.attempt}))
    if order is not None and order.status == OrderStatus.QA:
        order.advance(OrderStatus.IN_PRODUCTION, at=at, source=source, reason=f"reprint: {reason}")
    uow.defer(RouteOrder(order_id=job.order_id))


def _ask_a_human(job_id: str, *, uow, now, new_id, note: str) -> str:
    with uow:
        job = uow.jobs.get(job_id, lock=True)
        if job is None or uow.inspections.for_job(job_id) is not None:
            return "skipped"
        at = now()
        inspection = Inspection(id=new_id("ins"), job_id=job_id, order_id=job.order_id, created_at=at)
        inspection.review_reason = "borderline"
        uow.inspections.add(inspection)
        inspection.advance(InspectionStatus.NEEDS_REVIEW, at=at, source=SOURCE, reason=note)
        uow.commit()
    return "review"


def _decode(data: bytes, *, keep_alpha: bool = False) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        mode = "RGBA" if keep_alpha and image.mode in ("RGBA", "LA", "P") else "RGB"
        return np.asarray(image.convert(mode))


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=88)
    return out.getvalue()
