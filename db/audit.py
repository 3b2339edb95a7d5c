"""Append-only audit rows and stored settings, written inside the caller's unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db import tables as t
from db.repositories import catalogue_changed


class AuditRepository:
    """Who did what to which thing, with the state before and after; rows are only ever added."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, actor: str, action: str, target_type: str, target_id: str, order_id: str | None,
               before: dict[str, Any] | None, after: dict[str, Any] | None, at: datetime) -> None:
        """Add one audit row in the current transaction (it commits or rolls back with the action)."""
        self.session.execute(insert(t.audit_log).values(
            at=at, actor=actor, action=action, target_type=target_type, target_id=target_id,
            order_id=order_id, before=before, after=after))


class SettingsRepository:
    """Versioned data staff edit in the dashboard (weights, policies), one JSON document per key."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> Any | None:
        """The stored document, or None when nobody has stored one yet."""
        return self.session.scalar(select(t.settings.c.value).where(t.settings.c.key == key))

    def put(self, key: str, value: Any, *, by: str, at: datetime) -> None:
        """Store `value` under `key`, replacing the previous document.

        Two first saves racing both INSERT; the second fails on the primary key at commit (a Conflict).
        """
        s = t.settings
        changed = self.session.execute(update(s).where(s.c.key == key)
                                       .values(value=value, updated_at=at, updated_by=by)).rowcount
        if not changed:
            self.session.execute(insert(s).values(key=key, value=value, updated_at=at, updated_by=by))
        catalogue_changed(self.session)  # the pricing row is read through checkout's cached catalogue
