"""The dashboard's page list: title and icon per page id, filtered by the role policy for the user."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import streamlit as st

from core.policy import PAGES, visible_pages
from core.states import Role


@dataclass(frozen=True, slots=True, kw_only=True)
class PageSpec:
    title: str
    icon: str


SPECS: Mapping[str, PageSpec] = MappingProxyType({
    "control_room": PageSpec(title="Control room", icon=":material/monitoring:"),
    "order_timeline": PageSpec(title="Order timeline", icon=":material/manage_search:"),
    "batch_builder": PageSpec(title="Batch builder", icon=":material/view_module:"),
    "qa_review": PageSpec(title="QA review", icon=":material/fact_check:"),
    "metrics": PageSpec(title="Metrics", icon=":material/query_stats:"),
    "replay_console": PageSpec(title="Replay console", icon=":material/replay:"),
    "audit_log": PageSpec(title="Audit log", icon=":material/history_edu:"),
    "exception_inbox": PageSpec(title="Exception inbox", icon=":material/report:"),
    "admin_partners": PageSpec(title="Admin · partners", icon=":material/factory:"),
    "admin_templates": PageSpec(title="Admin · templates", icon=":material/design_services:"),
    "admin_rules": PageSpec(title="Admin · rules", icon=":material/rule:"),
    "admin_flags": PageSpec(title="Admin · feature flags", icon=":material/flag:"),
    "admin_staff": PageSpec(title="Admin · staff", icon=":material/group:"),
})
"""Page id (core.policy.PAGES, file pages/<id>.py) → how it appears in the navigation."""


def spec(page_id: str) -> PageSpec:
    fallback = PageSpec(title=page_id.replace("_", " ").capitalize(), icon=":material/article:")
    return SPECS.get(page_id, fallback)


def page_path(page_id: str) -> str:
    """The page's file relative to the entrypoint in app/ (a pages/ folder beside it would be auto-loaded)."""
    return f"../pages/{page_id}.py"


def pages_for(role: Role) -> list[st.Page]:
    """The pages `role` may open (the first is the landing page), plus hidden stand-ins for the others.

    A stand-in keeps the page's URL but runs only `_not_for_your_role`, never the page's file, so a
    bookmark to a page the role may not view says so instead of "page not found".
    """
    allowed = visible_pages(role)
    pages = [st.Page(page_path(page_id), title=spec(page_id).title, icon=spec(page_id).icon, url_path=page_id,
                     default=index == 0) for index, page_id in enumerate(allowed)]
    pages += [st.Page(_not_for_your_role, title=spec(page_id).title, url_path=page_id, visibility="hidden")
              for page_id in PAGES if page_id not in allowed]
    return pages


def signed_out_pages(login: Callable[[], None]) -> list[st.Page]:
    """Only the login form, also under every page's URL: a reload or a bookmark signs in, then lands there."""
    pages = [st.Page(login, title="Sign in", icon=":material/login:", url_path="login", default=True)]
    pages += [st.Page(login, title="Sign in", url_path=page_id, visibility="hidden") for page_id in PAGES]
    return pages


def _not_for_your_role() -> None:
    st.error("Your role can't open this page. Ask a manager if you need it.")
