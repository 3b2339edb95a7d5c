"""Admin pages' glue: cached reads of the configuration data, and the managers' audited actions on it."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pandas as pd
import streamlit as st

from adapters.passwords import hash_password
from app import actions
from app.bootstrap import engine
from core.errors import PressroomError
from core.flags import FlagScope
from core.services import admin as a
from core.states import PrintMethod, Role
from db import admin as q
from db import queries as dq

TTL_S = 4
PRINT_METHODS = [str(m) for m in PrintMethod]
ROLES = [str(r) for r in Role]
SCOPES = [str(s) for s in FlagScope]
KNOWN_FLAGS = dict(a.KNOWN_FLAGS)
TOLERANCES = dict(a.EDITABLE_TOLERANCES)

# ---- reads ------------------------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def partners() -> list[dict[str, Any]]:
    return q.partners(engine())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def templates() -> list[dict[str, Any]]:
    return q.templates(engine())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def template_versions(key: str) -> list[dict[str, Any]]:
    return q.template_versions(engine(), key)


def version_table(key: str) -> pd.DataFrame:
    current = next((t["current_version"] for t in templates() if t["key"] == key), None)
    return pd.DataFrame([{"version": v["version"], "current": v["version"] == current, "saved": v["created_at"],
                          "by": v["created_by"], "note": v["note"]} for v in template_versions(key)],
                        columns=["version", "current", "saved", "by", "note"])


def spec_of(key: str, version: int) -> dict[str, Any]:
    return next(v["spec"] for v in template_versions(key) if v["version"] == version)


def spec_text(spec: Mapping[str, Any]) -> str:
    """How a template document reads in the editor."""
    return json.dumps(spec, indent=2, ensure_ascii=False)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"field": c.path, "change": c.kind, "before": _shown(c.before), "after": _shown(c.after)}
                         for c in a.template_changes(old, new)], columns=["field", "change", "before", "after"])


def _shown(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def template_diff(key: str, older: int, newer: int) -> pd.DataFrame:
    """field, change (added|removed|changed), before, after: what `newer` changed relative to `older`."""
    return _changes(spec_of(key, older), spec_of(key, newer))


@st.cache_data(ttl=60, show_spinner=False, max_entries=20)
def template_preview(key: str, text: str) -> dict[str, Any]:
    """An edited template, rendered small with sample artwork and text before anything is saved.

    Returns error (a sentence, when the document cannot be used), image (JPEG bytes) and changes (a frame
    against the current version).
    """
    template = next(t for t in templates() if t["key"] == key)
    try:
        spec = a.parse_spec(text)
        image = a.preview_template(key, spec, product_type=template["product_type"] or "poster",
                                   print_method=template["print_method"] or "inkjet", colour=template["colour"])
    except PressroomError as error:
        return {"error": error.message, "image": None, "changes": pd.DataFrame()}
    return {"error": None, "image": image, "changes": _changes(spec_of(key, template["current_version"]), spec)}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def prohibited_words() -> pd.DataFrame:
    return pd.DataFrame(q.prohibited_words(engine()), columns=["word", "added_by", "added_at"])


def qa_rules_in_force() -> dict[str, Any]:
    """The spot-check rate and tolerances the QA worker uses now (stored, else core's defaults)."""
    try:
        rules = a.qa_rules_from_document(_qa_document())
    except PressroomError:
        rules = a.QaRules()
    return a.qa_rules_to_document(rules)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _qa_document() -> dict[str, Any] | None:
    return dq.setting(engine(), a.QA_RULES_KEY)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def feature_flags() -> pd.DataFrame:
    return pd.DataFrame(q.feature_flags(engine()),
                        columns=["key", "scope", "scope_id", "enabled", "rollout_percent", "updated_at"])


def flag_targets(scope: str) -> list[str]:
    """What a flag of `scope` can be set for: partner ids, template keys, or only "" (everywhere)."""
    if scope == FlagScope.PARTNER:
        return [p["id"] for p in partners()]
    if scope == FlagScope.TEMPLATE:
        return [t["key"] for t in templates()]
    return [""]


@st.cache_data(ttl=TTL_S, show_spinner=False)
def staff() -> pd.DataFrame:
    return pd.DataFrame(q.staff_users(engine()), columns=["username", "role", "active", "created_at", "last_login_at"])


# ---- actions (each checks the role, validates, audits; see core.services.admin) --------------------------------


def save_partner(partner_id: str, changes: Mapping[str, Any]) -> bool:
    return actions.act(a.EDIT_PARTNER, lambda uow, actor, at, **_: a.update_partner(
        partner_id, changes, uow=uow, actor=actor, at=at),
        lambda _: f"Partner {partner_id} saved: routing and batching use it from the next order.")


def save_template(key: str, text: str, based_on: int, note: str) -> bool:
    def work(uow, actor, at, **_):
        return a.save_template_version(key, a.parse_spec(text), based_on=based_on, note=note, uow=uow, actor=actor,
                                       at=at)
    return actions.act(a.SAVE_TEMPLATE, work,
                        lambda version: f"Template {key} version {version} saved: new orders use it "
                                        "within 5 s; existing orders keep the version they were placed with.")


def add_word(word: str) -> bool:
    return actions.act(a.ADD_WORD, lambda uow, actor, at, **_: a.add_prohibited_word(word, uow=uow, actor=actor,
                                                                                      at=at),
                        lambda added: f"{added!r} is on the list: checkouts using it are refused from now on.")


def remove_word(word: str | None) -> bool:
    return actions.act(a.REMOVE_WORD, lambda uow, actor, at, **_: a.remove_prohibited_word(
        word or "", uow=uow, actor=actor, at=at), lambda gone: f"{gone!r} is off the list.")


def save_qa_rules(rate_percent: float, tolerances: Mapping[str, float]) -> bool:
    document = {"spot_check_rate": float(rate_percent) / 100, "tolerances": dict(tolerances)}
    return actions.act(a.EDIT_QA_RULES, lambda uow, actor, at, **_: a.save_qa_rules(document, uow=uow, actor=actor,
                                                                                     at=at),
                        lambda saved: f"QA rules saved: {saved['spot_check_rate'] * 100:g} % spot checks; the QA "
                                      "worker uses them from the next print.")


def set_flag(key: str, scope: str, scope_id: str | None, enabled: bool, rollout_percent: float) -> bool:
    return actions.act(a.SET_FLAG, lambda uow, actor, at, **_: a.set_flag(
        key=key, scope=scope, scope_id=scope_id or "", enabled=enabled, rollout_percent=rollout_percent, uow=uow,
        actor=actor, at=at),
        lambda flag: f"Flag {flag.key} is {'on' if flag.enabled else 'off'} for {flag.rollout_percent} % "
                     f"({flag.scope}{' ' + flag.scope_id if flag.scope_id else ''}).")


def remove_flag(row: str | None) -> bool:
    key, scope, scope_id = (row or "||").split("|", 2)
    return actions.act(a.REMOVE_FLAG, lambda uow, actor, at, **_: a.remove_flag(
        key=key, scope=scope, scope_id=scope_id, uow=uow, actor=actor, at=at),
        lambda _: f"Flag {key} removed for {scope} {scope_id}".rstrip() + ".")


def flag_rows() -> list[str]:
    """Existing flag rows as `key|scope|scope_id` (the remove picker's options)."""
    return [f"{r.key}|{r.scope}|{r.scope_id}" for r in feature_flags().itertuples()]


def create_user(username: str, role: str, password: str) -> bool:
    return actions.act(a.CREATE_USER, lambda uow, actor, at, **_: a.create_user(
        username, role, password, uow=uow, actor=actor, at=at, hash_password=hash_password),
        lambda name: f"Account {name} created: give them the password through a safe channel.")


def set_user_active(username: str | None, active: bool) -> bool:
    return actions.act(a.SET_USER_ACTIVE, lambda uow, actor, at, **_: a.set_user_active(
        username or "", active, uow=uow, actor=actor, at=at),
        lambda _: f"{username} is {'enabled' if active else 'disabled: they are signed out on their next click'}.")


def change_role(username: str | None, role: str) -> bool:
    return actions.act(a.CHANGE_ROLE, lambda uow, actor, at, **_: a.change_role(
        username or "", role, uow=uow, actor=actor, at=at),
        lambda _: f"{username} is now a {role}: their pages change on their next click.")
