"""Feature flags: per partner or template switches with a deterministic, hashed percentage rollout."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable

from core.errors import PressroomError

BUCKETS = 10_000
"""A subject falls in one of this many buckets (100 per rollout percent)."""
MAX_KEY = 80


class FlagScope(StrEnum):
    GLOBAL = "global"
    PARTNER = "partner"
    TEMPLATE = "template"


SPECIFICITY = (FlagScope.TEMPLATE, FlagScope.PARTNER, FlagScope.GLOBAL)
"""When several rows match, the most specific one decides: template, then partner, then global."""


class FlagInvalid(PressroomError):
    """A feature flag row that cannot be stored as given."""

    code = "flag_invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureFlag:
    """One stored row: `key` switched on or off for a scope, for `rollout_percent` of the subjects."""

    key: str
    scope: FlagScope
    scope_id: str = ""
    enabled: bool = False
    rollout_percent: int = 100


def bucket(flag: str, subject_id: str) -> int:
    """The subject's fixed place (0 … BUCKETS-1) in this flag's rollout; independent between flags."""
    digest = hashlib.sha256(f"{flag}\x00{subject_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(flag: str, subject_id: str, percent: float) -> bool:
    """True for about `percent` % of subjects, always the same ones, and more of them as `percent` grows."""
    return bucket(flag, subject_id) < percent / 100 * BUCKETS


def is_enabled(flag: str, *, partner_id: str | None = None, template_key: str | None = None, subject_id: str,
               flags: Iterable[FeatureFlag]) -> bool:
    """Whether `flag` is on for this subject (a job, an order) at this partner and template.

    The most specific matching row decides (SPECIFICITY); a disabled row switches the flag off for its scope
    even when a wider one has it on. No matching row means off.
    """
    wanted = {FlagScope.GLOBAL: "", FlagScope.PARTNER: partner_id, FlagScope.TEMPLATE: template_key}
    rows = {row.scope: row for row in flags
            if row.key == flag and wanted.get(row.scope) is not None and row.scope_id == wanted[row.scope]}
    for scope in SPECIFICITY:
        row = rows.get(scope)
        if row is not None:
            return row.enabled and in_rollout(flag, subject_id, row.rollout_percent)
    return False


def checked_flag(*, key: str, scope: str, scope_id: str, enabled: bool, rollout_percent: float) -> FeatureFlag:
    """A flag row from a form, or a clear reason it cannot be stored.

    Raises:
        FlagInvalid: empty or too long key, unknown scope, a partner/template scope without its id (or a global
            one with an id), or a rollout outside 0–100.
    """
    key, scope_id = key.strip(), scope_id.strip()
    if not key:
        raise FlagInvalid("Give the flag a key, e.g. qa.human_review.")
    if len(key) > MAX_KEY or any(ch.isspace() for ch in key):
        raise FlagInvalid(f"A flag key has no spaces and at most {MAX_KEY} characters.")
    try:
        member = FlagScope(scope)
    except ValueError:
        raise FlagInvalid(f"Scope {scope!r} is not one of: {', '.join(FlagScope)}.") from None
    if member is FlagScope.GLOBAL and scope_id:
        raise FlagInvalid("A global flag applies everywhere: leave the partner/template empty.")
    if member is not FlagScope.GLOBAL and not scope_id:
        raise FlagInvalid(f"Choose the {member} this flag applies to.")
    try:
        percent = float(rollout_percent)
    except (TypeError, ValueError):
        raise FlagInvalid(f"The rollout must be a number from 0 to 100, not {rollout_percent!r}.") from None
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise FlagInvalid(f"The rollout must be from 0 to 100 %, not {rollout_percent!r}.")
    if percent != int(percent):
        raise FlagInvalid(f"The rollout is a whole percentage, not {rollout_percent!r}.")
    return FeatureFlag(key=key, scope=member, scope_id=scope_id, enabled=bool(enabled), rollout_percent=int(percent))
