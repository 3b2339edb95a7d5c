"""Template versions: what changed between two versions, field by field, for the dashboard's diff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One leaf that differs: a dotted path (`texts[0].size_pt`), its old and new value (None when absent)."""

    path: str
    before: Any
    after: Any
    kind: str  # "added" | "removed" | "changed"


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every leaf-level difference between two template documents, in a stable order."""
    changes: list[Change] = []
    _walk("", old, new, changes)
    return changes


def _walk(path: str, old: Any, new: Any, out: list[Change]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _walk(f"{path}.{key}" if path else str(key), old.get(key, MISSING), new.get(key, MISSING), out)
    elif isinstance(old, list) and isinstance(new, list) and _all_mappings(old, new):
        for i in range(max(len(old), len(new))):
            _walk(f"{path}[{i}]", old[i] if i < len(old) else MISSING, new[i] if i < len(new) else MISSING, out)
    elif old is MISSING:
        out.append(Change(path=path, before=None, after=new, kind="added"))
    elif new is MISSING:
        out.append(Change(path=path, before=old, after=None, kind="removed"))
    elif old != new:
        out.append(Change(path=path, before=old, after=new, kind="changed"))


def _all_mappings(*lists: list) -> bool:
    return all(isinstance(item, Mapping) for items in lists for item in items)
