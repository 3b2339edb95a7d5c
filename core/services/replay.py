"""Ops managers replay failed work: dead-lettered messages back on their queues, failed webhooks re-applied."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Callable, Iterable

from core.replay import (
    DEFAULT_IN_FLIGHT,
    DEFAULT_UNAPPLIED_AFTER,
    FAILED_INBOX,
    REPLAY,
    WEBHOOK_COMMANDS,
    DeadLetterStore,
    ReplayFilter,
    ReplayItem,
    ReplayOutcome,
    ReplayPlan,
    audit_summary,
    failed_delivery,
    plan_replay,
    webhook_command,
    why_not_replayable,
)

log = logging.getLogger(__name__)

LIST_LIMIT = 2000
"""At most this many failed webhook deliveries are read per listing (dead letters are all read)."""


def failed_work(uow, dead_letters: DeadLetterStore, *, now: datetime,
                unapplied_after: timedelta = DEFAULT_UNAPPLIED_AFTER) -> list[ReplayItem]:
    """Every dead letter and every failed (or long unapplied) partner and carrier webhook, oldest first.

    A dead letter that applies a webhook is shown with that webhook's source, so the partner filter finds it.
    """
    letters = dead_letters.dead_letters()
    with uow:
        rows = uow.inbox.failed(kinds=tuple(WEBHOOK_COMMANDS), statuses=tuple(sorted(FAILED_INBOX)),
                                received_before=now - unapplied_after, limit=LIST_LIMIT)
        sources = uow.inbox.sources(_inbox_id(letter) for letter in letters if _inbox_id(letter) is not None)
    letters = [replace(letter, source=sources.get(_inbox_id(letter))) if _inbox_id(letter) in sources else letter
               for letter in letters]
    return sorted([*letters, *(failed_delivery(row) for row in rows)], key=lambda i: (i.failed_at, i.key))


def _inbox_id(letter: ReplayItem) -> int | None:
    value = (letter.payload.get("kwargs") or {}).get("inbox_id")
    return value if isinstance(value, int) else None


def dry_run(uow, dead_letters: DeadLetterStore, filters: ReplayFilter, *, now: datetime,
            chosen: Iterable[str] | None = None, in_flight: timedelta = DEFAULT_IN_FLIGHT,
            unapplied_after: timedelta = DEFAULT_UNAPPLIED_AFTER) -> ReplayPlan:
    """What a replay of this selection would do now, changing nothing."""
    items = failed_work(uow, dead_letters, now=now, unapplied_after=unapplied_after)
    return plan_replay(items, filters, now=now, chosen=chosen, in_flight=in_flight)


def replay(uow, dead_letters: DeadLetterStore, filters: ReplayFilter, *, actor: str, now: datetime,
           new_id: Callable[[str], str], chosen: Iterable[str] | None = None,
           in_flight: timedelta = DEFAULT_IN_FLIGHT,
           unapplied_after: timedelta = DEFAULT_UNAPPLIED_AFTER) -> ReplayOutcome:
    """Replay what the dry run shows now: webhooks re-opened and their apply command sent, dead letters moved
    back onto their queues; one audit row says who replayed what.

    Safe to repeat: the selection is read afresh, a re-driven webhook is in flight (left alone) until it fails
    again, and a dead letter leaves the dead letters in the same step that re-enqueues it, so a second replay
    of the same selection finds nothing. The actors guard on state, so a message run twice changes nothing.

    Returns:
        The keys replayed, those already gone (replayed by someone else meanwhile) and those left, with why.
    """
    plan = dry_run(uow, dead_letters, filters, now=now, chosen=chosen, in_flight=in_flight,
                   unapplied_after=unapplied_after)
    skipped = [(item.key, reason) for item, reason in plan.skipped]
    if not plan.replay:
        return ReplayOutcome(run_id=None, skipped=tuple(skipped))
    run_id = new_id("rpl")
    webhooks = []
    with uow:
        for item in plan.webhooks:
            reason = _recheck(uow, item, now=now, in_flight=in_flight)
            if reason is not None:
                skipped.append((item.key, reason))
                continue
            uow.inbox.reopen(item.inbox_id, at=now)
            uow.defer(webhook_command(item.source)(inbox_id=item.inbox_id))
            webhooks.append(item)
        done = ReplayPlan(replay=(*plan.dead_letters, *webhooks))
        uow.audit.record(actor=actor, action=REPLAY, target_type="replay", target_id=run_id, order_id=None,
                         before=audit_summary(done, filters),
                         after={"dead_letters": len(done.dead_letters), "webhooks": len(webhooks),
                                "skipped": len(skipped)}, at=now)
        uow.commit()
    moved, gone = [], []
    for letter in plan.dead_letters:  # after the commit: the audit row stands before any message moves
        (moved if dead_letters.replay(letter, at=now) else gone).append(letter.key)
    if gone:
        log.warning("replay %s: %d dead letter(s) were already gone (replayed meanwhile or expired)", run_id, len(gone))
    log.info("replay %s by %s: %d dead letter(s), %d webhook(s)", run_id, actor, len(moved), len(webhooks))
    return ReplayOutcome(run_id=run_id, dead_letters=tuple(moved), webhooks=tuple(i.key for i in webhooks),
                         gone=tuple(gone), skipped=tuple(skipped))


def _recheck(uow, item: ReplayItem, *, now: datetime, in_flight: timedelta) -> str | None:
    """The delivery's row locked and judged again: another console may have replayed it a moment ago."""
    row = uow.inbox.get(item.inbox_id, lock=True)
    if row is None:
        return "no longer stored"
    return why_not_replayable(failed_delivery(row), now=now, in_flight=in_flight)
