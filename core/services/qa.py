"""The QA stage: inspect each printed item against its print file; pass it, reprint it, or ask a human."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol

import cv2
import numpy as np
from PIL import Image

from core.commands import BuyLabel, RouteOrder
from core.erasable import qa_reference_name
from core.errors import NotAllowed, NotFound
from core.events import Noted
from core.flags import FeatureFlag, is_enabled
from core.model import Inspection, PrintJob
from core.notifications import Milestone
from core.ports import ObjectStore
from core.qa import DEFAULT as DEFAULT_TOLERANCES
from core.qa import PreparedReference, Tolerances, inspect, prepare_reference
from core.render import encoded_channels, product_colour
from core.sampling import SpotCheckPolicy, double_assigned, spot_check_reason
from core.services.notify import notify_milestone
from core.states import DefectReason, HoldReason, InspectionStatus, JobStatus, OrderStatus

log = logging.getLogger(__name__)
SOURCE = "worker:qa"
HUMAN_REVIEW_FLAG = "qa.human_review"
"""Feature flag: an automatically passed print also goes to an inspector (per partner or template, by job)."""


class PreparedReferences(Protocol):
    """Prepared print files kept between inspections (`workers.qa.shared_references`); the render stage adds a new
    design's as it renders it."""

    def get_or_make(self, key: str, make: Callable[[], PreparedReference]) -> PreparedReference:
        """The one kept under `key`, else `make()` once — concurrent callers of one key wait for it — kept."""

    def keep(self, key: str, value: PreparedReference) -> None:
        """Keep `value` under `key`, made elsewhere (the render stage, from its canvas): nothing is looked up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QaRules:
    """What the QA stage decides with; stored by managers (core.services.admin.load_qa_rules reads them)."""

    spot_checks: SpotCheckPolicy = SpotCheckPolicy()
    max_attempts: int = 3
    tolerances: Tolerances = DEFAULT_TOLERANCES
    flags: tuple[FeatureFlag, ...] = ()
    undo_window_s: float = 15.0  # an inspector's verdict takes effect only after this, so a slip can be undone


def inspect_job(job_id: str, *, uow, store: ObjectStore, fetch_photo: Callable[[str, str], bytes | None],
                new_id: Callable[[str], str], now: Callable[[], datetime], rules: QaRules,
                references: PreparedReferences | None = None) -> str:
    """Inspect a printed job once: store the photo, heat-map and aligned photo, then decide.

    Safe to run twice: a job that already has an inspection, or is no longer `printed`, is left alone.
    `fetch_photo` answers None when the partner has no photo (gone from its store): a human looks instead of the
    inspection retrying for a photo that will not come back.
    `references` keeps prepared print files by content hash and substrate (the worker passes a small LRU):
    every print of a popular design then skips decoding and reducing the same 4500x5400 file.

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
    taken = fetch_photo(partner_id, photo_url)
    if taken is None:
        return _ask_a_human(job_id, uow=uow, now=now, new_id=new_id,
                            note="the partner no longer has a photo of this print (expired or never taken)")
    photo, as_taken = _photo(taken)
    substrate = product_colour(colour)
    reference = _prepared(asset, substrate, store=store, references=references)
    result = inspect(reference, photo, dpi=float(asset["dpi"]), substrate=substrate, tolerances=rules.tolerances)
    inspection_id = new_id("ins")
    keys = {"photo_key": f"qa/{inspection_id}/photo.jpg", "heatmap_key": f"qa/{inspection_id}/heatmap.jpg",
            "aligned_key": f"qa/{inspection_id}/aligned.jpg"}
    store.put(keys["photo_key"], as_taken or _jpeg(photo), content_type="image/jpeg")
    store.put(keys["heatmap_key"], _jpeg(result.heatmap), content_type="image/jpeg")
    store.put(keys["aligned_key"], _jpeg(result.aligned), content_type="image/jpeg")
    review = spot_check_reason(job_id=job_id, verdict=result.verdict, policy=rules.spot_checks,
                               prints_of_template_version=stats["template_version_prints"],
                               prints_at_partner=stats["partner_prints"],
                               partner_failure_rate=stats["partner_failure_rate"])
    if review is None and result.verdict == "pass" and is_enabled(
            HUMAN_REVIEW_FLAG, partner_id=partner_id, template_key=asset["template_key"], subject_id=job_id,
            flags=rules.flags):
        review = "flagged"
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


