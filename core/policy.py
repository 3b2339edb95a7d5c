"""Who may see which dashboard page and do which action, and when repeated bad logins lock an account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Mapping

from core.states import Role

_ALL = frozenset(Role)
_R = Role
_PRODUCTION = frozenset({_R.OPS_MANAGER, _R.MANAGER})  # who steers batches and production rules
_SUPPORT = frozenset({_R.SUPPORT_AGENT, _R.OPS_MANAGER, _R.MANAGER})  # who acts on customers' orders

PAGES: Mapping[str, frozenset[Role]] = MappingProxyType({
    "control_room": _ALL,
    "order_timeline": frozenset({_R.SUPPORT_AGENT, _R.OPS_MANAGER, _R.MANAGER}),
    "batch_builder": frozenset({_R.OPS_MANAGER, _R.MANAGER}),
    "qa_review": frozenset({_R.QA_INSPECTOR, _R.MANAGER}),
    "metrics": frozenset({_R.MANAGER, _R.OPS_MANAGER}),
    "replay_console": frozenset({_R.OPS_MANAGER, _R.MANAGER}),
    "audit_log": frozenset({_R.MANAGER, _R.OPS_MANAGER}),
    "exception_inbox": _SUPPORT,
    "admin_partners": frozenset({_R.MANAGER}),
    "admin_templates": frozenset({_R.MANAGER}),
    "admin_rules": frozenset({_R.MANAGER}),
    "admin_flags": frozenset({_R.MANAGER}),
    "admin_staff": frozenset({_R.MANAGER}),
})
"""Page id → the roles that see it. A page id is the file name under pages/ without `.py`."""

ACTIONS: Mapping[str, frozenset[Role]] = MappingProxyType({
    "order.add_note": frozenset({_R.SUPPORT_AGENT, _R.OPS_MANAGER, _R.MANAGER}),
    "batch.hold": _PRODUCTION,
    "batch.release": _PRODUCTION,
    "batch.split": _PRODUCTION,
    "batch.merge": _PRODUCTION,
    "batch.reprioritise": _PRODUCTION,
    "production.edit_rules": _PRODUCTION,
    "qa.approve": frozenset({_R.QA_INSPECTOR}),
    "qa.reject": frozenset({_R.QA_INSPECTOR}),
    "replay.run": frozenset({_R.OPS_MANAGER, _R.MANAGER}),
    "exception.verify_address": _SUPPORT,
    "exception.reship": _SUPPORT,
    "exception.refund": _SUPPORT,
    "exception.contact": _SUPPORT,
    "exception.resolve": _SUPPORT,
    "notification.resend": _SUPPORT,
    "order.cancel": _SUPPORT,
    "qa.undo": frozenset({_R.QA_INSPECTOR}),
    "alert.acknowledge": frozenset({_R.OPS_MANAGER, _R.MANAGER, _R.SUPPORT_AGENT}),
    "monitor.edit_thresholds": frozenset({_R.OPS_MANAGER, _R.MANAGER}),
    "partner.edit": frozenset({_R.MANAGER}),
    "template.save_version": frozenset({_R.MANAGER}),
    "words.add": frozenset({_R.MANAGER}),
    "words.remove": frozenset({_R.MANAGER}),
    "qa.edit_rules": frozenset({_R.MANAGER}),
    "flag.set": frozenset({_R.MANAGER}),
    "flag.remove": frozenset({_R.MANAGER}),
    "staff.create": frozenset({_R.MANAGER}),
    "staff.set_active": frozenset({_R.MANAGER}),
    "staff.change_role": frozenset({_R.MANAGER}),
})
"""Action id (`"<entity>.<verb>"`, also the audit log's action) → the roles that may do it."""


def can_view(role: Role | str, page: str) -> bool:
    """True when `role` may open `page`; unknown pages and roles are refused."""
    return _granted(PAGES, role, page)


def can_do(role: Role | str, action: str) -> bool:
    """True when `role` may perform `action`; unknown actions and roles are refused."""
    return _granted(ACTIONS, role, action)


def visible_pages(role: Role | str) -> list[str]:
    """The page ids `role` may open, in the table's order (the navigation's order)."""
    return [page for page in PAGES if can_view(role, page)]


def _granted(table: Mapping[str, frozenset[Role]], role: Role | str, key: str) -> bool:
    try:
        member = Role(role)
    except ValueError:
        return False
    return member in table.get(key, frozenset())


# ---- login lockout -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginCounter:
    """A staff account's consecutive failed logins and the lock they caused, as stored on the user row."""

    failed_logins: int
    locked_until: datetime | None


def is_locked(failed_logins: int, locked_until: datetime | None, now: datetime, *, max_attempts: int) -> bool:
    """Locked while the count is at the limit and the lock has not run out.

    Resetting the count (a successful login, or staff unlocking the account) lifts the lock at once.
    """
    return failed_logins >= max_attempts and locked_until is not None and now < locked_until


def after_failed_login(failed_logins: int, locked_until: datetime | None, now: datetime, *,
                       max_attempts: int, lockout_s: float) -> LoginCounter:
    """What one more wrong password does: count it, and lock for `lockout_s` when the count hits the limit.

    A lock that has run out starts a fresh count, so a returning user gets `max_attempts` tries again.
    An attempt made while locked is not counted here (the caller refuses it without checking the password).
    """
    lock_expired = locked_until is not None and now >= locked_until
    count = (0 if lock_expired else failed_logins) + 1
    if count >= max_attempts:
        return LoginCounter(failed_logins=count, locked_until=now + timedelta(seconds=lockout_s))
    return LoginCounter(failed_logins=count, locked_until=None)


def after_successful_login() -> LoginCounter:
    """A right password clears the count and any lock."""
    return LoginCounter(failed_logins=0, locked_until=None)
