"""Ops managers' batch actions and production rules: each audited, each on the affected orders' timelines."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Callable, Iterable, Mapping

from core.errors import NotFound
from core.events import EventType, Noted
from core.model import Batch, Order, PrintJob
from core.production import (
    BatchingError,
    BatchPolicy,
    Calendar,
    Deadline,
    GroupKey,
    JobView,
    ProductionSettingsInvalid,
    ProposedBatch,
    merge,
    predicted_starts,
    priority_of,
    propose_batches,
    should_release,
    split,
)
from core.services.production import ProductionRules, release
from core.settings import Settings
from core.states import BatchStatus, JobStatus

log = logging.getLogger(__name__)

RULES_KEY = "production_rules"
"""The settings row holding the rules document (see `rules_to_document`)."""
DEFAULT_START_SLA = timedelta(hours=4)
"""A job should start printing within this long of being submitted to its partner (on-time start)."""
EDITABLE = frozenset({BatchStatus.OPEN, BatchStatus.HELD})
"""Only batches that have not gone to their partner can be held, split, merged or reprioritised."""

HOLD, RELEASE, SPLIT, MERGE, REPRIORITISE = ("batch.hold", "batch.release", "batch.split", "batch.merge",
                                             "batch.reprioritise")
EDIT_RULES = "production.edit_rules"
"""Action ids: the same words as core.policy.ACTIONS and the audit log's `action` column."""


# ---- the rules document ---------------------------------------------------------------------------------


def defaults_from(settings: Settings) -> ProductionRules:
    """The rules in force until an ops manager stores others: core's defaults, batch wait from the environment."""
    return ProductionRules(batching=BatchPolicy(max_wait=timedelta(seconds=settings.batch_max_wait_s)))


def rules_to_document(rules: ProductionRules, *, start_sla: timedelta = DEFAULT_START_SLA) -> dict[str, Any]:
    """The JSON stored under RULES_KEY: every weight and policy field; durations as `<name>_s` seconds."""
    return {"routing": _encode(rules.routing), "priority": _encode(rules.priority),
            "batching": _encode(rules.batching),
            "calendar": [{"name": d.name, "ship_by": d.ship_by.isoformat(), "window_s": d.window.total_seconds()}
                         for d in rules.calendar.deadlines],
            "start_sla_s": start_sla.total_seconds()}


def rules_from_document(document: Mapping[str, Any] | None, *,
                        defaults: ProductionRules = ProductionRules()) -> ProductionRules:
    """Stored rules over `defaults`, field by field (a field not stored keeps its default).

    Raises:
        ProductionSettingsInvalid: a stored value is not a number, or the rules cannot work as stored.
    """
    document = document or {}
    try:
        calendar = defaults.calendar
        if "calendar" in document:
            calendar = Calendar(deadlines=tuple(
                Deadline(name=str(d["name"]), ship_by=datetime.fromisoformat(d["ship_by"]),
                         window=timedelta(seconds=float(d.get("window_s", 7 * 86400))))
                for d in document["calendar"]))
        return ProductionRules(routing=_decode(defaults.routing, document.get("routing")),
                               priority=_decode(defaults.priority, document.get("priority")),
                               batching=_decode(defaults.batching, document.get("batching")),
                               calendar=calendar)
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        raise ProductionSettingsInvalid(f"The stored production rules cannot be read ({error}); save them "
                                        "again from the batch builder.") from error


def start_sla_from_document(document: Mapping[str, Any] | None) -> timedelta:
    """The on-time start target stored with the rules (DEFAULT_START_SLA when none is stored)."""
    seconds = (document or {}).get("start_sla_s")
    return DEFAULT_START_SLA if seconds is None else timedelta(seconds=float(seconds))


def _encode(value: Any) -> dict[str, Any]:
    encoded = {}
    for f in fields(value):
        field_value = getattr(value, f.name)
        if isinstance(field_value, timedelta):
            encoded[f"{f.name}_s"] = field_value.total_seconds()
        else:
            encoded[f.name] = field_value
    return encoded


