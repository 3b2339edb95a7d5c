"""Staff actions the pages call on clicks: each checks the role, writes through a unit of work, and audits."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Callable

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

import db
from adapters.broker import DramatiqBus, make_broker
from adapters.ids import TimeOrderedIds
from app import auth, bootstrap, components, queries
from core.errors import PressroomError
from core.policy import can_do
from core.ports import MessageBus
from core.production import BatchPolicy
from core.services import batches, qa
from core.services import monitor as monitoring

log = logging.getLogger(__name__)

bus_override: MessageBus | None = None
"""When set (tests: a DramatiqBus over a StubBroker), actions send through it instead of the Redis broker."""

NEXT_STEP = {
    "batching_refused": "Nothing was changed.",
    "illegal_transition": "Nothing was changed: the batch has moved on. Look at the table again.",
    "not_found": "Nothing was changed. The table now shows the current batches.",
    "conflict": "Someone changed it at the same moment, so nothing was saved: check the table and try again.",
    "production_settings_invalid": "Nothing was saved: correct that value and apply again.",
    "not_allowed": "Nothing was changed: do what the message says, or pick another item from the queue.",
}
SIGNED_OUT = "Your session has ended, so nothing was changed: sign in again and retry."
NOT_YOUR_ROLE = "Your role can't do this, so nothing was changed. Ask a manager if you need it."


@st.cache_resource(show_spinner=False)
def _broker():
    """The dashboard's Dramatiq broker on the settings' Redis (created on the first action that sends)."""
    return make_broker(bootstrap.settings())


@st.cache_resource(show_spinner=False, on_release=Engine.dispose)
def _writer() -> Engine:
    """A writing engine (BEGIN IMMEDIATE on SQLite), apart from the pages' reader engine."""
    return db.make_engine(bootstrap.settings().database_url)


@st.cache_resource(show_spinner=False)
def _session_factory() -> sessionmaker:
    return db.make_session_factory(_writer())


@st.cache_resource(show_spinner=False)
def _ids() -> TimeOrderedIds:
    return TimeOrderedIds()


def bus() -> MessageBus:
    """Where deferred stage messages go after an action commits."""
    return bus_override if bus_override is not None else DramatiqBus(_broker())


def require_action(action_id: str) -> auth.SignedIn | None:
    """The signed-in user if their role (re-read with their active flag) may do `action_id`; else says why."""
    user = auth.current_user()
    if user is None:
        st.error(SIGNED_OUT)
        return None
    if not can_do(user.role, action_id):
        st.error(NOT_YOUR_ROLE)
        return None
    return user


def act(action_id: str, work: Callable[..., Any], done: Callable[[Any], str]) -> bool:
    """Check the role, run `work(uow=…, actor=…, at=…, new_id=…)`, then refresh the cached reads and say so."""
    user = require_action(action_id)
    if user is None:
        return False
    uow = db.SqlUnitOfWork(_session_factory(), bus())
    try:
        result = work(uow=uow, actor=user.username, at=bootstrap.now(), new_id=_ids().new)
    except PressroomError as error:
        log.info("%s by %s refused: %s", action_id, user.username, error.code)
        st.error(f"{error.message} {NEXT_STEP.get(error.code, 'Nothing was changed.')}")
        return False
    st.cache_data.clear()
    st.toast(done(result), icon=":material/check_circle:")
    return True


def _policy() -> BatchPolicy:
    """The batch policy in force (split and merge check sizes against it)."""
    return queries.production_rules().batching


def hold_batch(batch_id: str) -> bool:
    return act(batches.HOLD, lambda **kw: batches.hold_batch(batch_id, **kw),
                lambda _: f"Batch {batch_id} is held: it will not be released until you release it.")


def release_batch(batch_id: str) -> bool:
    return act(batches.RELEASE, lambda **kw: batches.release_batch(batch_id, **kw),
                lambda _: f"Batch {batch_id} is released: it is on its way to the partner.")