def decide(inspection_id: str, *, approve: bool, reason: str | None, user: str, uow, now: datetime) -> str:
    """A QA inspector's verdict on a needs-review item: approve, or reject with a reason code (a reprint).

    The verdict is recorded (audited, on the timeline) but takes effect only once the undo window has passed
    (`apply_due_verdicts`), so the inspector can take back a slip of the finger with `undo_verdict`.

    Raises:
        NotFound: no such inspection.
        NotAllowed: it was already decided, or a rejection has no valid reason code.
    """
    if not approve and reason not in set(DefectReason):
        raise NotAllowed("Choose a reason code for the rejection (it goes on the reprint).")
    verdict = "approve" if approve else "reject"
    with uow:
        inspection = _reviewable(uow, inspection_id)
        if inspection.pending_verdict is not None:
            raise NotAllowed(f"{inspection.decided_by} already gave a verdict on this item; refresh the queue.")
        inspection.pending_verdict, inspection.pending_reason = verdict, None if approve else reason
        inspection.decided_by, inspection.decided_at = user, now
        uow.timeline.add(Noted(order_id=inspection.order_id, at=now, source=f"user:{user}", kind="qa.verdict_given",
                               key=f"verdict:{inspection_id}:{now.isoformat()}",
                               details={"inspection": inspection_id, "verdict": verdict, "reason": reason}))
        uow.audit.record(actor=user, action=f"qa.{verdict}", target_type="inspection", target_id=inspection_id,
                         order_id=inspection.order_id, before={"status": "needs_review"},
                         after={"verdict": verdict, "reason": reason}, at=now)
        uow.commit()
    return "approved" if approve else "rejected"


def undo_verdict(inspection_id: str, *, user: str, uow, now: datetime, rules: QaRules) -> str:
    """Take back one's own verdict while its undo window is open: the item goes back to the queue.

    Raises:
        NotFound: no such inspection.
        NotAllowed: no verdict waits, it is someone else's, or the window has passed (it has taken effect).
    """
    with uow:
        inspection = _reviewable(uow, inspection_id, gone="The verdict has already taken effect; it can't be undone.")
        if inspection.pending_verdict is None:
            raise NotAllowed("There is no verdict on this item to undo.")
        if inspection.decided_by != user:
            raise NotAllowed(f"Only {inspection.decided_by}, who gave the verdict, can undo it.")
        if (now - inspection.decided_at).total_seconds() > rules.undo_window_s:
            raise NotAllowed(f"The {rules.undo_window_s:.0f} s undo window has passed; the verdict has taken effect.")
        verdict, reason = inspection.pending_verdict, inspection.pending_reason
        inspection.pending_verdict = inspection.pending_reason = None
        inspection.decided_by = inspection.decided_at = None
        uow.timeline.add(Noted(order_id=inspection.order_id, at=now, source=f"user:{user}", kind="qa.verdict_undone",
                               key=f"undo:{inspection_id}:{now.isoformat()}",
                               details={"inspection": inspection_id, "verdict": verdict, "reason": reason}))
        uow.audit.record(actor=user, action="qa.undo", target_type="inspection", target_id=inspection_id,
                         order_id=inspection.order_id, before={"verdict": verdict, "reason": reason},
                         after={"status": "needs_review"}, at=now)
        uow.commit()
    return "undone"


