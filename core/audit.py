"""Reading the audit log: what a search asks for, and an audit row's before/after as a field-by-field diff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Mapping

from core.errors import PressroomError

PAGE_SIZE = 25
EXPORT_LIMIT = 10_000
"""A CSV export holds at most this many rows (newest first); narrow the search for older ones."""


class AuditQueryInvalid(PressroomError):
    """A search that cannot be run as asked (a date range ending before it starts, a page below 1)."""

    code = "audit_query_invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """An audit search: text fields match anywhere, case-insensitively (the order number too); the range
    includes both ends; an empty field matches everything."""

    actor: str = ""
    action: str = ""
    target: str = ""
    order_number: str = ""
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise AuditQueryInvalid("The date range ends before it starts: swap the two dates.")
        if self.page < 1 or self.page_size < 1:
            raise AuditQueryInvalid("Pages are numbered from 1.")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def pages(self, total: int) -> int:
        """How many pages `total` matching rows fill (at least one, so an empty result still has page 1)."""
        return max(1, -(-total // self.page_size))


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    SAME = "same"


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldChange:
    field: str
    change: Change
    before: Any = None
    after: Any = None


_ABSENT = object()


def diff(before: Any, after: Any) -> list[FieldChange]:
    """Every field of `before` and `after`, nested mappings flattened to dotted paths, in path order.

    A field only in `after` is ADDED, only in `before` REMOVED; lists and other values compare whole. A side
    that is not a mapping (None, a number) counts as the single field "value".
    """
    old, new = _flatten(before), _flatten(after)
    changes = []
    for path in sorted(old.keys() | new.keys()):
        was, now = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if was is _ABSENT:
            changes.append(FieldChange(field=path, change=Change.ADDED, after=now))
        elif now is _ABSENT:
            changes.append(FieldChange(field=path, change=Change.REMOVED, before=was))
        else:
            changes.append(FieldChange(field=path, change=Change.SAME if was == now else Change.CHANGED,
                                       before=was, after=now))
    return changes


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if value is None and not prefix:
        return {}
    if not isinstance(value, Mapping):
        return {prefix or "value": value}
    if not value and prefix:
        return {prefix: {}}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat |= _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    return flat
