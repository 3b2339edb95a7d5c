"""Staff accounts for the dashboard login: read the user, count failures, lock, and audit every attempt."""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, insert, select, update

from core.policy import LoginCounter, after_failed_login, after_successful_login, is_locked
from core.states import Role
from db import tables as t

log = logging.getLogger(__name__)

LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
TARGET = "staff_user"
_MAX_NAME = 80  # staff_users.username and audit_log.actor are String(80)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffUser:
    username: str
    password_hash: str
    role: Role
    active: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None


@contextmanager
def _reading(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def get_user(bind: Engine | Connection, username: str) -> StaffUser | None:
    """The account called `username` (exact match), or None."""
    u = t.staff_users
    with _reading(bind) as conn:
        row = conn.execute(select(u.c.username, u.c.password_hash, u.c.role, u.c.active, u.c.failed_logins,
                                  u.c.locked_until, u.c.last_login_at)
                           .where(u.c.username == username[:_MAX_NAME])).first()
    return None if row is None else StaffUser(**row._asdict())


def is_active(bind: Engine | Connection, username: str) -> bool:
    """True when the account exists and is enabled; the dashboard asks on every rerun."""
    u = t.staff_users
    with _reading(bind) as conn:
        return bool(conn.scalar(select(u.c.active).where(u.c.username == username[:_MAX_NAME])))


def claim_attempt(engine: Engine, username: str, *, now: datetime, max_attempts: int,
                  lockout_s: float) -> LoginCounter | None:
    """Count a login attempt before its password is checked, so concurrent guesses cannot outrun the lock.

    Returns:
        The account's counter with this attempt counted (it may have just locked the account), or None when
        the account is locked or unknown: then nothing is counted and the password must not be checked.
    """
    name = username[:_MAX_NAME]
    for attempt in range(200):  # compare-and-set: each concurrent attempt counts exactly once
        user = get_user(engine, name)
        if user is None or is_locked(user.failed_logins, user.locked_until, now, max_attempts=max_attempts):
            return None
        counter = after_failed_login(user.failed_logins, user.locked_until, now,
                                     max_attempts=max_attempts, lockout_s=lockout_s)
        with engine.begin() as conn:
            if _compare_and_set(conn, user, counter):
                if counter.locked_until is not None:
                    log.warning("staff account %s locked until %s after %d failed logins", name,
                                counter.locked_until.isoformat(), counter.failed_logins)
                return counter
        time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
    raise RuntimeError(f"could not count a login attempt for {name!r}: the row kept changing")


def record_failed_login(engine: Engine, username: str, *, now: datetime, reason: str,
                        counter: LoginCounter | None = None) -> None:
    """Audit a refused login (the attempt was counted by `claim_attempt`, when it was counted at all).

    Args:
        reason: why it was refused, for the audit log only (the user always sees the same message).
        counter: the account's counter after the attempt, recorded with it.
    """
    after: dict[str, Any] = {"reason": reason}
    if counter is not None:
        after["failed_logins"] = counter.failed_logins
        if counter.locked_until is not None:
            after["locked_until"] = counter.locked_until.isoformat()
    with engine.begin() as conn:
        _audit(conn, username[:_MAX_NAME], LOGIN_FAILED, now, after=after)


def record_successful_login(engine: Engine, username: str, *, now: datetime) -> None:
    """Clear the failure count and lock, stamp last_login_at, and audit the sign-in."""
    u = t.staff_users
    reset = after_successful_login()
    with engine.begin() as conn:
        conn.execute(update(u).where(u.c.username == username)
                     .values(failed_logins=reset.failed_logins, locked_until=reset.locked_until,
                             last_login_at=now))
        _audit(conn, username, LOGIN, now, after=None)


def _compare_and_set(conn: Connection, user: StaffUser, counter: LoginCounter) -> bool:
    u = t.staff_users
    unchanged = (u.c.locked_until.is_(None) if user.locked_until is None
                 else u.c.locked_until == user.locked_until)
    result = conn.execute(update(u).where(u.c.username == user.username,
                                          u.c.failed_logins == user.failed_logins, unchanged)
                          .values(failed_logins=counter.failed_logins, locked_until=counter.locked_until))
    return result.rowcount == 1


def _audit(conn: Connection, actor: str, action: str, now: datetime, *, after: dict[str, Any] | None) -> None:
    conn.execute(insert(t.audit_log).values(at=now, actor=actor, action=action, target_type=TARGET,
                                            target_id=actor, order_id=None, before=None, after=after))