def apply_due_verdicts(*, uow, now: datetime, new_id: Callable[[str], str], rules: QaRules) -> int:
    """Make inspectors' verdicts whose undo window has passed take effect: pass the job, or reprint it.

    Run on the scheduler's beat; safe to run twice or concurrently (each item is locked and re-checked).

    Returns:
        How many verdicts took effect.
    """
    cutoff = now - timedelta(seconds=rules.undo_window_s)
    with uow:
        due = uow.inspections.verdicts_due(before=cutoff)
    applied = 0
    for inspection_id in due:
        with uow:
            inspection = uow.inspections.get(inspection_id, lock=True)
            if (inspection is None or inspection.status != InspectionStatus.NEEDS_REVIEW
                    or inspection.pending_verdict is None or inspection.decided_at > cutoff):
                continue
            job = uow.jobs.get(inspection.job_id, lock=True)
            source = f"user:{inspection.decided_by}"
            if inspection.pending_verdict == "approve":
                inspection.advance(InspectionStatus.PASSED, at=now, source=source, reason="approved by inspector")
                pass_job(job, uow=uow, at=now, source=source)
            else:
                reason = inspection.pending_reason or str(DefectReason.WRONG_DESIGN)
                inspection.advance(InspectionStatus.FAILED, at=now, source=source, reason=reason)
                fail_job(job, reason=reason, uow=uow, at=now, source=source, new_id=new_id, rules=rules)
            inspection.pending_verdict = inspection.pending_reason = None
            uow.commit()
            applied += 1
    return applied


def _reviewable(uow, inspection_id: str, *, gone: str | None = None) -> Inspection:
    inspection = uow.inspections.get(inspection_id, lock=True)
    if inspection is None:
        raise NotFound("That inspection does not exist.")
    if inspection.status != InspectionStatus.NEEDS_REVIEW:
        raise NotAllowed(gone or f"This item was already decided ({inspection.status}); refresh the queue.")
    return inspection


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


def _prepared(asset: dict, substrate: tuple[int, int, int], *, store: ObjectStore,
              references: PreparedReferences | None) -> PreparedReference:
    def make() -> PreparedReference:
        return prepare_reference(print_file_pixels(store.get(asset["print_file_key"])), substrate=substrate)

    if references is None:
        return make()
    return references.get_or_make(qa_reference_name(asset["sha256"], substrate), make)


def print_file_pixels(data: bytes) -> np.ndarray:
    """A print file's pixels: RGBA when it has transparency (a palette's, a gray file's or its own), else RGB.

    The render stage writes 8-bit RGB or RGBA PNGs. OpenCV decodes those in about three quarters of Pillow's
    time, and without holding the GIL, so a QA worker's other thread keeps working meanwhile. Any other file
    goes through Pillow.
    """
    channels = encoded_channels(data)
    if channels:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is not None and decoded.ndim == 3 and decoded.shape[2] == channels:  # else: a tRNS colour key
            return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA if channels == 4 else cv2.COLOR_BGR2RGB)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))


_PLAIN_JPEG_SEGMENTS = {"APP0", "APP14"}  # JFIF and Adobe's colour transform flag: no metadata in either


def _photo(data: bytes) -> tuple[np.ndarray, bytes | None]:
    """The partner's photo as RGB pixels, and its bytes when they can be stored as they came.

    A plain RGB JPEG (no EXIF, comment, ICC profile or other application segment, nothing after its end
    marker) is stored as received: re-encoding it cost 2 % of an inspection's CPU and a generation of loss.
    Anything else is re-encoded from the pixels, so no metadata of the partner's camera is ever kept.
    """
    with Image.open(io.BytesIO(data)) as image:
        plain = (image.format == "JPEG" and image.mode == "RGB" and not image.info.get("comment")
                 and {marker for marker, _ in getattr(image, "applist", [])} <= _PLAIN_JPEG_SEGMENTS
                 and data.endswith(b"\xff\xd9"))
        return np.asarray(image.convert("RGB")), data if plain else None


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=88)
    return out.getvalue()