def _decode(default: Any, stored: Mapping[str, Any] | None) -> Any:
    stored = stored or {}
    changes: dict[str, Any] = {}
    for f in fields(default):
        current = getattr(default, f.name)
        if isinstance(current, timedelta):
            if f"{f.name}_s" in stored:
                changes[f.name] = timedelta(seconds=float(stored[f"{f.name}_s"]))
        elif f.name in stored:
            changes[f.name] = int(stored[f.name]) if isinstance(current, int) else float(stored[f.name])
    return replace(default, **changes)


def load_production_rules(uow, *, defaults: ProductionRules = ProductionRules()) -> ProductionRules:
    """The production rules in force: the stored document over `defaults` (pass `defaults_from(settings)`).

    Opens its own short transaction, so call it before (not inside) another `with uow:` block.
    """
    with uow:
        return rules_from_document(uow.settings_store.get(RULES_KEY), defaults=defaults)


# ---- open work, as batching and re-scoring see it ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenJob:
    """A routed job not yet at its partner, with what batching and priority re-scoring need."""

    id: str
    order_id: str
    partner_id: str
    product_type: str
    print_method: str
    region: str
    priority: float
    attempt: int
    shipping_speed: str
    order_value_cents: int
    placed_at: datetime
    batch_id: str | None = None
    batch_status: str | None = None
    batch_created_at: datetime | None = None
    batch_target: int | None = None
    order_number: str = ""
    unit_index: int = 1

    def view(self, *, now: datetime) -> JobView:
        """Batching's view; a stored batch's age (and so its jobs' wait) runs from when it was opened."""
        return JobView(id=self.id, order_id=self.order_id, partner_id=self.partner_id,
                       product_type=self.product_type, print_method=self.print_method, region=self.region,
                       priority=self.priority, ready_at=self.batch_created_at or now)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedBatch:
    """One row of the batch builder: a stored open or held batch, or one the batcher would make next."""

    batch_id: str | None
    status: str
    proposal: ProposedBatch
    capacity_per_hour: float

    @property
    def stored(self) -> bool:
        return self.batch_id is not None


PROPOSED = "proposed"
"""The status shown for a batch the batcher would create from jobs not yet in any batch."""


def queue_order(job: JobView) -> tuple[float, datetime, str]:
    """Most urgent first, then longest waiting, then id: the order a batch's jobs are listed and split in."""
    return -job.priority, job.ready_at, job.id


def plan_batches(jobs: Iterable[OpenJob], *, rules: ProductionRules,
                 partners_capacity: Mapping[str, Mapping[str, float]], now: datetime,
                 retarget: bool = False) -> list[PlannedBatch]:
    """Stored open/held batches with their jobs, then what the batcher would make of unbatched jobs.

    A stored batch keeps the target it was opened with (as the batcher does) unless `retarget`, which
    gives open ones the policy's target for today's capacity (what saving a new batch policy does).
    Held batches are never due: the batcher releases only open ones.
    """
    def capacity(partner_id: str, method: str) -> float:
        return float(partners_capacity.get(partner_id, {}).get(method, 0.0))

    jobs = list(jobs)
    stored = sorted((job for job in jobs if job.batch_id), key=lambda job: (job.batch_created_at, job.batch_id))
    planned = []
    for batch_id, members in groupby(stored, key=lambda job: job.batch_id):
        members = list(members)
        first = members[0]
        views = tuple(sorted((job.view(now=now) for job in members), key=queue_order))
        per_hour = capacity(first.partner_id, first.print_method)
        target = first.batch_target or rules.batching.min_size
        if retarget and first.batch_status == BatchStatus.OPEN:
            target = rules.batching.target_size(per_hour)
        due = None
        if first.batch_status == BatchStatus.OPEN:
            due = should_release(len(views), target, now - (first.batch_created_at or now), rules.batching)
        key = GroupKey(first.partner_id, first.product_type, first.print_method, first.region)
        planned.append(PlannedBatch(batch_id=batch_id, status=str(first.batch_status), capacity_per_hour=per_hour,
                                    proposal=ProposedBatch(key=key, jobs=views, target_size=target, as_of=now,
                                                           release_reason=due)))
    loose = [job.view(now=now) for job in jobs if not job.batch_id]
    for proposal in propose_batches(loose, partners_capacity=partners_capacity, policy=rules.batching, now=now):
        planned.append(PlannedBatch(batch_id=None, status=PROPOSED, proposal=proposal,
                                    capacity_per_hour=capacity(proposal.key.partner_id, proposal.key.print_method)))
    return planned