def split_batch(batch_id: str, keep: int) -> bool:
    """Keep the first `keep` jobs in the batch; the rest go to a new open batch of the same group."""
    return act(batches.SPLIT, lambda **kw: batches.split_batch(batch_id, int(keep), policy=_policy(), **kw),
                lambda new_id: f"Batch {batch_id} is split: the jobs after #{keep} are in new batch {new_id}.")


def merge_batches(into_id: str, from_id: str | None) -> bool:
    if not from_id:
        st.error("Choose the batch to merge in first. Nothing was changed.")
        return False
    return act(batches.MERGE, lambda **kw: batches.merge_batches(into_id, from_id, policy=_policy(), **kw),
                lambda _: f"Batch {from_id} is merged into batch {into_id}.")


def reprioritise_batch(batch_id: str, priority: float) -> bool:
    return act(batches.REPRIORITISE, lambda **kw: batches.reprioritise_batch(batch_id, float(priority), **kw),
                lambda _: f"Every job of batch {batch_id} now has priority {priority:g}.")


def save_production_rules(document: dict[str, Any]) -> bool:
    """Apply edited rules (a rules document from the editor) to open work and store them."""
    defaults = batches.defaults_from(bootstrap.settings())

    def work(**kw):
        rules = batches.rules_from_document(document, defaults=defaults)
        sla = timedelta(seconds=float(document["start_sla_s"])) if document.get("start_sla_s") else None
        return batches.save_production_rules(rules, defaults=defaults, start_sla=sla, **kw)

    return act(batches.EDIT_RULES, work,
                lambda saved: f"Production rules saved: {saved.rescored_jobs} open job(s) re-scored, "
                              f"{saved.retargeted_batches} open batch(es) resized.")


def save_edited_production_rules(editor_key: str) -> bool:
    """The Apply button's callback: save the rules as the editor's widgets hold them at the click."""
    return save_production_rules(components.edited_rules(queries.rules_in_force(), key=editor_key))


# ---- QA review ---------------------------------------------------------------------------------------------

APPROVE, REJECT, UNDO = "qa.approve", "qa.reject", "qa.undo"


def _qa_rules() -> qa.QaRules:
    return qa.QaRules(undo_window_s=bootstrap.settings().qa_undo_window_s)


def _decide(inspection_id: str, *, approve: bool, reason: str | None):
    def work(*, uow, actor, at, new_id):
        return qa.decide(inspection_id, approve=approve, reason=reason, user=actor, uow=uow, now=at)
    return work


def approve_inspection(inspection_id: str) -> bool:
    """An inspector passes a needs-review item: after the undo window the job passes QA (and the order ships)."""
    return act(APPROVE, _decide(inspection_id, approve=True, reason=None),
                lambda _: f"Approved inspection {inspection_id}: it passes QA in "
                          f"{_qa_rules().undo_window_s:.0f} s unless you undo it.")


def reject_inspection(inspection_id: str, reason: str | None) -> bool:
    """An inspector fails a needs-review item with a DefectReason code: after the undo window, a reprint."""
    return act(REJECT, _decide(inspection_id, approve=False, reason=reason),
                lambda _: f"Rejected inspection {inspection_id} ({reason}): it is reprinted in "
                          f"{_qa_rules().undo_window_s:.0f} s unless you undo it (held after its last attempt).")


def undo_verdict(inspection_id: str) -> bool:
    """Take back one's own verdict inside the undo window: the item returns to the queue."""
    def work(*, uow, actor, at, new_id):
        return qa.undo_verdict(inspection_id, user=actor, uow=uow, now=at, rules=_qa_rules())
    return act(UNDO, work, lambda _: f"Undone: inspection {inspection_id} is back in the queue.")


# ---- control room alerts -----------------------------------------------------------------------------------


NEXT_STEP["alert_gone"] = "Nothing was changed: the list now shows the alerts still open."


def acknowledge_alert(alert_id: int) -> bool:
    """Say you are on an open alert: records who and when (audited); it stays open until its condition ends."""
    return act(monitoring.ACKNOWLEDGE, lambda **kw: monitoring.acknowledge_alert(alert_id, **kw),
                lambda done: f"Alert {alert_id} acknowledged: the control room shows you are on it." if done
                else f"Alert {alert_id} was already acknowledged; nothing changed.")
