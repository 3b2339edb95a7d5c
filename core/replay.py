"""Replaying failed work: which dead letters and failed webhook deliveries a filter selects, and what a replay
would do with them (the dry run), decided without any I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Iterable, Mapping, Protocol

from core.commands import ApplyCarrierEvent, ApplyPartnerEvent, StageCommand, actor_name
from core.errors import PressroomError

REPLAY = "replay.run"
"""The action id (core.policy.ACTIONS and the audit log's `action`)."""
DEFAULT_IN_FLIGHT = timedelta(minutes=2)
"""A webhook re-driven (by the console or the reconciler) more recently than this is still being applied."""
DEFAULT_UNAPPLIED_AFTER = timedelta(minutes=10)
"""A webhook stored but still not applied this long after it arrived is listed as unapplied."""

WEBHOOK_COMMANDS: Mapping[str, type[StageCommand]] = {"partner": ApplyPartnerEvent, "carrier": ApplyCarrierEvent}
"""The command that applies a stored webhook, by its source kind ("partner:acme" → "partner"): the very
message the API sends when the delivery arrives."""

_OPTIONS_OF_A_FAILURE = frozenset({"retries", "traceback", "requeue_timestamp", "eta", "redis_message_id"})


class ItemKind(StrEnum):
    DEAD_LETTER = "dead_letter"
    WEBHOOK = "webhook"


class InboxStatus(StrEnum):
    """The webhook inbox's `status` words (as the partner and carrier appliers write them)."""

    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"


FAILED_INBOX = frozenset({InboxStatus.REJECTED, InboxStatus.FAILED})
"""Deliveries whose applying ended in an error; a `received` one only counts once it is old (unapplied)."""


class ReplayFilterInvalid(PressroomError):
    """A filter that cannot select anything sensible (e.g. a minimum age above the maximum)."""

    code = "replay_filter_invalid"


class DeadLettersUnavailable(PressroomError):
    """The broker's Redis did not answer, so dead letters can be neither listed nor replayed."""

    code = "dead_letters_unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayItem:
    """One piece of failed work the console lists: a dead-lettered message or a failed webhook delivery.

    `key` names it across reads ("dlq:<queue>:<redis message id>", "inbox:<id>"); a dead letter that fails
    again after a replay comes back under a new key.
    """

    key: str
    kind: ItemKind
    stage: str
    actor: str
    error: str
    failed_at: datetime
    status: str
    summary: str
    source: str | None = None
    queue: str | None = None
    redis_id: str | None = None
    message_id: str | None = None
    retries: int = 0
    inbox_id: int | None = None
    last_attempt_at: datetime | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    def age(self, now: datetime) -> timedelta:
        return now - self.failed_at


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFilter:
    """What the ops manager narrowed the list to; an empty field matches everything.

    Text fields match case-insensitively anywhere in the item's value (`actor="render"` finds
    `render.render_asset`); ages are measured from when the item failed.
    """

    kinds: frozenset[ItemKind] = frozenset(ItemKind)
    stages: frozenset[str] = frozenset()
    actor: str = ""
    error: str = ""
    source: str = ""
    min_age: timedelta | None = None
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("min_age", "max_age"):
            value = getattr(self, name)
            if value is not None and value < timedelta(0):
                raise ReplayFilterInvalid(f"The {name.replace('_', ' ')} can't be negative.")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ReplayFilterInvalid("The minimum age is above the maximum age, so nothing could match: "
                                      "swap them or clear one.")

    def matches(self, item: ReplayItem, *, now: datetime) -> bool:
        age = item.age(now)
        return (item.kind in self.kinds
                and (not self.stages or item.stage in self.stages)
                and _contains(item.actor, self.actor)
                and _contains(item.error, self.error)
                and _contains(item.source or "", self.source)
                and (self.min_age is None or age >= self.min_age)
                and (self.max_age is None or age <= self.max_age))


def _contains(value: str, wanted: str) -> bool:
    wanted = wanted.strip().casefold()
    return not wanted or wanted in value.casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayPlan:
    """What a replay of the selection would do: the items it would replay, and those it would leave, why."""

    replay: tuple[ReplayItem, ...]
    skipped: tuple[tuple[ReplayItem, str], ...] = ()

    @property
    def count(self) -> int:
        return len(self.replay)

    @property
    def dead_letters(self) -> tuple[ReplayItem, ...]:
        return tuple(i for i in self.replay if i.kind == ItemKind.DEAD_LETTER)

    @property
    def webhooks(self) -> tuple[ReplayItem, ...]:
        return tuple(i for i in self.replay if i.kind == ItemKind.WEBHOOK)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOutcome:
    """What a replay did: dead letters put back on their queues, webhooks re-applied, and what it left."""

    run_id: str | None
    dead_letters: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def count(self) -> int:
        return len(self.dead_letters) + len(self.webhooks)


class DeadLetterStore(Protocol):
    """The broker's dead-letter queues (adapters.deadletters over Redis)."""

    def dead_letters(self) -> list[ReplayItem]:
        """Every dead-lettered message of every stage queue, as ReplayItems (built with `dead_letter`)."""

    def replay(self, item: ReplayItem, *, at: datetime) -> bool:
        """Move `item` from its dead letters back onto its queue, once: False when it is no longer there."""


# ---- building items ----------------------------------------------------------------------------------


def dead_letter(queue: str, redis_id: str, message: Mapping[str, Any], *, dead_at: datetime) -> ReplayItem:
    """A dead-lettered Dramatiq message (its decoded JSON) as the console lists it."""
    options = message.get("options") or {}
    kwargs = message.get("kwargs") or {}
    args = message.get("args") or []
    summary = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in sorted(kwargs.items()))])
    return ReplayItem(key=f"dlq:{queue}:{redis_id}", kind=ItemKind.DEAD_LETTER, stage=queue,
                      actor=str(message.get("actor_name", "?")), error=last_error(options.get("traceback")),
                      failed_at=dead_at, status="dead", summary=summary or "(no arguments)", queue=queue,
                      redis_id=redis_id, message_id=message.get("message_id"), retries=int(options.get("retries", 0)),
                      payload=message)