def priority_shift(job: OpenJob, *, current: ProductionRules, proposed: ProductionRules, now: datetime) -> float:
    """How many points new priority weights (or calendar) add to a job: new score minus current score.

    Applied on top of the stored priority, so an ops manager's reprioritisation survives a change of weights.
    """
    if current.priority == proposed.priority and current.calendar == proposed.calendar:
        return 0.0

    def score(rules: ProductionRules) -> float:
        return priority_of(shipping_speed=job.shipping_speed, order_value_cents=job.order_value_cents,
                           placed_at=job.placed_at, attempt=job.attempt, now=now, weights=rules.priority,
                           calendar=rules.calendar).score

    return score(proposed) - score(current)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartShift:
    """One job's predicted start under the rules in force and under the edited ones (None: held, or no
    capacity for its method)."""

    job_id: str
    order_id: str
    order_number: str
    unit_index: int
    partner_id: str
    print_method: str
    batch: str
    before: datetime | None
    after: datetime | None

    @property
    def shift(self) -> timedelta | None:
        return None if self.before is None or self.after is None else self.after - self.before


def preview_rules(jobs: Iterable[OpenJob], *, current: ProductionRules, proposed: ProductionRules,
                  partners_capacity: Mapping[str, Mapping[str, float]], load: Mapping[str, Mapping[str, int]],
                  now: datetime) -> list[StartShift]:
    """What saving `proposed` would do to predicted start times, job by job, before it is saved.

    "After" is computed exactly as `save_production_rules` changes things: every open job's priority
    moves by `priority_shift`, and open batches are retargeted when the batch policy changes.
    """
    jobs = list(jobs)
    rescored = [replace(job, priority=job.priority + priority_shift(job, current=current, proposed=proposed,
                                                                    now=now)) for job in jobs]
    before_plan = plan_batches(jobs, rules=current, partners_capacity=partners_capacity, now=now)
    after_plan = plan_batches(rescored, rules=proposed, partners_capacity=partners_capacity, now=now,
                              retarget=current.batching != proposed.batching)

    def starts(plan: list[PlannedBatch], policy: BatchPolicy) -> Mapping[str, datetime]:
        return predicted_starts([p.proposal for p in plan if p.status != BatchStatus.HELD],
                                partners_capacity=partners_capacity, load=load, now=now, policy=policy)

    before, after = starts(before_plan, current.batching), starts(after_plan, proposed.batching)
    label = {view.id: planned.batch_id or f"new {planned.proposal.key.label}"
             for planned in before_plan for view in planned.proposal.jobs}
    return [StartShift(job_id=job.id, order_id=job.order_id, order_number=job.order_number,
                       unit_index=job.unit_index, partner_id=job.partner_id, print_method=job.print_method,
                       batch=label.get(job.id, ""), before=before.get(job.id), after=after.get(job.id))
            for job in sorted(jobs, key=lambda job: (before.get(job.id) or datetime.max.replace(tzinfo=now.tzinfo),
                                                     job.id))]


# ---- staff actions on stored batches ---------------------------------------------------------------------------


def hold_batch(batch_id: str, *, uow, actor: str, at: datetime, new_id: Callable[[str], str]) -> None:
    """Stop an open batch from being released automatically (it takes no new jobs either) until released.

    Raises:
        NotFound: no such batch.
        BatchingError: the batch is not open (already held, gone to its partner, merged or cancelled).
    """
    with uow:
        batch = _load(uow, batch_id)
        if batch.status != BatchStatus.OPEN:
            raise BatchingError(f"Batch {batch_id} is {batch.status}: only an open batch can be held."
                                + _why_not_editable(batch))
        jobs = _batched(uow, batch_id)
        before = _snapshot(batch, jobs)
        batch.advance(BatchStatus.HELD, at=at, source=f"user:{actor}", reason="held by staff")
        _record(uow, actor=actor, action=HOLD, batch_id=batch_id, before=before, after=_snapshot(batch, jobs),
                orders=[job.order_id for job in jobs], at=at, ref=new_id("act"),
                note=f"{actor} held batch {batch_id} ({len(jobs)} job(s)): it will not go to "
                     f"{batch.partner_id} until released")
        uow.commit()


