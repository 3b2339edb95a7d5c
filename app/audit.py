"""The audit page's glue: the search (cached briefly), each row's before/after diff, and the CSV export."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from app.bootstrap import engine
from core.audit import EXPORT_LIMIT, AuditQuery, diff
from core.errors import PressroomError
from db import queries as q

SEARCH_TTL_S = 4
TABLE = ["at", "actor", "action", "target", "order_number"]
EXPORT = ["at", "actor", "action", "target_type", "target_id", "order_number", "order_id", "before", "after"]


def query(*, actor: str, action: str, target: str, order_number: str, since: date | None, until: date | None,
          page: int) -> tuple[AuditQuery | None, str | None]:
    """The search from the page's widgets (dates in UTC, both days included), or why it can't be run."""
    try:
        return AuditQuery(actor=actor, action=action, target=target, order_number=order_number,
                          since=None if since is None else datetime.combine(since, time.min, UTC),
                          until=None if until is None else datetime.combine(until, time.min, UTC)
                          + timedelta(days=1, microseconds=-1),
                          page=int(page)), None
    except PressroomError as refused:
        return None, refused.message


def _filters(search: AuditQuery) -> dict[str, Any]:
    return {"actor": search.actor, "action": search.action, "target": search.target,
            "order_number": search.order_number, "since": search.since, "until": search.until}


@st.cache_data(ttl=SEARCH_TTL_S, show_spinner=False)
def search(wanted: AuditQuery) -> dict[str, Any]:
    """One page of matching rows, newest first: total, pages, rows (each with its diff) and a table frame."""
    found = q.audit_search(engine(), limit=wanted.page_size, offset=wanted.offset, **_filters(wanted))
    rows = [row | {"target": f"{row['target_type']} {row['target_id']}",
                   "changes": [{"field": c.field, "change": str(c.change), "before": _shown(c.before),
                                "after": _shown(c.after)} for c in diff(row["before"], row["after"])]}
            for row in found["rows"]]
    return {"total": found["total"], "pages": wanted.pages(found["total"]), "rows": rows,
            "table": pd.DataFrame([{k: row[k] for k in TABLE} for row in rows], columns=TABLE)}


@st.cache_data(ttl=SEARCH_TTL_S, show_spinner=False)
def actions() -> list[str]:
    """Every action word in the log, for the search's hint."""
    return q.audit_actions(engine())


def export_csv(wanted: AuditQuery) -> bytes:
    """Every row the search matches (newest first, at most EXPORT_LIMIT), as CSV; before/after as JSON."""
    found = q.audit_search(engine(), limit=EXPORT_LIMIT, offset=0, **_filters(wanted))
    frame = pd.DataFrame([{**row, "at": row["at"].isoformat(), "before": _json(row["before"]),
                           "after": _json(row["after"])} for row in found["rows"]], columns=EXPORT)
    return frame.to_csv(index=False).encode()


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


def _shown(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