def failed_delivery(row: Mapping[str, Any]) -> ReplayItem:
    """A webhook inbox row (id, source, event_id, topic, status, error, received_at, processed_at,
    redriven_at) as the console lists it; its stage and actor are those of the command that applies it."""
    command = webhook_command(row["source"])
    status = str(row["status"])
    failed_at = row["processed_at"] if status in FAILED_INBOX and row["processed_at"] else row["received_at"]
    error = row["error"] or ("not applied yet" if status == InboxStatus.RECEIVED else "no error recorded")
    return ReplayItem(key=f"inbox:{row['id']}", kind=ItemKind.WEBHOOK,
                      stage=command.QUEUE if command else "webhooks", actor=actor_name(command) if command else "?",
                      error=str(error), failed_at=failed_at, status=status,
                      summary=f"{row['topic']} {row['event_id']}", source=str(row["source"]), inbox_id=int(row["id"]),
                      last_attempt_at=row.get("redriven_at") or row["received_at"])


def webhook_command(source: str) -> type[StageCommand] | None:
    """The command that applies a delivery from `source` ("partner:acme"), or None for a source we don't replay."""
    return WEBHOOK_COMMANDS.get(source.split(":", 1)[0])


def last_error(traceback: str | None) -> str:
    """The exception line of a stored traceback (its last non-blank line)."""
    lines = [line.strip() for line in (traceback or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no error recorded (it failed on its only try)"


def replayed_message(message: Mapping[str, Any], *, queue: str, redis_id: str, at_ms: int) -> dict[str, Any]:
    """The message to enqueue for a dead letter: same id, actor and arguments on its stage queue, with the
    failure's bookkeeping (retries, traceback, delay) cleared so it gets its full retries again."""
    options = {k: v for k, v in (message.get("options") or {}).items() if k not in _OPTIONS_OF_A_FAILURE}
    options |= {"redis_message_id": redis_id, "replays": int(options.get("replays", 0)) + 1, "replayed_at": at_ms}
    return {**message, "queue_name": queue, "options": options, "message_timestamp": at_ms}


# ---- selection and dry run ---------------------------------------------------------------------------


def why_not_replayable(item: ReplayItem, *, now: datetime, in_flight: timedelta = DEFAULT_IN_FLIGHT) -> str | None:
    """None when a replay would do something for `item`; else the reason it would leave it alone."""
    if item.kind == ItemKind.DEAD_LETTER:
        return None
    if webhook_command(item.source or "") is None:
        return f"deliveries from {item.source} are not applied by a worker"
    if item.status in FAILED_INBOX:
        return None
    if item.status != InboxStatus.RECEIVED:
        return f"already {item.status}"
    if item.last_attempt_at is not None and now - item.last_attempt_at < in_flight:
        return "being applied right now (re-driven moments ago)"
    return None


def plan_replay(items: Iterable[ReplayItem], filters: ReplayFilter, *, now: datetime,
                chosen: Iterable[str] | None = None, in_flight: timedelta = DEFAULT_IN_FLIGHT) -> ReplayPlan:
    """The dry run: the items matching `filters` (and among the `chosen` keys, when given), oldest first,
    split into those a replay would re-run and those it would leave, with the reason."""
    keys = None if chosen is None else frozenset(chosen)
    seen: set[str] = set()
    replay, skipped = [], []
    for item in sorted(items, key=lambda i: (i.failed_at, i.key)):
        if item.key in seen or (keys is not None and item.key not in keys) or not filters.matches(item, now=now):
            continue
        seen.add(item.key)
        reason = why_not_replayable(item, now=now, in_flight=in_flight)
        if reason is None:
            replay.append(item)
        else:
            skipped.append((item, reason))
    return ReplayPlan(replay=tuple(replay), skipped=tuple(skipped))


def audit_summary(plan: ReplayPlan, filters: ReplayFilter) -> dict[str, Any]:
    """What the audit row says was replayed: the filter, and each item by key, stage, actor and error."""
    return {"filters": {"kinds": sorted(filters.kinds), "stages": sorted(filters.stages), "actor": filters.actor,
                        "error": filters.error, "source": filters.source,
                        "min_age_s": None if filters.min_age is None else filters.min_age.total_seconds(),
                        "max_age_s": None if filters.max_age is None else filters.max_age.total_seconds()},
            "items": [{"key": i.key, "stage": i.stage, "actor": i.actor, "error": i.error, "summary": i.summary}
                      for i in plan.replay]}