def release_batch(batch_id: str, *, uow, actor: str, at: datetime, new_id: Callable[[str], str]) -> None:
    """Send an open or held batch to its partner now; its SubmitBatch message goes out after the commit.

    Raises:
        NotFound: no such batch.
        BatchingError: the batch has already gone, was merged or cancelled, or has no jobs.
    """
    with uow:
        batch = _load(uow, batch_id)
        _check_editable(batch, "released")
        jobs = _batched(uow, batch_id)
        if not jobs:
            raise BatchingError(f"Batch {batch_id} has no jobs waiting to print, so there is nothing to release.")
        before = _snapshot(batch, jobs)
        release(batch, uow=uow, at=at, source=f"user:{actor}", reason="released by staff")
        _record(uow, actor=actor, action=RELEASE, batch_id=batch_id, before=before, after=_snapshot(batch, jobs),
                orders=[job.order_id for job in jobs], at=at, ref=new_id("act"),
                note=f"{actor} released batch {batch_id} ({len(jobs)} job(s)) to {batch.partner_id}")
        uow.commit()


def split_batch(batch_id: str, at_index: int, *, uow, actor: str, at: datetime, policy: BatchPolicy,
                new_id: Callable[[str], str]) -> str:
    """Keep the first `at_index` jobs (in queue order) and move the rest into a new open batch of the group.

    The new batch keeps the original's opening time, so its jobs' wait (and age release) is not reset.

    Returns:
        The new batch's id.
    Raises:
        NotFound: no such batch.
        BatchingError: the batch has gone to its partner (or was merged/cancelled), or a part would be empty.
    """
    with uow:
        batch = _load(uow, batch_id)
        _check_editable(batch, "split")
        jobs = _batched(uow, batch_id)
        proposal = _proposal(batch, jobs, at=at, policy=policy)
        _, tail = split(proposal, at_index, policy=policy)
        before = _snapshot(batch, jobs)
        part = Batch(id=new_id("bat"), partner_id=batch.partner_id, product_type=batch.product_type,
                     print_method=batch.print_method, region=batch.region, created_at=batch.created_at,
                     target_size=batch.target_size)
        uow.batches.add(part)
        by_id = {job.id: job for job in jobs}
        moved = [by_id[view.id] for view in tail.jobs]
        for job in moved:
            job.batch_id = part.id
        kept = [job for job in jobs if job.batch_id == batch_id]
        _record(uow, actor=actor, action=SPLIT, batch_id=batch_id, before=before,
                after=_snapshot(batch, kept) | {"new_batch": _snapshot(part, moved)},
                orders=[job.order_id for job in jobs], at=at, ref=new_id("act"),
                note=f"{actor} split batch {batch_id}: {len(moved)} of its {len(jobs)} job(s) moved to new batch "
                     f"{part.id}")
        uow.commit()
    return part.id


