"""The replay console's glue: the Redis dead letters, the failed-work list and dry run, and the replay action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import redis
import streamlit as st

import db
from adapters.deadletters import RedisDeadLetters
from app import actions, bootstrap
from core.commands import QUEUES
from core.errors import PressroomError
from core.replay import (
    REPLAY,
    DeadLetterStore,
    DeadLettersUnavailable,
    ItemKind,
    ReplayFilter,
    ReplayItem,
    ReplayOutcome,
)
from core.services import replay as service

STAGES = QUEUES
KIND_NAMES = {ItemKind.DEAD_LETTER: "Dead letters", ItemKind.WEBHOOK: "Failed webhooks"}
PLAN_COLUMNS = ["key", "stage", "actor", "source", "error", "what"]
COLUMNS = ["key", "kind", "stage", "actor", "source", "error", "failed", "age_min", "status", "what", "replay"]


@st.cache_resource(show_spinner=False)
def _dead_letters() -> RedisDeadLetters:
    return RedisDeadLetters(redis.Redis.from_url(bootstrap.settings().redis_url, socket_timeout=5,
                                                 socket_connect_timeout=3))


@st.cache_resource(show_spinner=False)
def _reading_sessions():
    return db.make_session_factory(bootstrap.engine())


def _reader() -> db.SqlUnitOfWork:
    """A unit of work on the reader engine, for the list and the dry run (they never commit)."""
    return db.SqlUnitOfWork(_reading_sessions())


def dead_letter_store() -> DeadLetterStore:
    return _dead_letters()


def filters(*, kinds: list[str], stages: list[str], actor: str, error: str, source: str,
            min_age_min: float | None, max_age_min: float | None) -> tuple[ReplayFilter | None, str | None]:
    """The console's filter from its widgets (ages in minutes; None or 0 for no bound), or why it can't be one
    (the ages contradict each other)."""
    try:
        return _filters(kinds=kinds, stages=stages, actor=actor, error=error, source=source,
                        min_age_min=min_age_min, max_age_min=max_age_min), None
    except PressroomError as refused:
        return None, refused.message


def filter_form(prefix: str) -> tuple[ReplayFilter | None, str | None]:
    """The console's filter widgets (kinds, stages, actor, error, source, ages), read into a filter or why not."""
    kinds, stages = st.columns(2)
    kinds.multiselect("What", list(KIND_NAMES), format_func=KIND_NAMES.get, key=f"{prefix}.kinds",
                      placeholder="Dead letters and failed webhooks")
    stages.multiselect("Stage (queue)", list(STAGES), key=f"{prefix}.stages", placeholder="Every stage")
    actor, error, source = st.columns(3)
    actor.text_input("Actor", key=f"{prefix}.actor", placeholder="e.g. render.render_asset")
    error.text_input("Error contains", key=f"{prefix}.error", placeholder="e.g. StorageUnavailable")
    source.text_input("Partner or source", key=f"{prefix}.source", placeholder="e.g. partner:acme")
    older, younger = st.columns(2)
    older.number_input("Failed at least … minutes ago", min_value=0.0, value=None, step=5.0, key=f"{prefix}.min_age")
    younger.number_input("Failed at most … minutes ago", min_value=0.0, value=None, step=5.0,
                         key=f"{prefix}.max_age")
    state = st.session_state
    return filters(kinds=state[f"{prefix}.kinds"], stages=state[f"{prefix}.stages"], actor=state[f"{prefix}.actor"],
                   error=state[f"{prefix}.error"], source=state[f"{prefix}.source"],
                   min_age_min=state[f"{prefix}.min_age"], max_age_min=state[f"{prefix}.max_age"])


def choose_items(keys: list[str], *, key: str) -> list[str]:
    """Which of the listed items to replay (none chosen: every item listed)."""
    return st.multiselect("Replay only these (leave empty for every item listed)", keys, key=key)


def _filters(*, kinds, stages, actor, error, source, min_age_min, max_age_min) -> ReplayFilter:
    return ReplayFilter(kinds=frozenset(ItemKind(k) for k in kinds) if kinds else frozenset(ItemKind),
                        stages=frozenset(stages), actor=actor, error=error, source=source,
                        min_age=timedelta(minutes=min_age_min) if min_age_min else None,
                        max_age=timedelta(minutes=max_age_min) if max_age_min else None)


def _row(item: ReplayItem, reason: str | None) -> dict[str, Any]:
    return {"key": item.key, "kind": KIND_NAMES[item.kind], "stage": item.stage, "actor": item.actor,
            "source": item.source or "", "error": item.error, "failed": item.failed_at,
            "age_min": round(item.age(bootstrap.now()).total_seconds() / 60, 1), "status": item.status,
            "what": item.summary, "replay": reason or "yes"}


class _Unreachable:
    """Stands for the dead letters while Redis does not answer: none listed, none replayed."""

    def dead_letters(self) -> list[ReplayItem]:
        return []

    def replay(self, item: ReplayItem, *, at) -> bool:
        return False


def dry_run(selection: ReplayFilter, chosen: list[str] | None = None) -> dict[str, Any]:
    """What a replay would do now: warning (a sentence, when the dead letters can't be read: the failed
    webhooks are still listed), count, dead_letters, webhooks, items (a frame of every matching item; its
    `replay` column says "yes" or why not), would (the items it would replay) and keys (theirs)."""
    warning = None
    try:
        plan = service.dry_run(_reader(), dead_letter_store(), selection, now=bootstrap.now(), chosen=chosen or None)
    except DeadLettersUnavailable as error:
        warning = error.message
        plan = service.dry_run(_reader(), _Unreachable(), selection, now=bootstrap.now(), chosen=chosen or None)
    rows = [_row(item, None) for item in plan.replay] + [_row(item, why) for item, why in plan.skipped]
    items = pd.DataFrame(rows, columns=COLUMNS).sort_values("failed", kind="stable")
    return {"warning": warning, "count": plan.count, "dead_letters": len(plan.dead_letters),
            "webhooks": len(plan.webhooks), "keys": [item.key for item in plan.replay], "items": items,
            "would": items.loc[items["replay"] == "yes", PLAN_COLUMNS]}


def _said(outcome: ReplayOutcome) -> str:
    if not outcome.count:
        return "Nothing to replay: what you selected was replayed already or is being applied right now."
    said = (f"Replayed {len(outcome.dead_letters)} dead letter(s) and re-applied {len(outcome.webhooks)} "
            f"webhook(s); audited as {outcome.run_id}.")
    if outcome.gone:
        said += f" {len(outcome.gone)} dead letter(s) had been replayed by someone else meanwhile."
    return said


def replay(selection: ReplayFilter, chosen: list[str] | None = None) -> bool:
    """Replay the selection as the dry run shows it (read again at the click), audited; ops managers only."""
    def work(*, uow, actor, at, new_id):
        return service.replay(uow, dead_letter_store(), selection, actor=actor, now=at, new_id=new_id,
                              chosen=chosen or None)

    return actions.act(REPLAY, work, _said)