def merge_batches(into_id: str, from_id: str, *, uow, actor: str, at: datetime, policy: BatchPolicy,
                  new_id: Callable[[str], str]) -> None:
    """Move every job of batch `from_id` into batch `into_id` (same group only); `from_id` is cancelled.

    Raises:
        NotFound: either batch is missing.
        BatchingError: the same batch twice, different groups, a batch over the largest size, or a batch that
            has gone to its partner (or was merged/cancelled).
    """
    if into_id == from_id:
        raise BatchingError(f"Batch {into_id} cannot be merged with itself; choose another batch of its group.")
    with uow:
        into, other = _load(uow, into_id), _load(uow, from_id)
        _check_editable(into, "merged")
        _check_editable(other, "merged")
        into_jobs, other_jobs = _batched(uow, into_id), _batched(uow, from_id)
        merged = merge(_proposal(into, into_jobs, at=at, policy=policy),
                       _proposal(other, other_jobs, at=at, policy=policy), policy=policy)
        before = {"into": _snapshot(into, into_jobs), "from": _snapshot(other, other_jobs)}
        for job in other_jobs:
            job.batch_id = into_id
        into.target_size = merged.target_size
        into.created_at = min(into.created_at, other.created_at)  # the longest-waiting job's wait keeps counting
        other.advance(BatchStatus.CANCELLED, at=at, source=f"user:{actor}", reason=f"merged into {into_id}")
        _record(uow, actor=actor, action=MERGE, batch_id=into_id, before=before,
                after={"into": _snapshot(into, into_jobs + other_jobs), "from": _snapshot(other, [])},
                orders=[job.order_id for job in into_jobs + other_jobs], at=at, ref=new_id("act"),
                note=f"{actor} merged batch {from_id} ({len(other_jobs)} job(s)) into batch {into_id}")
        uow.commit()


def reprioritise_batch(batch_id: str, priority: float, *, uow, actor: str, at: datetime,
                       new_id: Callable[[str], str]) -> None:
    """Give every job of an open or held batch the same priority (it orders batches on the partner's line).

    Raises:
        NotFound: no such batch.
        BatchingError: not a finite number, or the batch has gone to its partner (or was merged/cancelled).
    """
    if not math.isfinite(priority):
        raise BatchingError(f"A batch priority must be an ordinary number (got {priority}).")
    with uow:
        batch = _load(uow, batch_id)
        _check_editable(batch, "reprioritised")
        jobs = _batched(uow, batch_id)
        before = _snapshot(batch, jobs) | {"priorities": {job.id: job.priority for job in jobs}}
        for job in jobs:
            job.priority = float(priority)
        _record(uow, actor=actor, action=REPRIORITISE, batch_id=batch_id, before=before,
                after=_snapshot(batch, jobs) | {"priority": float(priority)},
                orders=[job.order_id for job in jobs], at=at, ref=new_id("act"),
                note=f"{actor} set the priority of batch {batch_id} ({len(jobs)} job(s)) to {priority:g}")
        uow.commit()


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesSaved:
    """What saving the rules changed in open work (the preview showed it beforehand)."""

    rescored_jobs: int
    retargeted_batches: int


def save_production_rules(rules: ProductionRules, *, uow, actor: str, at: datetime, new_id: Callable[[str], str],
                          defaults: ProductionRules = ProductionRules(),
                          start_sla: timedelta | None = None) -> RulesSaved:
    """Store new weights and batch policy, and apply them to open work exactly as `preview_rules` showed.

    Every open job's priority moves by `priority_shift` (an ops manager's batch priority is kept as an
    offset); open batches get the new target size when the batch policy changed. Routing weights apply to
    jobs routed from now on. `start_sla` None keeps the stored on-time start target.
    """
    with uow:
        stored = uow.settings_store.get(RULES_KEY)
        current = rules_from_document(stored, defaults=defaults)
        document = rules_to_document(rules, start_sla=start_sla or start_sla_from_document(stored))
        uow.settings_store.put(RULES_KEY, document, by=actor, at=at)
        affected: set[str] = set()
        rescored = retargeted = 0
        open_batches = uow.batches.open()
        work = [(job, None) for job in uow.jobs.routed_unbatched()]
        work += [(job, batch) for batch in open_batches for job in _batched(uow, batch.id)]
        for job, batch in work:
            order = uow.orders.get(job.order_id)
            if order is None:
                continue
            shift = priority_shift(_open_job(job, order, batch), current=current, proposed=rules, now=at)
            if shift:
                job.priority += shift
                rescored += 1
                affected.add(job.order_id)
        if current.batching != rules.batching:
            capacity = uow.partners.capacity()
            for batch in open_batches:
                target = rules.batching.target_size(capacity.get(batch.partner_id, {}).get(batch.print_method, 0.0))
                if batch.status == BatchStatus.OPEN and target != batch.target_size:
                    batch.target_size = target
                    retargeted += 1
                    affected.update(job.order_id for job in _batched(uow, batch.id))
        _record(uow, actor=actor, action=EDIT_RULES, batch_id=None, before=stored, after=document,
                orders=affected, at=at, ref=new_id("act"),
                note=f"{actor} changed the production rules: {rescored} open job(s) re-scored, "
                     f"{retargeted} open batch(es) resized")
        uow.commit()
    return RulesSaved(rescored_jobs=rescored, retargeted_batches=retargeted)


# ---- helpers ---------------------------------------------------------------------------------------------------


def _load(uow, batch_id: str) -> Batch:
    batch = uow.batches.get(batch_id, lock=True)
    if batch is None:
        raise NotFound(f"There is no batch {batch_id}; reload the page to see the current batches.")
    return batch


def _why_not_editable(batch: Batch) -> str:
    if batch.status == BatchStatus.CANCELLED:
        return " It was merged into another batch or cancelled."
    if batch.status not in EDITABLE:
        return f" It has already gone to {batch.partner_id}."
    return ""


def _check_editable(batch: Batch, what: str) -> None:
    if batch.status not in EDITABLE:
        raise BatchingError(f"Batch {batch.id} is {batch.status}: only an open or held batch can be {what}."
                            + _why_not_editable(batch))


def _batched(uow, batch_id: str) -> list[PrintJob]:
    """The batch's jobs still waiting to go to the partner (a job cancelled meanwhile is not moved)."""
    return [job for job in uow.jobs.in_batch(batch_id) if job.status == JobStatus.BATCHED]


def _proposal(batch: Batch, jobs: list[PrintJob], *, at: datetime, policy: BatchPolicy) -> ProposedBatch:
    views = sorted((JobView(id=job.id, order_id=job.order_id, partner_id=batch.partner_id,
                            product_type=batch.product_type, print_method=batch.print_method, region=batch.region,
                            priority=job.priority, ready_at=batch.created_at) for job in jobs), key=queue_order)
    due = should_release(len(views), batch.target_size, at - batch.created_at, policy)
    return ProposedBatch(key=GroupKey(batch.partner_id, batch.product_type, batch.print_method, batch.region),
                         jobs=tuple(views), target_size=batch.target_size, as_of=at, release_reason=due)


def _open_job(job: PrintJob, order: Order, batch: Batch | None) -> OpenJob:
    return OpenJob(id=job.id, order_id=job.order_id, partner_id=job.partner_id or "",
                   product_type=job.product_type or "", print_method=job.print_method or "", region=job.region or "",
                   priority=job.priority, attempt=job.attempt, shipping_speed=str(order.shipping_speed),
                   order_value_cents=order.total_cents, placed_at=order.placed_at,
                   batch_id=batch.id if batch else None, batch_status=str(batch.status) if batch else None,
                   batch_created_at=batch.created_at if batch else None,
                   batch_target=batch.target_size if batch else None)


def _snapshot(batch: Batch, jobs: list[PrintJob]) -> dict[str, Any]:
    return {"status": str(batch.status), "target_size": batch.target_size, "size": len(jobs),
            "jobs": sorted(job.id for job in jobs)}


def _record(uow, *, actor: str, action: str, batch_id: str | None, before: Any, after: Any, orders: Iterable[str],
            at: datetime, ref: str, note: str) -> None:
    """One audit row for the action and one staff.action line on each affected order's timeline."""
    target_type, target_id = ("batch", batch_id) if batch_id else ("settings", RULES_KEY)
    uow.audit.record(actor, action, target_type, target_id, None, before, after, at)
    details = {"action": action, "note": note} | ({"batch": batch_id} if batch_id else {})
    for order_id in sorted(set(orders)):
        uow.timeline.add(Noted(order_id=order_id, at=at, source=f"user:{actor}", kind=EventType.STAFF_ACTION,
                               key=f"staff:{ref}:{order_id}", details=details))
    log.info("%s by %s on %s %s (%d order(s))", action, actor, target_type, target_id, len(set(orders)))
